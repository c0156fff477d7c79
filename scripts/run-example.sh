#!/usr/bin/env bash
# Quick start 1: set up, build, and generate kernels for every layer of the
# shipped example model (examples/esrgan_medium_x4, 90 % sparse) into generated/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
model=examples/esrgan_medium_x4/esrgan_medium_x4-s90.npz
build/tools/convgen --weights "$model" --list
build/tools/convgen --weights "$model" --all -o generated
