"""Sparsity that crosses layers, end to end: a torchvision-style ResNet
(examples/structured_pruning) pruned by filters (50 %, ln_structured) and then
by weights (80 %), exported to ONNX. convgen removes exactly the nonzeros that
the example's brute-force recount finds (running the network, no convgen
rule), every layer verifies in context, the code holds fewer fma than with
--no-propagate, and the manifests name the unread channels. A model with no
zero channels generates byte-identical PTX with and without propagation.
Unstructured pruning alone (90 %) matches its recount too."""
import glob
import json
import os
import subprocess
import sys
import tempfile
import unittest

from convgen_tool import SOURCE_DIR, convgen_tool

try:
    import onnx  # noqa: F401 (the recount reads the model with it)
    import torch  # noqa: F401
except ImportError:
    onnx = None

EXAMPLE = os.path.join(SOURCE_DIR, "examples", "structured_pruning")
EXPORT = os.path.join(SOURCE_DIR, "tools", "export_pytorch.py")


def fma_in_ptx(directory):
    total = 0
    for path in glob.glob(os.path.join(directory, "*.ptx")):
        with open(path) as f:
            total += f.read().count("fma.rn.f32")
    return total


@unittest.skipIf(onnx is None, "needs python3-onnx and python3-torch")
class ZeroChannelsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tool = convgen_tool()
        cls.work = tempfile.TemporaryDirectory()
        cls.model = os.path.join(cls.work.name, "tiny.onnx")
        subprocess.run([sys.executable, EXPORT, os.path.join(EXAMPLE, "tiny_resnet.py") +
                        ":tiny_resnet", "--input-shape", "1,3,32,32", "--prune-filters", "0.5",
                        "--prune", "0.8", "-o", os.path.join(cls.work.name, "tiny.npz"),
                        "--onnx"], check=True, capture_output=True)

        # Unstructured alone: whole filters of the 3-channel stem still go,
        # and residual adds of two constant channels make zeros behind ReLUs.
        cls.unstructured = os.path.join(cls.work.name, "u90.onnx")
        subprocess.run([sys.executable, EXPORT, os.path.join(EXAMPLE, "tiny_resnet.py") +
                        ":tiny_resnet", "--input-shape", "1,3,32,32", "--prune", "0.9",
                        "-o", os.path.join(cls.work.name, "u90.npz"), "--onnx"],
                       check=True, capture_output=True)

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()

    def convgen(self, *args):
        return subprocess.run([self.tool, *args], capture_output=True, text=True)

    def test_the_recount_matches_and_every_layer_verifies(self):
        report = os.path.join(self.work.name, "recount.json")
        result = subprocess.run([sys.executable, os.path.join(EXAMPLE, "recount.py"), self.model,
                                 "--convgen", self.tool, "--json", report],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("recount: MATCH", result.stdout)
        with open(report) as f:
            rows = json.load(f)["rows"]
        self.assertGreater(sum(r["recount"] for r in rows), 0)

        verify = self.convgen("verify", "--weights", self.model, "--all")
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        self.assertIn("15 PASS, 0 FAIL", verify.stdout)
        self.assertIn("in context:", verify.stdout)

    def test_the_recount_matches_on_unstructured_pruning_too(self):
        result = subprocess.run([sys.executable, os.path.join(EXAMPLE, "recount.py"),
                                 self.unstructured, "--convgen", self.tool],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        verify = self.convgen("verify", "--weights", self.unstructured, "--all")
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)

    def test_propagation_removes_code_and_says_which_channels(self):
        on, off = (os.path.join(self.work.name, name) for name in ("on", "off"))
        for directory, extra in ((on, []), (off, ["--no-propagate"])):
            result = self.convgen("--weights", self.model, "--all", "--ptx-only", "--no-cache",
                                  "-o", directory, *extra)
            self.assertEqual(result.returncode, 0, result.stderr)
        self.assertLess(fma_in_ptx(on), fma_in_ptx(off))
        listing = json.loads(self.convgen("--weights", self.model, "--list", "--json").stdout)
        removed = sum(layer.get("channels", {}).get("removed_nonzeros", 0)
                      for layer in listing["layers"])
        self.assertGreater(removed, 0)

        with open(os.path.join(on, "convgen-model.json")) as f:
            model = json.load(f)
        unread = {layer["name"]: layer.get("unread_output_channels", []) for layer in model["layers"]}
        self.assertTrue(any(unread.values()))
        for layer in model["layers"]:
            with open(os.path.join(on, layer["manifest"])) as f:
                manifest = json.load(f)
            self.assertEqual(manifest.get("channels", {}).get("unread_outputs", []),
                             unread[layer["name"]])
        with open(os.path.join(off, "convgen-model.json")) as f:
            self.assertFalse(any("unread_output_channels" in layer
                                 for layer in json.load(f)["layers"]))
        # The fma the manifests say were removed are exactly the difference.
        removed_fma = 0
        for layer in model["layers"]:
            with open(os.path.join(on, layer["manifest"])) as f:
                removed_fma += json.load(f).get("channels", {}).get("removed_fma_in_code", 0)
        self.assertEqual(removed_fma, fma_in_ptx(off) - fma_in_ptx(on))

    def test_a_model_without_zero_channels_gets_the_same_ptx(self):
        model = os.path.join(SOURCE_DIR, "examples", "esrgan_medium_x4",
                             "esrgan_medium_x4-s90.onnx")
        on, off = (os.path.join(self.work.name, name) for name in ("esrgan-on", "esrgan-off"))
        for directory, extra in ((on, []), (off, ["--no-propagate"])):
            result = self.convgen("--weights", model, "--all", "--ptx-only", "--no-cache",
                                  "-o", directory, *extra)
            self.assertEqual(result.returncode, 0, result.stderr)
        names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(on, "*.ptx")))
        self.assertTrue(names)
        for name in names:
            with open(os.path.join(on, name), "rb") as a, open(os.path.join(off, name), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)


if __name__ == "__main__":
    unittest.main()
