"""ONNX input to convgen: the carrier that tools/npz_to_onnx.py makes of the
shipped example lists, generates and hashes exactly like the .npz it came from,
and a torchvision-style network exported with export_pytorch's onnx flag lists
every Conv with the geometry, fusion and sparsity of the sidecar the same export
wrote, and verifies on the CPU; examples/pruning_loop --onnx hits and misses the
cache as with the .npz."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from convgen_tool import SOURCE_DIR, convgen_list, convgen_tool

try:
    import onnx
    from onnx import numpy_helper
except ImportError:  # python3-onnx is not among scripts/setup.sh's packages everywhere
    onnx = None

try:
    import torch
    import torch.nn as nn
except ImportError:
    torch = None

NPZ_TO_ONNX = os.path.join(SOURCE_DIR, "tools", "npz_to_onnx.py")
EXAMPLE = os.path.join(SOURCE_DIR, "examples", "esrgan_medium_x4", "esrgan_medium_x4-s90.npz")
SHIPPED_ONNX = os.path.splitext(EXAMPLE)[0] + ".onnx"

# The --list fields that must agree between an ONNX and the .npz + sidecar it carries.
COMPARED = ["name", "weight_shape", "input", "output", "stride", "padding", "dilation", "groups",
            "activation", "bias", "nonzeros"]
# The same, for an exported network whose ONNX node names differ from the module names.
COMPARED_UNNAMED = [field for field in COMPARED if field != "name"]


def needs_onnx():
    if onnx is None:
        raise unittest.SkipTest("the onnx Python package is not installed (Debian: python3-onnx)")


def conv_nodes(model):
    return [node for node in model.graph.node if node.op_type == "Conv"]


def final_value(model, conv):
    """The Conv's output, or that of the Relu/Clip that alone consumes it."""
    consumers = [node for node in model.graph.node if conv.output[0] in node.input]
    if len(consumers) == 1 and consumers[0].op_type in ("Relu", "Clip"):
        return consumers[0].output[0]
    return conv.output[0]


def run(*args, timeout=600):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)


class CarrierFromTheExample(unittest.TestCase):
    """tools/npz_to_onnx.py on esrgan_medium_x4-s90."""

    @classmethod
    def setUpClass(cls):
        needs_onnx()
        cls.dir = tempfile.TemporaryDirectory()
        cls.onnx = os.path.join(cls.dir.name, "s90.onnx")
        result = run(sys.executable, NPZ_TO_ONNX, EXAMPLE, "-o", cls.onnx)
        if result.returncode != 0:
            cls.dir.cleanup()
            raise AssertionError(f"npz_to_onnx failed ({result.returncode}): {result.stderr}")
        with open(os.path.splitext(EXAMPLE)[0] + ".json") as f:
            cls.sidecar = json.load(f)
        cls.model = onnx.load(cls.onnx)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_carrier_holds_the_npz_layers(self):
        onnx.checker.check_model(self.model, full_check=True)
        self.assertEqual(self.model.opset_import[0].version, 13)
        arrays = np.load(EXAMPLE)
        initializers = {i.name: numpy_helper.to_array(i) for i in self.model.graph.initializer}
        convs = conv_nodes(self.model)
        self.assertEqual([c.name for c in convs], [l["name"] for l in self.sidecar["layers"]])
        self.assertEqual([i.name for i in self.model.graph.input],
                         [l["name"] + ".input" for l in self.sidecar["layers"]])
        self.assertEqual([o.name for o in self.model.graph.output],
                         [l["name"] + ".output" for l in self.sidecar["layers"]])
        for layer, conv in zip(self.sidecar["layers"], convs):
            with self.subTest(layer=layer["name"]):
                attributes = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
                ph, pw = layer["padding"]
                self.assertEqual(attributes["pads"], [ph, pw, ph, pw])
                self.assertEqual(attributes["strides"], layer["stride"])
                self.assertEqual(attributes["dilations"], layer["dilation"])
                self.assertEqual(attributes["group"], layer["groups"])
                weight = initializers[conv.input[1]]
                self.assertEqual(weight.dtype, np.float32)
                np.testing.assert_array_equal(weight, arrays[layer["weight"]])
                np.testing.assert_array_equal(initializers[conv.input[2]], arrays[layer["bias"]])
                consumers = [n.op_type for n in self.model.graph.node if conv.output[0] in n.input]
                self.assertEqual(consumers, {None: [], "relu": ["Relu"],
                                             "relu6": ["Clip"]}[layer["activation"]])

    def test_the_shipped_carrier_is_up_to_date(self):
        # The graphs, not the bytes: the IR version follows the onnx package's.
        shipped = onnx.load(SHIPPED_ONNX)
        self.assertEqual(shipped.opset_import, self.model.opset_import)
        self.assertTrue(shipped.graph == self.model.graph,
                        "examples/esrgan_medium_x4/esrgan_medium_x4-s90.onnx differs from what "
                        "tools/npz_to_onnx.py makes of the .npz now")

    def test_convgen_lists_the_carrier_like_the_npz(self):
        from_npz = convgen_list(EXAMPLE)
        from_onnx = convgen_list(self.onnx)
        self.assertEqual(from_onnx.get("skipped", []), [])
        self.assertEqual(len(from_onnx["layers"]), len(from_npz["layers"]))
        for expected, listed in zip(from_npz["layers"], from_onnx["layers"]):
            with self.subTest(layer=expected["name"]):
                self.assertEqual({f: listed.get(f) for f in COMPARED},
                                 {f: expected.get(f) for f in COMPARED})
                self.assertEqual(listed.get("graph_output"), expected["name"] + ".output")

    def test_generated_code_is_identical(self):
        tool = convgen_tool()
        layers = convgen_list(EXAMPLE)["layers"]
        # The smallest layer with a ReLU and the smallest without one.
        chosen = [min((l for l in layers if (l["activation"] == "relu") == relu),
                      key=lambda l: l["weights"])["name"] for relu in (True, False)]
        for name in chosen:
            with self.subTest(layer=name), tempfile.TemporaryDirectory() as out:
                dirs = {}
                for source in (self.onnx, EXAMPLE):
                    kind = os.path.splitext(source)[1][1:]  # onnx, npz
                    dirs[source] = os.path.join(out, kind)
                    result = run(tool, "--weights", source, "--layer", name, "-o", dirs[source],
                                 "--no-cache")
                    self.assertEqual(result.returncode, 0, result.stderr)
                ptx = {source: sorted(f for f in os.listdir(d) if f.endswith(".ptx"))
                       for source, d in dirs.items()}
                self.assertEqual(ptx[self.onnx], ptx[EXAMPLE])
                self.assertTrue(ptx[EXAMPLE], f"no .ptx written for {name}")
                for file in ptx[EXAMPLE]:
                    with open(os.path.join(dirs[self.onnx], file), "rb") as a, \
                            open(os.path.join(dirs[EXAMPLE], file), "rb") as b:
                        self.assertTrue(a.read() == b.read(), f"{file} differs")
                manifests = []
                for source in (self.onnx, EXAMPLE):
                    with open(os.path.join(dirs[source], name + ".json")) as f:
                        manifests.append(json.load(f))
                for field in ("mask_hash", "values_hash"):
                    self.assertEqual(manifests[0][field], manifests[1][field], field)


class CarrierBadInput(unittest.TestCase):
    def setUp(self):
        needs_onnx()
        self.dir = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.dir.name, "out", "x.onnx")

    def tearDown(self):
        self.dir.cleanup()

    def sidecar(self, **changes):
        layer = {"name": "a", "weight": "F_0.weight", "bias": "F_0.bias", "input": [1, 64, 8, 8],
                 "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
                 "activation": None}
        layer.update(changes)
        path = os.path.join(self.dir.name, f"geometry{len(os.listdir(self.dir.name))}.json")
        with open(path, "w") as f:
            json.dump({"layers": [layer]}, f)
        return path

    def test_bad_input_exits_2_with_one_line_and_writes_nothing(self):
        not_npz = os.path.join(self.dir.name, "not.npz")
        with open(not_npz, "w") as f:
            f.write("not a zip\n")
        cases = [
            ([os.path.join(self.dir.name, "missing.npz")], "cannot read"),
            ([not_npz, "--geometry", self.sidecar()], "not an .npz"),
            ([EXAMPLE, "--geometry", self.sidecar(weight="nope")], "array not found"),
            ([EXAMPLE, "--geometry", self.sidecar(activation="gelu")], "activation"),
            ([EXAMPLE, "--geometry", self.sidecar(paddings=[1, 1])], "unknown field"),
            ([EXAMPLE, "--geometry", self.sidecar(input=[1, 32, 8, 8])], "does not fit"),
            ([EXAMPLE, "--geometry", self.sidecar(output=[1, 64, 9, 8])], "disagrees"),
        ]
        for args, message in cases:
            with self.subTest(message=message):
                result = run(sys.executable, NPZ_TO_ONNX, *args, "-o", self.out)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(message, result.stderr)
                self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
                self.assertFalse(os.path.exists(os.path.dirname(self.out)))

    def test_prune_pair_is_read_as_orig_where_the_mask_is_one(self):
        arrays = dict(np.load(EXAMPLE))
        weight = arrays.pop("F_0.weight")
        orig = np.where(weight == 0, np.float32(7.0), weight)  # values the mask removes
        mask = (weight != 0).astype(np.float32)
        npz = os.path.join(self.dir.name, "pair.npz")
        np.savez(npz, **arrays, **{"F_0.weight_orig": orig, "F_0.weight_mask": mask})
        result = run(sys.executable, NPZ_TO_ONNX, npz, "--geometry", self.sidecar(), "-o", self.out)
        self.assertEqual(result.returncode, 0, result.stderr)
        model = onnx.load(self.out)
        initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        np.testing.assert_array_equal(initializers["a.weight"], weight)


if torch is not None:
    # torchvision's ResNet BasicBlock, as the structured-pruning example has it.
    sys.path.insert(0, os.path.join(SOURCE_DIR, "examples", "structured_pruning"))
    from tiny_resnet import BasicBlock  # noqa: E402

    class TinyResNet(nn.Module):
        """A stem conv-bn-relu + max pool, two basic blocks, a downsampling
        block, a depthwise conv-bn-relu6, a 1x1 conv with bias and no BN, then
        pooling and a linear classifier."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
            self.layer2 = BasicBlock(16, 32, stride=2)
            self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
            self.dw_bn = nn.BatchNorm2d(32)
            self.relu6 = nn.ReLU6(inplace=True)
            self.head = nn.Conv2d(32, 24, 1, bias=True)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(24, 10)
            generator = torch.Generator().manual_seed(1)
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):  # statistics worth folding
                    n = module.num_features
                    module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
                    module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                    module.weight.data.copy_(torch.randn(n, generator=generator))
                    module.bias.data.copy_(torch.randn(n, generator=generator))

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer2(self.layer1(x))
            x = self.relu6(self.dw_bn(self.dw(x)))
            x = self.head(x)
            return self.fc(self.avgpool(x).flatten(1))


class ExportedNetwork(unittest.TestCase):
    """A torchvision-style network through export_pytorch.export(..., onnx=True)."""

    @classmethod
    def setUpClass(cls):
        needs_onnx()
        if torch is None:
            raise unittest.SkipTest("python3-torch is not installed")
        import export_pytorch
        cls.dir = tempfile.TemporaryDirectory()
        cls.npz = os.path.join(cls.dir.name, "tiny.npz")
        torch.manual_seed(0)
        model = TinyResNet().eval()
        cls.sidecar = export_pytorch.export(model, torch.randn(1, 3, 32, 32), cls.npz, onnx=True,
                                            prune=0.8)
        cls.onnx = os.path.splitext(cls.npz)[0] + ".onnx"
        cls.model = onnx.load(cls.onnx)
        cls.arrays = dict(np.load(cls.npz))

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_export_covers_every_feature(self):
        layers = self.sidecar["layers"]
        self.assertEqual(len(layers), 10)  # stem, 2 x 2 block convs, 2 + projection, dw, head
        self.assertEqual(len(conv_nodes(self.model)), len(layers))
        activations = [l["activation"] for l in layers]
        self.assertEqual(activations, ["relu", "relu", None, "relu", None, "relu", None, None,
                                       "relu6", None])
        self.assertEqual(layers[7]["name"], "layer2.downsample.0")
        self.assertEqual(layers[8]["groups"], 32)
        self.assertIn("bias", layers[9])

    def test_convgen_lists_every_conv_like_the_sidecar(self):
        listing = convgen_list(self.onnx)
        convs = conv_nodes(self.model)
        self.assertEqual(listing.get("skipped", []), [])
        self.assertEqual(len(listing["layers"]), len(convs))
        for layer, listed, conv in zip(self.sidecar["layers"], listing["layers"], convs):
            with self.subTest(layer=layer["name"]):
                weight = self.arrays[layer["weight"]]
                expected = {"weight_shape": list(weight.shape), "input": layer["input"],
                            "output": layer["output"], "stride": layer["stride"],
                            "padding": layer["padding"], "dilation": layer["dilation"],
                            "groups": layer["groups"],
                            "activation": layer["activation"] or "none",
                            "bias": "bias" in layer, "nonzeros": int(np.count_nonzero(weight))}
                self.assertEqual({f: listed.get(f) for f in COMPARED_UNNAMED}, expected)
                self.assertIn(listed["name"], (conv.name, conv.output[0]))
                self.assertEqual(listed.get("graph_output"), final_value(self.model, conv))

    def test_verify_passes(self):
        result = run(convgen_tool(), "verify", "--weights", self.onnx, "--all")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class TorchExportKeepingBatchNorm(unittest.TestCase):
    """The same network pruned and exported by torch.onnx.export itself, with its
    BatchNormalization nodes kept (TrainingMode.PRESERVE in eval mode): convgen
    folds them and takes the ReLU/ReLU6 after them, as export_pytorch does."""

    @classmethod
    def setUpClass(cls):
        needs_onnx()
        if torch is None:
            raise unittest.SkipTest("python3-torch is not installed")
        import export_pytorch
        cls.dir = tempfile.TemporaryDirectory()
        torch.manual_seed(0)
        model = TinyResNet().eval()
        with torch.no_grad():  # 80 % of each conv's weights zero, by magnitude
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    w = module.weight
                    w.mul_((w.abs() > w.abs().flatten().kthvalue(int(0.8 * w.numel())).values).float())
        example = torch.randn(1, 3, 32, 32)
        cls.onnx = os.path.join(cls.dir.name, "torch.onnx")
        torch.onnx.export(model, example, cls.onnx, opset_version=13,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        cls.model = onnx.load(cls.onnx)
        cls.sidecar = export_pytorch.export(model, example, os.path.join(cls.dir.name, "ref.npz"))

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_batch_norms_are_folded_with_their_activations(self):
        self.assertEqual(sum(n.op_type == "BatchNormalization" for n in self.model.graph.node), 9)
        listing = convgen_list(self.onnx)
        self.assertEqual(listing.get("skipped", []), [])
        self.assertEqual(len(listing["layers"]), len(self.sidecar["layers"]))
        for layer, listed in zip(self.sidecar["layers"], listing["layers"]):
            with self.subTest(layer=layer["name"]):
                self.assertEqual(listed["activation"], layer["activation"] or "none")
                self.assertEqual(listed["input"], layer["input"])
                self.assertEqual(listed["groups"], layer["groups"])
                self.assertEqual(listed["bias"], "bias" in layer)
                folded = "BatchNormalization" in listed["weight_source"]
                self.assertEqual(folded, layer["name"] != "head", listed["weight_source"])

    def test_verify_passes(self):
        result = run(convgen_tool(), "verify", "--weights", self.onnx, "--all")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class PruningLoopThroughOnnx(unittest.TestCase):
    """examples/pruning_loop with --onnx: convgen reads each round's ONNX, and the
    cache hits and misses as with the .npz, and where the zero channels the
    graph proves change, the loop names the layers that miss for it."""

    def test_rounds_hit_and_miss_as_expected(self):
        tool = convgen_tool()
        if torch is None:
            self.skipTest("python3-torch is not installed")
        script = os.path.join(SOURCE_DIR, "examples", "pruning_loop", "pruning_loop.py")
        with tempfile.TemporaryDirectory() as work:
            summary_path = os.path.join(work, "summary.json")
            result = run(sys.executable, script, "--onnx", "--convgen", tool, "--work", work,
                         "--summary-json", summary_path, timeout=500)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertTrue(os.path.exists(os.path.join(work, "round1.onnx")))
            with open(summary_path) as f:
                rounds = json.load(f)
        # A layer whose code changed because the channels its graph proves
        # zero changed (a fine-tuned bias behind a pruned filter) misses too.
        self.assertEqual([(r["hits"] + len(r["graph_changed"]),
                           r["misses"] - len(r["graph_changed"])) for r in rounds],
                         [(0, 3), (0, 3), (3, 0), (2, 1), (3, 0)])
        self.assertEqual(rounds[2]["graph_changed"], ["/conv2/Conv"])
        self.assertTrue(all(r["verified"] for r in rounds))
        self.assertEqual(rounds[-1]["layers_written"], 0)


if __name__ == "__main__":
    unittest.main()
