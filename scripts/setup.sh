#!/usr/bin/env bash
# Installs every convgen dependency from Debian packages (bookworm or later)
# and checks for the CUDA toolkit. Safe to re-run: apt-get runs only when a
# package is missing.
#
#   scripts/setup.sh
#
# CUDA is not a Debian package: convgen expects NVIDIA's toolkit at
# /usr/local/cuda (or $CUDA_HOME) for cuda.h and ptxas. Without it convgen
# still builds and generates PTX; validating PTX with ptxas and running
# kernels need it.
set -euo pipefail

packages=(
  # build
  cmake ninja-build pkg-config g++
  # LLVM 19: the IR passes and NVPTX backend; clang-19 compiles the templates
  # and the fuzzers (libclang-rt-19-dev has libFuzzer and the sanitizers);
  # llvm-19-tools has FileCheck for the IR/PTX text tests
  llvm-19-dev clang-19 libclang-rt-19-dev llvm-19-tools
  # libraries
  nlohmann-json3-dev libcli11-dev libzip-dev zlib1g-dev
  # ONNX input: the ONNX library (protobuf model, checker, shape inference)
  libonnx-dev libprotobuf-dev
  # tests
  libgtest-dev libgmock-dev googletest
  # the PyTorch exporter (with its ONNX export) and its tests
  python3 python3-numpy python3-torch python3-onnx
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2; exit 2; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all ${#packages[@]} Debian packages present"
fi

# The Python package (python/convgen): a .pth file in Debian python3's site
# directory names this checkout's python/, so `import convgen.torch` works
# without PyPI or pip. It uses this checkout's build (build/) or $CONVGEN_TOOL
# and $CONVGEN_LIB.
python_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/python"
if site_dir="$(/usr/bin/python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)"; then
  pth="$site_dir/convgen.pth"
  if [[ "$(cat "$pth" 2>/dev/null)" != "$python_dir" ]]; then
    if [[ $(id -u) -eq 0 ]]; then
      mkdir -p "$site_dir" && printf '%s\n' "$python_dir" >"$pth"
    elif command -v sudo >/dev/null; then
      sudo mkdir -p "$site_dir" && printf '%s\n' "$python_dir" | sudo tee "$pth" >/dev/null
    else
      echo "setup: warning: cannot write $pth (not root, no sudo): put $python_dir on PYTHONPATH" >&2
    fi
  fi
  [[ -f "$pth" ]] && echo "setup: the convgen Python package is importable ($pth -> $python_dir)"
fi

cuda="${CUDA_HOME:-/usr/local/cuda}"
cuda_missing=()
[[ -f "$cuda/include/cuda.h" ]] || cuda_missing+=("$cuda/include/cuda.h (CUDA Driver API header)")
[[ -x "$cuda/bin/ptxas" ]] || cuda_missing+=("$cuda/bin/ptxas (PTX assembler, validates generated PTX)")
if ((${#cuda_missing[@]})); then
  echo "setup: warning: CUDA toolkit incomplete at $cuda (set CUDA_HOME to use another):" >&2
  for item in "${cuda_missing[@]}"; do echo "setup:   missing $item" >&2; done
  echo "setup: convgen still builds and generates PTX; tests that need ptxas are skipped." >&2
else
  echo "setup: CUDA toolkit at $cuda: $("$cuda/bin/ptxas" --version | tail -n 1)"
fi
