"""examples/pytorch/swap_layer.py: a generated layer swapped into a PyTorch
model on the GPU must match torch. Without a CUDA GPU the example must stop
with exit code 2 and say why, and the test is skipped."""
import os
import subprocess
import sys
import unittest

SOURCE = os.environ.get("CONVGEN_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLE = os.path.join(SOURCE, "examples", "pytorch", "swap_layer.py")


class PyTorchExample(unittest.TestCase):
    def test_swapped_layer_matches_torch(self):
        try:
            import torch
        except ImportError:
            self.skipTest("python3-torch is not installed")
        result = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True,
                                timeout=600)
        if not torch.cuda.is_available():
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertIn("needs a CUDA GPU", result.stderr)
            self.skipTest("no CUDA GPU: the example stopped cleanly with exit code 2")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("match", result.stdout)


if __name__ == "__main__":
    unittest.main()
