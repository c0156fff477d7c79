"""`convgen --list` on every shipped model reports each layer's sparsity
exactly as numpy counts it."""
import glob
import json
import os
import subprocess
import unittest

import numpy as np

from convgen_tool import SOURCE_DIR, convgen_list, convgen_tool


def shipped_models():
    models = sorted(glob.glob(os.path.join(SOURCE_DIR, "examples", "*", "*.npz")))
    if not models:
        raise AssertionError("no example models under examples/")
    return models


class ListSparsityMatchesNumpy(unittest.TestCase):
    def test_every_layer_of_every_shipped_model(self):
        for npz in shipped_models():
            with self.subTest(model=os.path.basename(npz)):
                arrays = np.load(npz)
                with open(os.path.splitext(npz)[0] + ".json") as f:
                    sidecar = json.load(f)
                listing = convgen_list(npz)["layers"]
                self.assertEqual([l["name"] for l in listing], [l["name"] for l in sidecar["layers"]])
                for spec, listed in zip(sidecar["layers"], listing):
                    weight = arrays[spec["weight"]]
                    nonzeros = int(np.count_nonzero(weight))
                    self.assertEqual(listed["nonzeros"], nonzeros, spec["name"])
                    self.assertEqual(listed["weights"], weight.size, spec["name"])
                    self.assertAlmostEqual(listed["sparsity"], 1 - nonzeros / weight.size, places=12)
                    self.assertEqual(listed["weight_shape"], list(weight.shape))

    def test_table_shows_the_same_counts(self):
        npz = shipped_models()[0]
        arrays = np.load(npz)
        result = subprocess.run([convgen_tool(), "--weights", npz, "--list"],
                                capture_output=True, text=True, check=True)
        for layer in convgen_list(npz)["layers"]:
            weight = arrays[layer["name"] + ".weight"]
            row = next(line for line in result.stdout.splitlines()
                       if line.split() and line.split()[0] == layer["name"])
            self.assertIn(f"{np.count_nonzero(weight)}/{weight.size}", row)
            self.assertIn(f"{100 * (1 - np.count_nonzero(weight) / weight.size):.2f}%", row)


if __name__ == "__main__":
    unittest.main()
