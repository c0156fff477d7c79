#!/usr/bin/env bash
# Makes the benchmark set of issue 5 from scratch into DIR (default bench/):
# the reference paper's layers and every distinct ResNet-50 conv shape, with
# seeded random weights pruned by magnitude, plus the shipped example model,
# each at 50, 70, 80, 90 and 95 % sparsity. Needs numpy (Debian's python3).
#
#   scripts/make-benchmark-set.sh [DIR]
#
# Then, for example: build/tools/convgen --weights DIR/paper-s90.npz --all -o DIR/paper-s90
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench}"
python=/usr/bin/python3
[ -x "$python" ] || python=python3
mkdir -p "$out"
for sparsity in 50 70 80 90 95; do
  for set in paper resnet50; do
    "$python" tools/make_layers.py "$set" --sparsity "0.$sparsity" -o "$out/$set-s$sparsity.npz"
  done
done
# The example model is shipped at 50, 80, 90 and 95 %; 70 % is made from the
# 50 % weights by magnitude pruning (the nonzeros of the 50 % model are its
# surviving trained values).
for sparsity in 50 80 90 95; do
  cp examples/esrgan_medium_x4/esrgan_medium_x4-s$sparsity.npz "$out/"
  cp examples/esrgan_medium_x4/esrgan_medium_x4-s$sparsity.json "$out/"
done
"$python" - "$out" <<'PY'
import json, os, sys, tempfile
import numpy as np
out = sys.argv[1]
source = np.load(os.path.join(out, "esrgan_medium_x4-s50.npz"))
arrays = {}
for key in source.files:
    array = source[key]
    if key.endswith(".weight") and array.ndim == 4:
        flat = np.abs(array).ravel()
        cut = int(round(0.7 * flat.size))
        order = np.argsort(flat, kind="stable")
        pruned = array.copy().ravel()
        pruned[order[:cut]] = 0.0
        array = pruned.reshape(array.shape)
    arrays[key] = array
target = os.path.join(out, "esrgan_medium_x4-s70.npz")
with tempfile.NamedTemporaryFile(dir=out, suffix=".npz", delete=False) as tmp:
    np.savez(tmp, **arrays)
os.replace(tmp.name, target)
sidecar = json.load(open(os.path.join(out, "esrgan_medium_x4-s50.json")))
tmp = target[:-4] + ".json.tmp"
with open(tmp, "w") as f:
    json.dump(sidecar, f, indent=1)
os.replace(tmp, target[:-4] + ".json")
PY
echo "make-benchmark-set: $(ls "$out"/*.npz | wc -l) models in $out"
