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
  resnet50-model     every conv of torchvision's ResNet-50 in order, named as its
                     state_dict names them (53 layers, repeated shapes included)
  inceptionv3-model  every conv of torchvision's InceptionV3 without the auxiliary
                     head (94 layers, 299x299 input, 1x7 / 7x1 / 1x3 / 3x1 kernels)
The two -model sets are whole networks for timing generation at model scale;
their geometry is the network's, weights are random as for every set.

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



def resnet50_model():
    """torchvision's ResNet-50 (v1.5: the stride on the 3x3), every conv."""
    layers = [("conv1", 3, 64, 224, 7, 2, 3, 1)]
    inplanes, size = 64, 56
    for stage, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                      (512, 3, 2)), start=1):
        for b in range(blocks):
            s = stride if b == 0 else 1
            prefix = f"layer{stage}.{b}"
            layers.append((f"{prefix}.conv1", inplanes, planes, size, 1, 1, 0, 1))
            layers.append((f"{prefix}.conv2", planes, planes, size, 3, s, 1, 1))
            out = (size + 2 - 3) // s + 1
            layers.append((f"{prefix}.conv3", planes, planes * 4, out, 1, 1, 0, 1))
            if b == 0:
                layers.append((f"{prefix}.downsample.0", inplanes, planes * 4, size, 1, s, 0, 1))
            inplanes, size = planes * 4, out
    return layers


def inceptionv3_model():
    """torchvision's InceptionV3 (eval: no auxiliary head), every conv, in
    module order. Kernels and paddings may be (height, width) pairs."""
    layers = []

    def conv(name, c, k, size, kernel, stride=1, padding=0):
        layers.append((name, c, k, size, kernel, stride, padding, 1))

    conv("Conv2d_1a_3x3", 3, 32, 299, 3, 2)
    conv("Conv2d_2a_3x3", 32, 32, 149, 3)
    conv("Conv2d_2b_3x3", 32, 64, 147, 3, 1, 1)
    conv("Conv2d_3b_1x1", 64, 80, 73, 1)
    conv("Conv2d_4a_3x3", 80, 192, 73, 3)
    size, c = 35, 192
    for name, pool in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        conv(f"{name}.branch1x1", c, 64, size, 1)
        conv(f"{name}.branch5x5_1", c, 48, size, 1)
        conv(f"{name}.branch5x5_2", 48, 64, size, 5, 1, 2)
        conv(f"{name}.branch3x3dbl_1", c, 64, size, 1)
        conv(f"{name}.branch3x3dbl_2", 64, 96, size, 3, 1, 1)
        conv(f"{name}.branch3x3dbl_3", 96, 96, size, 3, 1, 1)
        conv(f"{name}.branch_pool", c, pool, size, 1)
        c = 64 + 64 + 96 + pool
    conv("Mixed_6a.branch3x3", c, 384, size, 3, 2)
    conv("Mixed_6a.branch3x3dbl_1", c, 64, size, 1)
    conv("Mixed_6a.branch3x3dbl_2", 64, 96, size, 3, 1, 1)
    conv("Mixed_6a.branch3x3dbl_3", 96, 96, size, 3, 2)
    size, c = 17, 384 + 96 + c
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        conv(f"{name}.branch1x1", c, 192, size, 1)
        conv(f"{name}.branch7x7_1", c, c7, size, 1)
        conv(f"{name}.branch7x7_2", c7, c7, size, (1, 7), 1, (0, 3))
        conv(f"{name}.branch7x7_3", c7, 192, size, (7, 1), 1, (3, 0))
        conv(f"{name}.branch7x7dbl_1", c, c7, size, 1)
        conv(f"{name}.branch7x7dbl_2", c7, c7, size, (7, 1), 1, (3, 0))
        conv(f"{name}.branch7x7dbl_3", c7, c7, size, (1, 7), 1, (0, 3))
        conv(f"{name}.branch7x7dbl_4", c7, c7, size, (7, 1), 1, (3, 0))
        conv(f"{name}.branch7x7dbl_5", c7, 192, size, (1, 7), 1, (0, 3))
        conv(f"{name}.branch_pool", c, 192, size, 1)
    conv("Mixed_7a.branch3x3_1", c, 192, size, 1)
    conv("Mixed_7a.branch3x3_2", 192, 320, size, 3, 2)
    conv("Mixed_7a.branch7x7x3_1", c, 192, size, 1)
    conv("Mixed_7a.branch7x7x3_2", 192, 192, size, (1, 7), 1, (0, 3))
    conv("Mixed_7a.branch7x7x3_3", 192, 192, size, (7, 1), 1, (3, 0))
    conv("Mixed_7a.branch7x7x3_4", 192, 192, size, 3, 2)
    size, c = 8, 320 + 192 + c
    for name in ("Mixed_7b", "Mixed_7c"):
        conv(f"{name}.branch1x1", c, 320, size, 1)
        conv(f"{name}.branch3x3_1", c, 384, size, 1)
        conv(f"{name}.branch3x3_2a", 384, 384, size, (1, 3), 1, (0, 1))
        conv(f"{name}.branch3x3_2b", 384, 384, size, (3, 1), 1, (1, 0))
        conv(f"{name}.branch3x3dbl_1", c, 448, size, 1)
        conv(f"{name}.branch3x3dbl_2", 448, 384, size, 3, 1, 1)
        conv(f"{name}.branch3x3dbl_3a", 384, 384, size, (1, 3), 1, (0, 1))
        conv(f"{name}.branch3x3dbl_3b", 384, 384, size, (3, 1), 1, (1, 0))
        conv(f"{name}.branch_pool", c, 192, size, 1)
        c = 320 + 768 + 768 + 192
    return layers


SETS = {"paper": PAPER, "resnet50": RESNET50, "vgg16": VGG16, "mobilenetv2": MOBILENETV2,
        "resnet50-model": resnet50_model(), "inceptionv3-model": inceptionv3_model()}


def pair(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


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
            (kh, kw), (ph, pw) = pair(kernel), pair(padding)
            fan_in = (c // groups) * kh * kw
            weight = rng.standard_normal((k, c // groups, kh, kw)).astype(np.float32)
            weight /= np.float32(np.sqrt(fan_in))
            arrays[f"{layer}.weight"] = prune_by_magnitude(weight, sparsity)
            arrays[f"{layer}.bias"] = (rng.standard_normal(k) * 0.1).astype(np.float32)
            out_h = (size + 2 * ph - kh) // stride + 1
            out_w = (size + 2 * pw - kw) // stride + 1
            layers.append({"name": layer, "weight": f"{layer}.weight", "bias": f"{layer}.bias",
                           "input": [batch, c, size, size], "stride": [stride, stride],
                           "padding": [ph, pw], "dilation": [1, 1], "groups": groups,
                           "activation": "relu", "output": [batch, k, out_h, out_w]})
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
