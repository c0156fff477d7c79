#!/usr/bin/env python3
"""Make benchmark layer sets from scratch: an .npz of magnitude-pruned random
weights plus its geometry sidecar, for convgen.

    python3 tools/make_layers.py resnet50 --sparsity 0.9 -o bench/resnet50-s90.npz
    python3 tools/make_layers.py paper vgg16 --sparsity 0.95 --batch 32 -o bench/mix.npz

Sets:
  paper     the reference paper's layers (LeNet-5 5x5, AlexNet-CIFAR 5x5, ResNet 3x3
            56x56x64->64 and 28x28x128->128, VGG-16 3x3 224x224 3->64 and 64->64)
  resnet50  every distinct conv shape of torchvision's ResNet-50 (224x224 input)
  vgg16     every distinct conv shape of VGG-16 (224x224 input)
  mobilenetv2  MobileNetV2's depthwise shapes and two pointwise layers (224x224 input)

Weights are N(0, 1) scaled by 1/sqrt(fan-in) from a seeded generator, then the
smallest |w| of each layer are set to exactly 0 until the requested fraction is
zero (what torch.nn.utils.prune.l1_unstructured does). Both files are written
through temporaries and renamed. Needs numpy only.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

# (name, C, K, H=W of the input, kernel, stride, padding, groups)
PAPER = [
    ("lenet5_conv2", 6, 16, 14, 5, 1, 0, 1),
    ("alexnet_cifar_conv2", 64, 64, 16, 5, 1, 2, 1),
    ("resnet_56x56_64", 64, 64, 56, 3, 1, 1, 1),
    ("resnet_28x28_128", 128, 128, 28, 3, 1, 1, 1),
    ("vgg16_224_3to64", 3, 64, 224, 3, 1, 1, 1),
    ("vgg16_224_64to64", 64, 64, 224, 3, 1, 1, 1),
]

RESNET50 = [
    ("conv1", 3, 64, 224, 7, 2, 3, 1),
    ("l1_1x1_64to64", 64, 64, 56, 1, 1, 0, 1),
    ("l1_3x3_64", 64, 64, 56, 3, 1, 1, 1),
    ("l1_1x1_64to256", 64, 256, 56, 1, 1, 0, 1),
    ("l1_1x1_256to64", 256, 64, 56, 1, 1, 0, 1),
    ("l2_1x1_256to128", 256, 128, 56, 1, 1, 0, 1),
    ("l2_3x3_128_s2", 128, 128, 56, 3, 2, 1, 1),
    ("l2_3x3_128", 128, 128, 28, 3, 1, 1, 1),
    ("l2_1x1_128to512", 128, 512, 28, 1, 1, 0, 1),
    ("l2_down_256to512_s2", 256, 512, 56, 1, 2, 0, 1),
    ("l2_1x1_512to128", 512, 128, 28, 1, 1, 0, 1),
    ("l3_1x1_512to256", 512, 256, 28, 1, 1, 0, 1),
    ("l3_3x3_256_s2", 256, 256, 28, 3, 2, 1, 1),
    ("l3_3x3_256", 256, 256, 14, 3, 1, 1, 1),
    ("l3_1x1_256to1024", 256, 1024, 14, 1, 1, 0, 1),
    ("l3_down_512to1024_s2", 512, 1024, 28, 1, 2, 0, 1),
    ("l3_1x1_1024to256", 1024, 256, 14, 1, 1, 0, 1),
    ("l4_1x1_1024to512", 1024, 512, 14, 1, 1, 0, 1),
    ("l4_3x3_512_s2", 512, 512, 14, 3, 2, 1, 1),
    ("l4_3x3_512", 512, 512, 7, 3, 1, 1, 1),
    ("l4_1x1_512to2048", 512, 2048, 7, 1, 1, 0, 1),
    ("l4_down_1024to2048_s2", 1024, 2048, 14, 1, 2, 0, 1),
    ("l4_1x1_2048to512", 2048, 512, 7, 1, 1, 0, 1),
]

VGG16 = [
    ("conv1_1", 3, 64, 224, 3, 1, 1, 1),
    ("conv1_2", 64, 64, 224, 3, 1, 1, 1),
    ("conv2_1", 64, 128, 112, 3, 1, 1, 1),
    ("conv2_2", 128, 128, 112, 3, 1, 1, 1),
    ("conv3_1", 128, 256, 56, 3, 1, 1, 1),
    ("conv3_2", 256, 256, 56, 3, 1, 1, 1),
    ("conv4_1", 256, 512, 28, 3, 1, 1, 1),
    ("conv4_2", 512, 512, 28, 3, 1, 1, 1),
    ("conv5_1", 512, 512, 14, 3, 1, 1, 1),
]

# Every distinct depthwise shape of torchvision's MobileNetV2 (224x224), and
# two of its pointwise layers.
MOBILENETV2 = [
    ("dw_32_112", 32, 32, 112, 3, 1, 1, 32),
    ("dw_96_112_s2", 96, 96, 112, 3, 2, 1, 96),
    ("dw_144_56", 144, 144, 56, 3, 1, 1, 144),
    ("dw_144_56_s2", 144, 144, 56, 3, 2, 1, 144),
    ("dw_192_28", 192, 192, 28, 3, 1, 1, 192),
    ("dw_192_28_s2", 192, 192, 28, 3, 2, 1, 192),
    ("dw_384_14", 384, 384, 14, 3, 1, 1, 384),
    ("dw_576_14", 576, 576, 14, 3, 1, 1, 576),
    ("dw_576_14_s2", 576, 576, 14, 3, 2, 1, 576),
    ("dw_960_7", 960, 960, 7, 3, 1, 1, 960),
    ("pw_144to24_56", 144, 24, 56, 1, 1, 0, 1),
    ("pw_576to96_14", 576, 96, 14, 1, 1, 0, 1),
]

SETS = {"paper": PAPER, "resnet50": RESNET50, "vgg16": VGG16, "mobilenetv2": MOBILENETV2}


def prune_by_magnitude(weight, sparsity):
    """Zeroes round(sparsity * size) entries of smallest magnitude."""
    count = int(round(sparsity * weight.size))
    if count:
        flat = weight.reshape(-1)
        flat[np.argsort(np.abs(flat), kind="stable")[:count]] = 0.0
    return weight


def make(sets, sparsity, batch, seed):
    rng = np.random.default_rng(seed)
    arrays, layers = {}, []
    for set_name in sets:
        for name, c, k, size, kernel, stride, padding, groups in SETS[set_name]:
            layer = f"{set_name}.{name}"
            fan_in = (c // groups) * kernel * kernel
            weight = rng.standard_normal((k, c // groups, kernel, kernel)).astype(np.float32)
            weight /= np.float32(np.sqrt(fan_in))
            arrays[f"{layer}.weight"] = prune_by_magnitude(weight, sparsity)
            arrays[f"{layer}.bias"] = (rng.standard_normal(k) * 0.1).astype(np.float32)
            out = (size + 2 * padding - kernel) // stride + 1
            layers.append({"name": layer, "weight": f"{layer}.weight", "bias": f"{layer}.bias",
                           "input": [batch, c, size, size], "stride": [stride, stride],
                           "padding": [padding, padding], "dilation": [1, 1], "groups": groups,
                           "activation": "relu", "output": [batch, k, out, out]})
    return arrays, {"model": "+".join(sets), "layers": layers}


def write_atomically(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".tmp.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", choices=sorted(SETS), help="layer sets to include")
    parser.add_argument("--sparsity", type=float, required=True, help="fraction of zeros, in [0, 1]")
    parser.add_argument("--batch", type=int, default=1, help="N in the geometry (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("-o", "--output", required=True, help=".npz to write; sidecar beside it")
    args = parser.parse_args(argv)
    if not 0.0 <= args.sparsity <= 1.0:
        print("make_layers: error: --sparsity must be in [0, 1]", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("make_layers: error: --batch must be positive", file=sys.stderr)
        return 2
    arrays, sidecar = make(args.sets, args.sparsity, args.batch, args.seed)
    write_atomically(args.output, lambda f: np.savez(f, **arrays))
    write_atomically(os.path.splitext(args.output)[0] + ".json",
                     lambda f: f.write((json.dumps(sidecar, indent=1) + "\n").encode()))
    print(f"make_layers: wrote {args.output}: {len(sidecar['layers'])} layers at "
          f"{args.sparsity:.0%} sparsity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
