"""tools/genbench.py: the per-layer phase breakdown is read from `convgen -v`
(summed over a split layer's kernels) and joined with the summary table's
fma in code."""
import os
import sys
import unittest

from convgen_tool import SOURCE_DIR

sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))
import genbench  # noqa: E402

STDERR = """convgen: [1/2] net.a: miss, 3.10 s
convgen: layer 'net.a' phases: specialise 0.100 s eliminate 0.500 s pack 0.010 s cleanup 0.200 s specialise 0.100 s eliminate 0.300 s pack 0.010 s cleanup 0.100 s ptx 1.000 s ptxas 2.000 s
convgen: layer 'net.b' phases: specialise 0.050 s ptx 0.020 s ptxas 0.100 s
"""
TABLE = """layer            shape                    sparse       nnz     dense MACs    sparse MACs fma in code   PTX KiB SASS/fma  regs spill B kernels cache     time s
net.a            8->8 4x4 3x3 s1           90.0%        58          73728           7424         116      20.1     1.74   128       0       2 miss        3.10
net.b            8->8 4x4 3x3 s1           99.0%         6          73728            768          12       2.3     2.00    40       0       1 miss        0.20
total: 2 layer(s), 0 cache hit(s), 0 failed; 8192 of 147456 multiply-adds (5.6%) are the nonzeros' work; 128 fma in code; 3.30 s of layer time
"""


class GenbenchTest(unittest.TestCase):
    def test_phases_are_summed_per_layer_and_joined_with_fma(self):
        phases = genbench.layer_phases(STDERR, TABLE)
        self.assertEqual(set(phases), {"net.a", "net.b"})
        self.assertAlmostEqual(phases["net.a"]["specialise"], 0.2)
        self.assertAlmostEqual(phases["net.a"]["eliminate"], 0.8)
        self.assertAlmostEqual(phases["net.a"]["ptxas"], 2.0)
        self.assertEqual(phases["net.a"]["fma"], 116)
        self.assertEqual(phases["net.b"]["fma"], 12)

    def test_phase_table_totals(self):
        lines = genbench._phase_table(genbench.layer_phases(STDERR, TABLE))
        self.assertEqual(len(lines), 2 + 2 + 1)
        self.assertIn("| net.a | 116 | 0.20 | 0.80 | 0.02 | 0.30 | 1.00 | 2.00 | 0.00 | 4.32 | 37.241 |",
                      lines)
        self.assertTrue(lines[-1].startswith("| **all 2 layers** | 128 |"))


if __name__ == "__main__":
    unittest.main()
