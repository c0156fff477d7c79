#!/usr/bin/env python3
"""Iterative magnitude pruning with convgen in the loop (CPU only).

    python3 examples/pruning_loop/pruning_loop.py [--work DIR] [--summary-json FILE] [--onnx]

A small CNN (conv-BN-ReLU x 3, then a linear head) learns a synthetic task:
which quadrant of a noisy 32x32 image holds a bright square. Then, round
after round, the script prunes, fine-tunes briefly, exports the model
(tools/export_pytorch.py folds the BatchNorms), regenerates every layer with
`convgen --all` through one kernel cache, and checks the kernels on the CPU
with `convgen verify --all`. The rounds show what the cache does:

  1. prune all convs to 50 %       every mask changes: every layer misses
  2. prune all convs to 80 %       again every layer misses
  3. fine-tune only                same masks, new values: every layer hits,
                                   only the packed weights are rewritten
  4. prune conv3 alone to 90 %     one mask changes: one miss, two hits
  5. export again, no change       every layer hits and nothing is written

Each round goes through the convgen package (python/convgen): convgen.torch.export
and convgen.torch.generate. On a CUDA GPU the rounds also run there: round one
loads a copy of the model with convgen.torch.load, each later round copies the
new weights in and calls model.convgen_reload(), which reloads only the changed
layers, and the swapped model's output is compared with PyTorch's.

With --onnx each round also exports the model as ONNX (export_pytorch's onnx
flag: the same folded, pruned weights) and convgen reads ROUND.onnx instead of
the .npz, through the same cache; the rounds hit and miss the same way, except
where the channels the graph proves zero or unread change (a fine-tuned bias
that turns negative behind a pruned filter makes its ReLU channel zero for
the next layer, whose code then changes): such a layer misses, and the round
says which.

Exit codes: 0 success, 1 convgen or a verify failed, or a round did not hit or miss as
expected, 2 cannot run (no torch, no convgen, or the export failed).
"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))  # the convgen package, if setup.sh did not

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.utils.prune as prune
except ImportError as error:  # pragma: no cover - depends on the machine
    print(f"pruning_loop: needs numpy and torch ({error})", file=sys.stderr)
    sys.exit(2)

import convgen.torch as cgt  # noqa: E402
from convgen import ConvgenError  # noqa: E402
from convgen.exporter import ExportError  # noqa: E402


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(32 * 4, 4)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.head(self.pool(x).flatten(1))

    def convs(self):
        return [("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3)]


def batch(generator, size=64):
    """Noisy images with a bright 8x8 square in one quadrant; the label is the quadrant."""
    labels = torch.randint(0, 4, (size,), generator=generator)
    images = 0.3 * torch.randn(size, 1, 32, 32, generator=generator)
    for i, label in enumerate(labels.tolist()):
        row, col = 4 + 16 * (label // 2), 4 + 16 * (label % 2)
        images[i, 0, row:row + 8, col:col + 8] += 1.0
    return images, labels


def train(model, generator, steps):
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        images, labels = batch(generator)
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimiser.step()


def accuracy(model, generator):
    model.eval()
    with torch.no_grad():
        images, labels = batch(generator, 512)
        return (model(images).argmax(1) == labels).float().mean().item()


def sparsity(model):
    zeros = total = 0
    for _, conv in model.convs():
        zeros += (conv.weight == 0).sum().item()
        total += conv.weight.numel()
    return zeros / total


def prune_to(model, amount, names=None):
    """Magnitude-prunes the named convs (all by default) so that `amount` of
    each one's weights are zero, counting the zeros already there."""
    for name, conv in model.convs():
        if names and name not in names:
            continue
        already = (conv.weight == 0).sum().item()
        more = round(amount * conv.weight.numel()) - already
        if more > 0:
            prune.l1_unstructured(conv, "weight", amount=more)


def run(command):
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    return result, time.monotonic() - start


def regenerate(args, weights, generated):
    """convgen --all through the cache: (seconds, hits, misses, files written)."""
    start = time.monotonic()
    try:
        result = cgt.generate(weights, generated, cache_dir=args.cache_dir, tool=args.convgen)
    except ConvgenError as error:
        raise RuntimeError(f"convgen failed: {error}") from error
    seconds = time.monotonic() - start
    hits = len(re.findall(r": hit,", result.stderr))
    misses = len(re.findall(r": (?:miss|corrupt),", result.stderr))
    untouched = len(re.findall(r"up to date", result.stderr))
    return seconds, hits, misses, (hits + misses) - untouched


def code_masks(args, weights, npz):
    """Per layer, the nonzeros its code keeps: the mask, less the weights on
    input channels the graph proves zero and in filters nobody reads (ONNX)."""
    result, _ = run([args.convgen, "--weights", weights, "--list", "--json"])
    if result.returncode != 0:
        raise RuntimeError(f"convgen --list failed ({result.returncode}): {result.stderr.strip()}")
    arrays = np.load(npz)
    masks = {}
    for layer in json.loads(result.stdout)["layers"]:
        mask = arrays[layer["weight_source"]] != 0
        channels = layer.get("channels", {})
        mask[:, channels.get("zero_inputs", [])] = False  # groups are 1 in this model
        mask[channels.get("unread_outputs", [])] = False
        masks[layer["name"]] = mask
    return masks


def is_one_of(layer, names):
    """Whether convgen's layer name (an ONNX node name like /conv3/Conv) is one of `names`."""
    return any(layer == name or f"/{name}/" in layer for name in names)


def gpu_round(model, example, generated, gpu, row):
    """On a GPU, the round's model through the package: round one loads a
    copy of it (convgen.torch.load), later rounds copy the new weights in and
    reload (model.convgen_reload(): only the changed layers). Then the
    swapped copy's output is compared with PyTorch's. False without a GPU."""
    if not torch.cuda.is_available():
        return False
    if not gpu:
        gpu["model"] = copy.deepcopy(model).cuda().eval()
        gpu["x"] = example.cuda()
        _, table = cgt.load(gpu["model"], generated, gpu["x"], policy="always")
        how = "load"
    else:
        gpu["model"].load_state_dict(model.state_dict())
        table = gpu["model"].convgen_reload()
        how = "reload"
    with torch.no_grad():
        got = gpu["model"](gpu["x"])
        with cgt.disabled(gpu["model"]):
            expected = gpu["model"](gpu["x"])
    row["gpu"] = {"how": how, "swapped": len(table.swapped()),
                  "max_abs_error": (got - expected).abs().max().item()}
    return True


def verify(args, weights):
    result, seconds = run([args.convgen, "verify", "--weights", weights, "--all", "--batch", "1"])
    return result.returncode == 0, seconds, result.stdout + result.stderr


ROUNDS = [
    # (what, prune amount, layers to prune, fine-tune steps, expected cache outcome)
    ("prune all to 50%", 0.5, None, 60, "miss"),
    ("prune all to 80%", 0.8, None, 60, "miss"),
    ("fine-tune only", None, None, 60, "hit"),
    ("prune conv3 to 90%", 0.9, ["conv3"], 60, "one miss"),
    ("no change", None, None, 0, "hit, nothing written"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convgen", default=os.environ.get(
        "CONVGEN_TOOL", os.path.join(ROOT, "build", "tools", "convgen")))
    parser.add_argument("--work", help="directory for the rounds' files (default: a temporary one)")
    parser.add_argument("--cache-dir", help="kernel cache (default: WORK/cache)")
    parser.add_argument("--summary-json", help="also write the per-round summary here")
    parser.add_argument("--onnx", action="store_true",
                        help="export each round as ONNX too and feed convgen ROUND.onnx "
                             "instead of the .npz")
    args = parser.parse_args(argv)
    if not os.path.exists(args.convgen):
        print(f"pruning_loop: no convgen at {args.convgen}: build it, or pass --convgen",
              file=sys.stderr)
        return 2

    temporary = None if args.work else tempfile.TemporaryDirectory()
    work = args.work or temporary.name
    os.makedirs(work, exist_ok=True)
    args.cache_dir = args.cache_dir or os.path.join(work, "cache")
    generated = os.path.join(work, "generated")

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = SmallCnn()
    train(model, generator, 150)
    print(f"dense model: accuracy {accuracy(model, generator):.3f}")
    print(f"{'round':<3} {'what':<22} {'sparsity':>8} {'accuracy':>8} {'generate s':>10} "
          f"{'hits':>4} {'misses':>6} {'written':>7} {'verify':>7}")

    summary, ok = [], True
    example = torch.randn(1, 1, 32, 32)
    previous_masks = {}
    gpu = {}  # the model on the GPU, swapped in, when there is one
    for number, (what, amount, names, steps, expected) in enumerate(ROUNDS, start=1):
        if amount is not None:
            prune_to(model, amount, names)
        train(model, generator, steps)
        npz = os.path.join(work, f"round{number}.npz")
        weights = os.path.join(work, f"round{number}.onnx") if args.onnx else npz
        try:
            cgt.export(model, example, weights)
        except ExportError as error:
            print(f"pruning_loop: round {number}: export: {error}", file=sys.stderr)
            return 2
        try:
            seconds, hits, misses, written = regenerate(args, weights, generated)
        except RuntimeError as error:
            print(f"pruning_loop: round {number}: {error}", file=sys.stderr)
            return 1
        # A layer's code also changes when the channels its graph makes zero
        # or unread change: fine-tuning can turn a pruned filter's bias
        # negative, and its ReLU channel is then zero for every consumer.
        masks = code_masks(args, weights, npz) if args.onnx else {}
        planned = (set(masks) if expected == "miss"
                   else {n for n in masks if is_one_of(n, names or [])})
        moved = sorted(n for n in masks if n in previous_masks and n not in planned and
                       not np.array_equal(masks[n], previous_masks[n]))
        previous_masks = masks
        verified, _, verify_log = verify(args, weights)
        row = {"round": number, "what": what, "sparsity": sparsity(model),
               "accuracy": accuracy(model, generator), "generate_seconds": seconds,
               "hits": hits, "misses": misses, "layers_written": written, "verified": verified,
               "expected": expected, "graph_changed": moved}
        summary.append(row)
        print(f"{number:<5} {what:<22} {row['sparsity']:>8.1%} {row['accuracy']:>8.3f} "
              f"{seconds:>10.2f} {hits:>4} {misses:>6} {written:>7} "
              f"{'PASS' if verified else 'FAIL':>7}", flush=True)
        if not verified:
            print(verify_log, file=sys.stderr)
        expected_counts = {"miss": (0, 3), "hit": (3, 0), "one miss": (2, 1),
                           "hit, nothing written": (3, 0)}[expected]
        if moved:
            expected_counts = (expected_counts[0] - len(moved), expected_counts[1] + len(moved))
            print(f"      {', '.join(moved)}: the channels the graph proves zero or unread "
                  f"changed, and with them the code", flush=True)
        as_expected = (hits, misses) == expected_counts and (
            expected != "hit, nothing written" or written == 0)
        if not as_expected:
            print(f"pruning_loop: round {number} ({what}): expected {expected}, got {hits} hits "
                  f"and {misses} misses, {written} layers written", file=sys.stderr)
        ok = ok and verified and as_expected
        if gpu_round(model, example, generated, gpu, row):
            print(f"      GPU: {row['gpu']['swapped']} of 3 layers swapped in "
                  f"({row['gpu']['how']}), max |error| {row['gpu']['max_abs_error']:.2e} "
                  f"against PyTorch", flush=True)
            ok = ok and row["gpu"]["max_abs_error"] <= 1e-3

    if not gpu:
        print("GPU: none, so the rounds were not run through convgen.torch.load and reload")
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=1)
    if temporary:
        temporary.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
