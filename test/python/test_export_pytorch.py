"""tools/export_pytorch.py on a small network: geometry, BatchNorm folding,
activation fusion, pruning, the round trip through `convgen --list`, and the
ONNX that --onnx writes beside the .npz."""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import prune as torch_prune

try:
    import onnx
    from onnx import numpy_helper
except ImportError:  # python3-onnx is not among scripts/setup.sh's packages everywhere
    onnx = None

from convgen_tool import SOURCE_DIR, convgen_list
import export_pytorch
import small_nets

EXPORTER = os.path.join(SOURCE_DIR, "tools", "export_pytorch.py")
SMALL_NETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "small_nets.py")


def _capture_outputs(model, x):
    """Output of every leaf module on x (first call of each), by module name."""
    outputs, handles = {}, []

    def record(name):
        def hook(module, inputs, output):  # must return None: a value would replace the output
            outputs.setdefault(name, (inputs[0].clone(), output.clone()))
        return hook

    for name, module in model.named_modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(record(name)))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return outputs


class ExportSmallNet(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.npz = os.path.join(self.dir.name, "small.npz")
        torch.manual_seed(0)
        self.model = small_nets.SmallNet().eval()
        self.x = torch.randn(2, 3, 17, 15)

    def tearDown(self):
        self.dir.cleanup()

    def layers(self, sidecar):
        return {layer["name"]: layer for layer in sidecar["layers"]}

    def test_geometry_and_fusion(self):
        layers = self.layers(export_pytorch.export(self.model, self.x, self.npz))
        self.assertEqual(list(layers), ["conv1", "dw", "pw", "conv4", "head"])
        self.assertEqual(layers["conv1"]["input"], [2, 3, 17, 15])
        self.assertEqual(layers["conv1"]["activation"], "relu")
        self.assertEqual(layers["dw"]["groups"], 8)
        self.assertEqual(layers["dw"]["stride"], [2, 2])
        self.assertEqual(layers["dw"]["output"], [2, 8, 9, 8])
        self.assertEqual(layers["dw"]["activation"], "relu6")
        self.assertIsNone(layers["pw"]["activation"])
        self.assertEqual(layers["conv4"]["dilation"], [2, 2])
        self.assertEqual(layers["conv4"]["padding"], [2, 2])
        # The ReLU after `out += x` sees a modified tensor: fusing it would be wrong.
        self.assertIsNone(layers["conv4"]["activation"])
        self.assertEqual(layers["head"]["padding"], [0, 1])
        self.assertIsNone(layers["head"]["activation"])  # functional relu: not a module
        # Folding BatchNorm creates a bias where the conv had none.
        self.assertEqual(layers["conv1"]["bias"], "conv1.bias")
        with open(os.path.splitext(self.npz)[0] + ".json") as f:
            self.assertEqual(self.layers(json.load(f)), layers)

    def test_folded_layers_reproduce_the_model(self):
        sidecar = export_pytorch.export(self.model, self.x, self.npz)
        arrays = np.load(self.npz)
        seen = _capture_outputs(self.model, self.x)
        # What each exported layer must reproduce: the output of the last module fused into it.
        fused_output = {"conv1": "relu", "dw": "act6", "pw": "pw", "conv4": "bn4", "head": "head"}
        for layer in sidecar["layers"]:
            name = layer["name"]
            with self.subTest(layer=name):
                layer_input = seen[name][0]
                weight = torch.from_numpy(arrays[layer["weight"]])
                bias = torch.from_numpy(arrays[layer["bias"]]) if "bias" in layer else None
                y = F.conv2d(layer_input, weight, bias, stride=layer["stride"],
                             padding=layer["padding"], dilation=layer["dilation"],
                             groups=layer["groups"])
                if layer["activation"] == "relu":
                    y = F.relu(y)
                elif layer["activation"] == "relu6":
                    y = F.relu6(y)
                expected = seen[fused_output[name]][1]
                self.assertEqual(list(y.shape), layer["output"])
                torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)

    def test_prune_and_round_trip_through_convgen(self):
        sidecar = export_pytorch.export(self.model, self.x, self.npz, prune=0.9, compressed=True)
        arrays = np.load(self.npz)
        listing = {layer["name"]: layer for layer in convgen_list(self.npz)["layers"]}
        self.assertEqual(list(listing), [layer["name"] for layer in sidecar["layers"]])
        for layer in sidecar["layers"]:
            with self.subTest(layer=layer["name"]):
                weight = arrays[layer["weight"]]
                expected_zeros = round(0.9 * weight.size)  # torch's l1_unstructured rounding
                self.assertEqual(weight.size - np.count_nonzero(weight), expected_zeros)
                listed = listing[layer["name"]]
                self.assertEqual(listed["nonzeros"], np.count_nonzero(weight))
                self.assertEqual(listed["weights"], weight.size)
                self.assertEqual(listed["output"], layer["output"])
                self.assertEqual(listed["activation"], layer["activation"] or "none")

    def test_keep_mask_is_read_as_orig_times_mask(self):
        export_pytorch.export(self.model, self.x, self.npz, prune=0.75, keep_mask=True)
        arrays = np.load(self.npz)
        self.assertNotIn("conv1.weight", arrays.files)
        self.assertIn("conv1.weight_orig", arrays.files)
        self.assertIn("conv1.weight_mask", arrays.files)
        listing = convgen_list(self.npz)["layers"]
        for layer in listing:
            with self.subTest(layer=layer["name"]):
                key = layer["name"] + ".weight"
                effective = arrays[key + "_orig"] * arrays[key + "_mask"]
                self.assertEqual(layer["weight_source"], f"{key}_orig * {key}_mask")
                self.assertEqual(layer["nonzeros"], np.count_nonzero(effective))
                # The orig tensor really does hold the pruned values.
                self.assertGreater(np.count_nonzero(arrays[key + "_orig"]), layer["nonzeros"])

    def test_no_fold_keeps_bias_absent(self):
        layers = self.layers(export_pytorch.export(self.model, self.x, self.npz, fold_bn=False))
        self.assertNotIn("bias", layers["conv1"])
        self.assertIsNone(layers["conv1"]["activation"])  # BN sits between conv and ReLU


class ExportFeatures(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.npz = os.path.join(self.dir.name, "features.npz")
        torch.manual_seed(0)
        self.model = small_nets.FeatureNet().eval()
        self.x = torch.randn(1, 3, 9, 11)

    def tearDown(self):
        self.dir.cleanup()

    def test_fusion_padding_reuse_and_parametrized_convs(self):
        layers = {l["name"]: l for l in export_pytorch.export(self.model, self.x, self.npz)["layers"]}
        self.assertEqual(list(layers), ["biased", "same", "shared", "spectral"])
        self.assertEqual(layers["biased"]["activation"], "relu6")  # Hardtanh(0, 6)
        self.assertEqual(layers["same"]["padding"], [2, 2])
        self.assertEqual(layers["shared"]["activation"], "relu")
        self.assertEqual(layers["spectral"]["weight"], "spectral.weight")
        arrays = np.load(self.npz)
        with torch.no_grad():
            # The conv's own bias goes through the BatchNorm too.
            bn = self.model.bn
            expected = F.hardtanh(bn(self.model.biased(self.x)), 0.0, 6.0)
            got = F.relu6(F.conv2d(self.x, torch.from_numpy(arrays["biased.weight"]),
                                   torch.from_numpy(arrays["biased.bias"]), padding=1))
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
            # The exported spectral-norm weight is the effective (normalised) one.
            np.testing.assert_allclose(arrays["spectral.weight"],
                                       self.model.spectral.weight.numpy(), rtol=1e-6)

    def test_inconsistent_reuse_is_rejected(self):
        with self.assertRaisesRegex(export_pytorch.ExportError, "called more than once"):
            export_pytorch.export(small_nets.InconsistentReuse(), self.x, self.npz)
        self.assertEqual(os.listdir(self.dir.name), [])

    def test_unwritable_destination_is_an_export_error(self):
        blocker = os.path.join(self.dir.name, "file")
        open(blocker, "w").close()
        with self.assertRaisesRegex(export_pytorch.ExportError, "cannot write"):
            export_pytorch.export(self.model, self.x, os.path.join(blocker, "x.npz"))


class ExportOnnx(unittest.TestCase):
    """export(..., onnx=True): STEM.onnx next to the .npz, its convs carrying the npz's weights."""

    def setUp(self):
        if onnx is None:
            self.skipTest("the onnx Python package is not installed (Debian: python3-onnx)")
        self.dir = tempfile.TemporaryDirectory()
        self.npz = os.path.join(self.dir.name, "small.npz")
        self.onnx = os.path.join(self.dir.name, "small.onnx")
        torch.manual_seed(0)
        self.model = small_nets.SmallNet().eval()
        self.x = torch.randn(2, 3, 17, 15)

    def tearDown(self):
        self.dir.cleanup()

    def load(self):
        model = onnx.load(self.onnx)
        onnx.checker.check_model(model)
        initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        convs = [node for node in model.graph.node if node.op_type == "Conv"]
        return model, initializers, convs

    def assert_convs_carry_the_npz(self, layers, initializers, convs):
        """The i-th Conv node holds the i-th layer's effective weight and its bias."""
        arrays = np.load(self.npz)
        self.assertEqual(len(convs), len(layers))
        for layer, conv in zip(layers, convs):
            with self.subTest(layer=layer["name"]):
                key = layer["weight"]
                weight = (arrays[key] if key in arrays.files
                          else arrays[key + "_orig"] * arrays[key + "_mask"])
                np.testing.assert_array_equal(initializers[conv.input[1]], weight)
                self.assertEqual(len(conv.input) > 2 and conv.input[2] != "", "bias" in layer)
                if "bias" in layer:
                    np.testing.assert_array_equal(initializers[conv.input[2]],
                                                  arrays[layer["bias"]])

    def test_onnx_next_to_the_npz_carries_its_weights(self):
        rng = torch.get_rng_state()
        layers = export_pytorch.export(self.model, self.x, self.npz, prune=0.9, onnx=True)["layers"]
        self.assertTrue(torch.equal(torch.get_rng_state(), rng), "the export used the global RNG")
        # Only the three files: no temporaries left behind.
        self.assertEqual(sorted(os.listdir(self.dir.name)),
                         ["small.json", "small.npz", "small.onnx"])
        model, initializers, convs = self.load()
        self.assertEqual(model.opset_import[0].version, 13)
        self.assertEqual([d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim],
                         [2, 3, 17, 15])  # the example's batch, fixed
        self.assert_convs_carry_the_npz(layers, initializers, convs)
        ops = [node.op_type for node in model.graph.node]
        self.assertNotIn("BatchNormalization", ops)  # folded into the convs, not again by torch
        for conv in convs:
            zeros = initializers[conv.input[1]].size - np.count_nonzero(initializers[conv.input[1]])
            self.assertEqual(zeros, round(0.9 * initializers[conv.input[1]].size))

    def test_keep_mask_onnx_holds_orig_times_mask(self):
        layers = export_pytorch.export(self.model, self.x, self.npz, prune=0.75, keep_mask=True,
                                       onnx=True)["layers"]
        self.assert_convs_carry_the_npz(layers, *self.load()[1:])

    def test_unfolded_batchnorm_stays_and_its_conv_keeps_the_npz_weight(self):
        layers = export_pytorch.export(self.model, self.x, self.npz, fold_bn=False,
                                       onnx=True)["layers"]
        model, initializers, convs = self.load()
        self.assert_convs_carry_the_npz(layers, initializers, convs)
        self.assertEqual([n.op_type for n in model.graph.node].count("BatchNormalization"), 3)

    def test_torch_pruned_and_parametrized_convs(self):
        # A conv under torch.nn.utils.prune's hook (weight = orig * mask at each call),
        # a parametrized one, and one called twice (two Conv nodes, one weight).
        model = small_nets.FeatureNet().eval()
        torch_prune.l1_unstructured(model.same, "weight", amount=0.5)
        x = torch.randn(1, 3, 9, 11)
        layers = {l["name"]: l for l in
                  export_pytorch.export(model, x, self.npz, onnx=True)["layers"]}
        self.assertTrue(hasattr(model.same, "weight_orig"), "the export changed the model")
        _, initializers, convs = self.load()
        arrays = np.load(self.npz)
        calls = ["biased", "same", "shared", "shared", "spectral"]
        self.assertEqual(len(convs), len(calls))
        for name, conv in zip(calls, convs):
            with self.subTest(layer=name):
                np.testing.assert_array_equal(initializers[conv.input[1]],
                                              arrays[layers[name]["weight"]])
        self.assertEqual(np.count_nonzero(arrays["same.weight"]), arrays["same.weight"].size // 2)

    def test_batchnorm_folded_at_one_call_only_is_rejected(self):
        class FoldedOnce(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
                self.bn = torch.nn.BatchNorm2d(3)

            def forward(self, x):
                return self.bn(self.conv(x)) + self.bn(x)

        with self.assertRaisesRegex(export_pytorch.ExportError, "folded into a conv at one call"):
            export_pytorch.export(FoldedOnce().eval(), self.x, self.npz, onnx=True)
        self.assertEqual(os.listdir(self.dir.name), [])

    def test_no_onnx_without_the_flag(self):
        export_pytorch.export(self.model, self.x, self.npz, prune=0.5)
        self.assertEqual(sorted(os.listdir(self.dir.name)), ["small.json", "small.npz"])

    def contents(self):
        files = {}
        for name in os.listdir(self.dir.name):
            with open(os.path.join(self.dir.name, name), "rb") as f:
                files[name] = f.read()
        return files

    def test_failed_onnx_export_changes_nothing(self):
        export_pytorch.export(self.model, self.x, self.npz)
        before = self.contents()
        with mock.patch.object(torch.onnx, "export",
                               side_effect=RuntimeError("unsupported op\nsecond line")):
            with self.assertRaises(export_pytorch.ExportError) as raised:
                export_pytorch.export(self.model, self.x, self.npz, prune=0.5, onnx=True)
        self.assertEqual(str(raised.exception),
                         "the ONNX export failed: RuntimeError: unsupported op")
        self.assertEqual(self.contents(), before)

    def test_command_line_flag(self):
        result = subprocess.run([sys.executable, EXPORTER, f"{SMALL_NETS}:SmallNet",
                                 "--input-shape", "1,3,16,16", "--prune", "0.5", "--onnx",
                                 "-o", self.npz], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(self.onnx, result.stdout)
        self.assertEqual(sorted(os.listdir(self.dir.name)),
                         ["small.json", "small.npz", "small.onnx"])
        self.assertEqual(len(self.load()[2]), 5)


class ExporterCommandLine(unittest.TestCase):
    def run_exporter(self, *args):
        return subprocess.run([sys.executable, EXPORTER, *args], capture_output=True, text=True)

    def test_exports_from_a_python_file(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "net.npz")
            result = self.run_exporter(f"{SMALL_NETS}:SmallNet", "--input-shape", "1,3,16,16",
                                       "--prune", "0.5", "-o", out)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("5 conv layers", result.stdout)
            self.assertEqual(len(convgen_list(out)["layers"]), 5)

    def test_bad_input_exits_2_and_writes_nothing(self):
        with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as src:
            out = os.path.join(d, "net.npz")
            with open(os.path.join(src, "broken.py"), "w") as f:
                f.write("def Net(:\n")
            cases = [
                ([f"{SMALL_NETS}:NoConv", "--input-shape", "1,3,8,8"], "ran no nn.Conv2d"),
                ([f"{SMALL_NETS}:Missing", "--input-shape", "1,3,8,8"], "has no attribute 'Missing'"),
                ([f"{SMALL_NETS}:SmallNet", "--input-shape", "1,4,8,8"], "failed on the example input"),
                ([f"{SMALL_NETS}:SmallNet", "--input-shape", "1,3,8,8", "--prune", "1.5"],
                 "--prune must be in [0, 1)"),
                ([f"{SMALL_NETS}:RaisesValueError", "--input-shape", "1,3,8,8"],
                 "ValueError: unsupported input"),
                ([":SmallNet", "--input-shape", "1,3,8,8"], "must be MODULE:CALLABLE"),
                ([f"{os.path.join(src, 'broken.py')}:Net", "--input-shape", "1,3,8,8"],
                 "cannot import"),
            ]
            for args, message in cases:
                with self.subTest(message=message):
                    result = self.run_exporter(*args, "-o", out)
                    self.assertEqual(result.returncode, 2, result.stderr)
                    self.assertIn(message, result.stderr)
                    self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
                    self.assertEqual(os.listdir(d), [])


if __name__ == "__main__":
    unittest.main()
