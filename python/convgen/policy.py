"""Whether a generated layer replaces PyTorch's convolution: the policy, and
the cache of timings that lets a second load decide without timing again.

"auto" swaps a layer only where convgen's kernel was faster than PyTorch's own
convolution at the model's input shape, on this device, with PyTorch's current
TF32 setting; "always" and "never" force the choice (tests, benchmarks). A
layer convgen is not faster on keeps PyTorch's convolution.
"""
import json
import os
import tempfile

from .file_mode import new_file_mode

POLICIES = ("auto", "always", "never")


def choose(policy, convgen_ms=None, torch_ms=None):
    """(swap, why) for one layer. With policy "auto", both times are needed:
    convgen must be strictly faster."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    if policy == "always":
        return True, "policy 'always'"
    if policy == "never":
        return False, "policy 'never'"
    if convgen_ms is None or torch_ms is None:
        return False, "not timed"
    if convgen_ms < torch_ms:
        return True, f"faster: {convgen_ms:.4f} ms against PyTorch's {torch_ms:.4f} ms"
    return False, f"not faster: {convgen_ms:.4f} ms against PyTorch's {torch_ms:.4f} ms"


def default_cache_path():
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "convgen", "torch-decisions.json")


class TimingCache:
    """Timings by what decides them: the device, the input shape and type, the
    TF32 setting, the PyTorch and cuDNN versions, and the kernel (its cache
    key: its code, not its values). A JSON file, rewritten atomically."""

    def __init__(self, path=None):
        self.path = path or default_cache_path()
        try:
            with open(self.path) as f:
                self._entries = json.load(f)
            if not isinstance(self._entries, dict):
                self._entries = {}
        except (OSError, ValueError):
            self._entries = {}  # none yet, or unreadable: time again

    @staticmethod
    def key(**facts):
        return json.dumps(facts, sort_keys=True)

    def get(self, key):
        entry = self._entries.get(key)
        if (isinstance(entry, dict) and isinstance(entry.get("convgen_ms"), (int, float))
                and isinstance(entry.get("torch_ms"), (int, float))):
            return entry["convgen_ms"], entry["torch_ms"]
        return None

    def put(self, key, convgen_ms, torch_ms):
        self._entries[key] = {"convgen_ms": convgen_ms, "torch_ms": torch_ms}
        directory = os.path.dirname(os.path.abspath(self.path))
        temp = None
        try:
            os.makedirs(directory, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=directory, prefix=".torch-decisions.")
            with os.fdopen(fd, "w") as f:
                json.dump(self._entries, f, indent=1, sort_keys=True)
            os.chmod(temp, new_file_mode())
            os.replace(temp, self.path)
            temp = None
        except OSError:
            pass  # a cache that cannot be written only costs a timing next time
        finally:
            if temp and os.path.exists(temp):
                os.unlink(temp)
