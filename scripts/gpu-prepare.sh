#!/usr/bin/env bash
# Prepares, here (LLVM 19 is needed to generate; the GPU machines have none),
# everything scripts/gpu-evidence.sh needs on the GPU machine, into one folder
# of at most 62 MiB of files, within the 64 MiB the device tool carries
# (default build-evidence/prepared, git-ignored):
#   - the weights and sidecars: the paper's layers and ResNet-50's distinct
#     shapes (seeded random weights, pruned by magnitude) and the shipped
#     example, at 70, 90 and 95 % (scripts/make-benchmark-set.sh);
#   - per model, sparsity, fp32/fp16 and batch 1/32: `convgen --all --arch sm_90
#     --for-batch N` (H100 and H200 are sm_90), and convgen's dense kernel
#     (`--tiling dense=1`, fp32) of each layer;
#   - the first candidate tilings of a few layers, for the tuning step;
#   - evidence-manifest.json (every case, in the order the run takes them, with
#     its number of timed cases and the run's time estimate) and lib/libconvgen.so.
# Cases are kept in priority order while the folder fits: the paper's layers and
# the example at 90 % fp32 with their dense kernels; then 95 % fp32, 90 and 95 %
# fp16, 70 % fp32 and fp16; then ResNet-50's shapes layer by layer (the fewest
# nonzeros first) into the room left. What does not fit is deleted (or, when a
# kept case predicts it by nonzeros, not generated) and listed in the manifest,
# and later the report, as not prepared, with why. ResNet-50's weights (48 MiB
# each) are not carried: the GPU run makes them again with tools/make_layers.py
# and checks their digest. Inputs are not carried: convbench draws them there.
# --max-minutes T stops generating after T minutes (the rest: left out, saying so).
#
#   scripts/gpu-prepare.sh [DIR] [--set small] [--max-mib 62] [--max-minutes T] [-j N]
#
# Needs the main build (scripts/build.sh): build/tools/convgen and
# build/src/libconvgen.so. Then pass DIR as a `carry` path of the device tool
# (build-evidence/prepared), and on the GPU machine run scripts/gpu-evidence.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/find-python.sh # sets $python, or exits 2
out=build-evidence/prepared
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  out="$1"
  shift
fi
exec "$python" tools/gpu_evidence.py prepare -o "$out" "$@"
