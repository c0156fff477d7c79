#!/usr/bin/env bash
# Quick start 2: set up, build, and run every test: the runtime-only build's
# tests, the fuzzers for a bounded time (CONVGEN_FUZZ_SECONDS per parser,
# default 15: five parsers in 75 s), and the full suite
# (GoogleTest, CLI and Python tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== runtime-only build (no LLVM)"
cmake -S . -B build-runtime -G Ninja -DCONVGEN_RUNTIME_ONLY=ON >/dev/null
cmake --build build-runtime --parallel
ctest --test-dir build-runtime --output-on-failure --parallel 2

echo "== fuzzing"
scripts/fuzz.sh "${CONVGEN_FUZZ_SECONDS:-15}"

echo "== full build and test suite"
scripts/build.sh
ctest --test-dir build --output-on-failure --parallel 2
