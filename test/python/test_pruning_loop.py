"""examples/pruning_loop: five pruning rounds through convgen's cache hit and
miss as the example says (every layer, none, one), every round's kernels
verify on the CPU, and an unchanged round writes nothing."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

from convgen_tool import SOURCE_DIR, convgen_tool

SCRIPT = os.path.join(SOURCE_DIR, "examples", "pruning_loop", "pruning_loop.py")


class PruningLoopTest(unittest.TestCase):
    def test_rounds_hit_and_miss_as_expected(self):
        tool = convgen_tool()
        with tempfile.TemporaryDirectory() as work:
            summary_path = os.path.join(work, "summary.json")
            result = subprocess.run([sys.executable, SCRIPT, "--convgen", tool, "--work", work,
                                     "--summary-json", summary_path],
                                    capture_output=True, text=True, timeout=500)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            rounds = json.load(open(summary_path))
        self.assertEqual([(r["hits"], r["misses"]) for r in rounds],
                         [(0, 3), (0, 3), (3, 0), (2, 1), (3, 0)])
        self.assertTrue(all(r["verified"] for r in rounds))
        self.assertEqual(rounds[-1]["layers_written"], 0)
        self.assertGreater(rounds[1]["sparsity"], 0.79)


if __name__ == "__main__":
    unittest.main()
