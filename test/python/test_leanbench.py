"""tools/leanbench.py: it classes layers as the lean-code targets do, reads
generation seconds from convgen's progress lines, and writes one row per
layer with the figures of the layer's manifest."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from convgen_tool import SOURCE_DIR, convgen_tool

sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))
import codesizebench  # noqa: E402
import leanbench  # noqa: E402

TOOL = os.path.join(SOURCE_DIR, "tools", "leanbench.py")


def geometry(kernel, groups, in_per_group):
    """The manifest's geometry fields the classes read."""
    return {"groups": groups, "weight_shape": [8, in_per_group] + kernel}


class LeanbenchTest(unittest.TestCase):
    def test_shape_classes(self):
        self.assertEqual(leanbench.shape_class(geometry([3, 3], 1, 8)), "kxk")
        self.assertEqual(leanbench.shape_class(geometry([1, 7], 1, 8)), "kxk")
        self.assertEqual(leanbench.shape_class(geometry([1, 1], 1, 8)), "1x1")
        self.assertEqual(leanbench.shape_class(geometry([3, 3], 8, 1)), "depthwise")
        self.assertEqual(leanbench.shape_class(geometry([3, 3], 2, 4)), "kxk",
                         "a grouped layer with several channels per group is not depthwise")

    def test_generation_seconds_from_progress_lines(self):
        seconds = leanbench.seconds_by_layer(
            "[1/2] F_0: off, 4.40 s\nwarning: something, 3 s\n[2/2] LFF_1: miss, 0.25 s\n")
        self.assertEqual(seconds, {"F_0": 4.40, "LFF_1": 0.25})

    def test_markdown_marks_only_depthwise_rows(self):
        def row(layer, shape_class, groups):
            return {"model": "m", "layer": layer, "kernel": "3x3", "groups": groups,
                    "shape_class": shape_class, "arch": "sm_80", "batch": 1,
                    "tiling": "bk=1,bw=8,stage=0", "mode": "sparse", "fma": 10, "sass": 70,
                    "sass_per_fma": 7.0, "registers": 40, "spill_bytes": 0,
                    "ptxas_seconds": 0.1, "generation_seconds": 0.2}
        table = leanbench.markdown([row("dw", "depthwise", 8), row("grouped", "kxk", 2)])
        self.assertIn("| m | dw | 3x3 dw | sm_80 | 1 | bk=1,bw=8 |", table)
        self.assertIn("| m | grouped | 3x3 | sm_80 | 1 |", table, "groups of 4 channels are not depthwise")
        self.assertIn("| depthwise | sm_80 | 1 | 1 | 7.0 | m dw | 0 | 0 |", table)

    def run_leanbench(self, work, *options):
        """Runs leanbench over a two-layer model (k16, k32) in work; its output stem."""
        model = os.path.join(work, "m.npz")
        codesizebench.make_model(model, [("k16", 16, 40), ("k32", 32, 80)], 4, 0)
        stem = os.path.join(work, "lean")
        result = subprocess.run([sys.executable, TOOL, "--convgen", convgen_tool(), "--model", model,
                                 *options, "-o", stem],
                                capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        return stem

    def test_one_row_per_layer(self):
        with tempfile.TemporaryDirectory() as work:
            ptxas = shutil.which("ptxas", path="/usr/local/cuda/bin") or ""
            stem = self.run_leanbench(work, "--ptxas", ptxas)
            with open(stem + ".json") as f:
                rows = json.load(f)
            self.assertEqual(sorted(r["layer"] for r in rows), ["k16", "k32"])
            for row in rows:
                self.assertEqual(row["shape_class"], "kxk")
                self.assertGreater(row["fma"], 0)
                self.assertIsNotNone(row["generation_seconds"])
                if ptxas:
                    self.assertGreater(row["sass_per_fma"], 1.0, "every fma is a SASS instruction")
                    self.assertIsNotNone(row["ptxas_seconds"])
            with open(stem + ".md") as f:
                table = f.read()
            self.assertIn("| kxk | sm_80 | 1 | 2 |", table)

    def test_layer_selects_the_layers(self):
        with tempfile.TemporaryDirectory() as work:
            stem = self.run_leanbench(work, "--layer", "k32", "--ptxas", "")
            with open(stem + ".json") as f:
                self.assertEqual([r["layer"] for r in json.load(f)], ["k32"])


if __name__ == "__main__":
    unittest.main()
