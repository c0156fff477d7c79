"""tools/codesizebench.py: its synthetic layers have exactly the nonzeros asked
for and are a model convgen reads; without a CUDA GPU it says so and exits 2."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from convgen_tool import SOURCE_DIR, convgen_list

sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))
import codesizebench  # noqa: E402

TOOL = os.path.join(SOURCE_DIR, "tools", "codesizebench.py")


def _cuda_available():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


class CodesizebenchTest(unittest.TestCase):
    def test_layers_have_exactly_the_nonzeros(self):
        rng = np.random.default_rng(3)
        for k in (32, 512):
            weight = codesizebench.fixed_nonzero_weights(rng, k, 64, 8192)
            self.assertEqual(weight.shape, (k, 64, 3, 3))
            self.assertEqual(int(np.count_nonzero(weight)), 8192)

    def test_model_is_read_by_convgen(self):
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "m.npz")
            codesizebench.make_model(path, [("k32", 32, 100), ("k64", 64, 100)], 4, 0)
            listed = convgen_list(path)
            self.assertEqual([layer["nonzeros"] for layer in listed["layers"]], [100, 100])

    def test_every_variant_has_the_same_work(self):
        rows = codesizebench.variants(8192)
        self.assertEqual({nonzeros for _, _, _, nonzeros, _ in rows}, {8192})
        self.assertEqual(sorted({sweep for sweep, *_ in rows}), ["code_size", "sections"])

    def test_runs_or_says_why_not(self):
        if _cuda_available():
            self.skipTest("a GPU is here: the run itself is the benchmark, not a unit test")
        result = subprocess.run([sys.executable, TOOL, "-o", tempfile.gettempdir()],
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("codesizebench: needs", result.stderr)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)


if __name__ == "__main__":
    unittest.main()
