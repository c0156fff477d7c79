"""tools/make_layers.py: benchmark layer sets made from scratch, pruned exactly,
and readable by convgen."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from convgen_tool import SOURCE_DIR, convgen_list

TOOL = os.path.join(SOURCE_DIR, "tools", "make_layers.py")


class MakeLayers(unittest.TestCase):
    def test_sets_are_pruned_exactly_and_round_trip_through_convgen(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "paper.npz")
            result = subprocess.run([sys.executable, TOOL, "paper", "--sparsity", "0.9",
                                     "--batch", "2", "-o", out], capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, result.stderr)
            arrays = np.load(out)
            listing = convgen_list(out)["layers"]
            self.assertEqual(len(listing), 6)
            for layer in listing:
                weight = arrays[layer["name"] + ".weight"]
                zeros = weight.size - np.count_nonzero(weight)
                self.assertEqual(zeros, round(0.9 * weight.size), layer["name"])
                self.assertEqual(layer["nonzeros"], np.count_nonzero(weight))
                self.assertEqual(layer["input"][0], 2)
            shapes = {l["name"]: l["output"] for l in listing}
            self.assertEqual(shapes["paper.lenet5_conv2"], [2, 16, 10, 10])
            self.assertEqual(shapes["paper.vgg16_224_64to64"], [2, 64, 224, 224])

    def test_same_seed_same_weights(self):
        with tempfile.TemporaryDirectory() as d:
            for name in ("a", "b"):
                subprocess.run([sys.executable, TOOL, "resnet50", "--sparsity", "0.5", "-o",
                                os.path.join(d, name + ".npz")], check=True, capture_output=True)
            a, b = np.load(os.path.join(d, "a.npz")), np.load(os.path.join(d, "b.npz"))
            self.assertEqual(a.files, b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])

    def test_model_sets_are_whole_networks(self):
        sys.path.insert(0, os.path.dirname(TOOL))
        import make_layers  # noqa: E402
        resnet = make_layers.SETS["resnet50-model"]
        inception = make_layers.SETS["inceptionv3-model"]
        self.assertEqual(len(resnet), 53)
        self.assertEqual(len(inception), 94)
        names = [layer[0] for layer in resnet]
        self.assertIn("layer4.0.downsample.0", names)
        self.assertEqual(len(set(names)), len(names))
        # Weights as torchvision's: 23.45 M in ResNet-50's convs, 21.75 M in
        # InceptionV3's (without the auxiliary head).
        def weights(layers):
            total = 0
            for _, c, k, _, kernel, _, _, groups in layers:
                kh, kw = make_layers.pair(kernel)
                total += k * (c // groups) * kh * kw
            return total
        self.assertEqual(weights(resnet), 23454912)
        self.assertEqual(weights(inception), 21751136)
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "inception.npz")
            subprocess.run([sys.executable, TOOL, "inceptionv3-model", "--sparsity", "0.9", "-o",
                            out], check=True, capture_output=True)
            shapes = {l["name"]: l for l in convgen_list(out)["layers"]}
            layer = shapes["inceptionv3-model.Mixed_6b.branch7x7_2"]
            self.assertEqual(layer["output"], [1, 128, 17, 17])
            self.assertEqual(shapes["inceptionv3-model.Mixed_7c.branch3x3dbl_2"]["output"],
                             [1, 384, 8, 8])

    def test_bad_sparsity_exits_2(self):
        result = subprocess.run([sys.executable, TOOL, "paper", "--sparsity", "1.5", "-o",
                                 os.devnull], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--sparsity must be in [0, 1]", result.stderr)


if __name__ == "__main__":
    unittest.main()
