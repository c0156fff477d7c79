# Sourced by the GPU evidence scripts (from the repository root): sets
# $python to the first Python that has numpy and torch (Debian's here, maybe
# another on a GPU machine; $PYTHON first), or exits 2 saying none has.
python=
for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import numpy, torch' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [ -z "$python" ]; then
  echo "$(basename "$0"): no python3 with numpy and torch (set PYTHON)" >&2
  exit 2
fi
