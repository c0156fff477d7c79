#!/usr/bin/env bash
# The first GPU run, in one command (issue 16): on a 16-core H100/H200 machine,
# within 10 minutes of wall time (start-up excluded), from the folder
# scripts/gpu-prepare.sh made here (it travels with the checkout; the GPU
# machine has no LLVM 19, so no PTX is generated there).
#
#   scripts/gpu-evidence.sh [PREPARED] [-o OUT]      # default build-evidence/prepared
#
# Steps, each under its own budget (seconds; GPU_EVIDENCE_BUDGET_<STEP>
# overrides). A step that runs out keeps what it measured; the report says
# what was skipped and why:
#   details    15  device, driver, CUDA, cuDNN, torch, commit, date, nvidia-smi
#   inputs     30  ResNet-50's weights (too big to carry) made again with
#                  tools/make_layers.py (seeded); every weights file checked by digest
#   build     135  the runtime-only tree (build-rt): libconvgen.so, runtime_tests;
#                  if it fails, the prepared folder's lib/libconvgen.so
#   gpu_tests  60  runtime_tests, and gpu_tests where a built one can start
#                  (GPU_EVIDENCE_GPU_TESTS): gpu_tests generate their layers and
#                  need LLVM 19, so on a GPU machine without it they are skipped,
#                  saying so; convbench's float64 check covers the prepared layers
#   convbench 300  every prepared case at batch 1 and 32: fp32 (TF32 off) and fp16
#                  against cuDNN, fp32 against cuSPARSE, and convgen's dense kernel
#   tune       45  the prepared candidate tilings, timed convgen-only
#   report     15  OUT/evidence.md and evidence.json
#                  -----
#                  600 s of budgets; the run as a whole stops at 570 s
#                  (GPU_EVIDENCE_TOTAL_S), under the device tool's 600 s per
#                  command: each step gets its budget or what is left, less the
#                  report's 15 s, whichever is less.
# Time estimate (tools/gpu_evidence.py estimate(), printed at the start and
# stored in the manifest): per timed case (a layer at a batch) 0.15 s for convgen
# (float64 check, 5 warm-up calls, 20 samples of at least 1 ms), 0.25 s for cuDNN
# (cudnnFind included) and 0.15 s for cuSPARSE; plus the module loads' JIT at
# ptxas's rate here (2.3 s per MiB of PTX), and 10 s per step to start Python,
# torch and CUDA. The whole
# issue-16 set would be 798 timed cases (57 layers x 2 batches x 3 sparsities x
# fp32/fp16, plus 114 of the dense kernels): about 352 s before JIT, over the
# 300 s step, and its PTX is far over 64 MiB (ResNet-50's alone is hundreds of
# MiB). gpu-prepare.sh keeps what fits in priority order (ResNet-50 layer by
# layer, the fewest nonzeros first) and stores the estimate of what it kept in
# evidence-manifest.json; the convbench step runs the cases in that order until
# its budget ends.
#
# Output (OUT, default build-evidence/results-<UTC time>): evidence.md (the
# summary: per layer the speedup over cuDNN and cuSPARSE at batch 1 and 32,
# over convgen's dense kernel, % of the fp32 FMA peak and % of bandwidth),
# evidence.json, details.json, steps.json, convbench/<case>/convbench.{json,md},
# tune/<candidate>/, logs/.
#
# Rehearsal: with CONVGEN_CUDA_DRIVER naming the host CUDA driver
# (build/test/libconvgen_hostcuda.so) it runs the same steps without a GPU:
# convbench runs with --host-driver, cuDNN and cuSPARSE are skipped, and every
# report is flagged "REHEARSAL: host CUDA driver, no GPU; timings are not GPU
# figures". CONVGEN_LIB naming a built libconvgen.so skips the build step.
#
# Exit codes: 0 every step ran (or was skipped for a stated reason) and every
# layer was correct; 1 a step failed or a layer was wrong; 2 no usable
# prepared folder.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/find-python.sh # sets $python, or exits 2
prepared=build-evidence/prepared
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  prepared="$1"
  shift
fi
exec "$python" tools/gpu_evidence.py run --prepared "$prepared" "$@"
