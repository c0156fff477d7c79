#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-19, ASan + UBSan) over the .npy, .npz,
# geometry-sidecar, fatbinary and ONNX parsers (ONNX where libonnx-dev is installed),
# and runs each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 20; CONVGEN_FUZZ_SECONDS too)
#
# The seed corpus is test/fuzz/corpus/KIND; inputs libFuzzer finds are kept in
# build-fuzz/corpus/KIND between runs. A crash stops the run with exit 1 and
# leaves the input in fuzz-artifacts/: commit it under
# test/fuzz/regressions/KIND/ (the replay test then runs it forever) and fix it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-${CONVGEN_FUZZ_SECONDS:-20}}"
build="${CONVGEN_FUZZ_BUILD_DIR:-build-fuzz}"
clang=clang++-19
command -v "$clang" >/dev/null || { echo "fuzz.sh: $clang not found; run scripts/setup.sh" >&2; exit 2; }

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$clang" -DCONVGEN_RUNTIME_ONLY=ON \
  -DCONVGEN_BUILD_TESTS=OFF -DCONVGEN_BUILD_FUZZERS=ON >/dev/null
cmake --build "$build" --parallel

mkdir -p fuzz-artifacts
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
kinds=(npy npz sidecar fatbinary)
[[ -x "$build/test/fuzz/fuzz_onnx" ]] && kinds+=(onnx)
for kind in "${kinds[@]}"; do
  corpus="$build/corpus/$kind"
  mkdir -p "$corpus"
  echo "fuzz.sh: fuzzing the $kind parser for ${seconds}s"
  # Runs leave the finds in the corpus folder; seeds and regressions are read-only inputs.
  if ! "$build/test/fuzz/fuzz_$kind" "$corpus" "test/fuzz/corpus/$kind" "test/fuzz/regressions/$kind" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="fuzz-artifacts/$kind-" -print_final_stats=1 2>"$build/fuzz-$kind.log"; then
    tail -n 40 "$build/fuzz-$kind.log" >&2
    echo "fuzz.sh: the $kind fuzzer found a crash; the input is in fuzz-artifacts/" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_runs|^#[0-9]+.*DONE" "$build/fuzz-$kind.log" | tail -n 2 || true
done
echo "fuzz.sh: no crash in $((${#kinds[@]} * seconds))s of fuzzing (${kinds[*]})"
