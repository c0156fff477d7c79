"""The PyTorch package (python/convgen) without a GPU, on the host CUDA driver
(test/hostcuda): export -> generate -> load swaps every convolution of a
pruned torchvision-style ResNet; a layer whose weights changed after
generation is refused as stale, and one whose fused activation the model no
longer applies; the policy chooses by injected timings and the table shows
both times; the timing cache persists; reload picks up a regenerated folder.
A layer swapped in still computes with PyTorch on CPU tensors, so the model's
output is unchanged there. On a GPU, the swapped model matches PyTorch."""
import json
import os
import sys
import tempfile
import unittest

from convgen_tool import SOURCE_DIR, convgen_tool

sys.path.insert(0, os.path.join(SOURCE_DIR, "python"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "examples", "structured_pruning"))

try:
    import torch
    import torch.nn as nn
    import torch.nn.utils.prune as prune
except ImportError:
    torch = None

if torch is not None:
    import convgen.torch as cgt
    from convgen.policy import TimingCache, choose
    from tiny_resnet import tiny_resnet

HOST_DRIVER = os.environ.get("CONVGEN_HOSTCUDA_LIB")


def pruned_model(amount=0.8):
    """The example ResNet, pruned in place as a user prunes it."""
    model = tiny_resnet()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            prune.l1_unstructured(module, "weight", amount=amount)
            prune.remove(module, "weight")
    return model.eval()


def structured_model():
    """The example ResNet with half of each conv's filters pruned (L2) and
    their channels removed as channel pruning does: the BatchNorm after each
    zero filter outputs 0. convgen then finds zero channels across layers."""
    model = tiny_resnet()
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, conv in list(modules.items()):
            if not isinstance(conv, nn.Conv2d):
                continue
            prune.ln_structured(conv, "weight", amount=0.5, n=2, dim=0)
            prune.remove(conv, "weight")
            bn = modules[name[:-1] + "1" if name.endswith("downsample.0")
                         else name.replace("conv", "bn")]
            removed = conv.weight.flatten(1).abs().sum(1) == 0
            for tensor in (bn.weight, bn.bias, bn.running_mean):
                tensor[removed] = 0.0
    return model.eval()


def convs(model):
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@unittest.skipIf(torch is None, "needs python3-torch")
class PolicyTest(unittest.TestCase):
    def test_auto_swaps_only_a_strictly_faster_layer(self):
        self.assertEqual(choose("auto", 1.0, 2.0)[0], True)
        self.assertEqual(choose("auto", 2.0, 2.0)[0], False)
        self.assertEqual(choose("auto", None, 2.0), (False, "not timed"))
        self.assertEqual(choose("always", 9.0, 1.0)[0], True)
        self.assertEqual(choose("never", 1.0, 9.0)[0], False)
        with self.assertRaises(ValueError):
            choose("sometimes")

    def test_the_timing_cache_persists_and_survives_a_bad_file(self):
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "sub", "t.json")
            cache = TimingCache(path)
            key = TimingCache.key(device="d", shape=[1, 2, 3, 4], kernel="k")
            self.assertIsNone(cache.get(key))
            cache.put(key, 0.5, 0.75)
            self.assertEqual(TimingCache(path).get(key), (0.5, 0.75))
            self.assertEqual(os.listdir(os.path.dirname(path)), ["t.json"])
            with open(path, "w") as f:
                f.write("{not json")
            self.assertIsNone(TimingCache(path).get(key))


@unittest.skipIf(torch is None, "needs python3-torch")
@unittest.skipUnless(HOST_DRIVER, "needs the host CUDA driver (run through ctest)")
class HostDriverLoadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.environ["CONVGEN_CUDA_DRIVER"] = HOST_DRIVER  # what libconvgen.so loads
        sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))
        import convbench
        cls.host = convbench.HostDriver()
        cls.work = tempfile.TemporaryDirectory()
        cls.x = torch.randn(1, 3, 32, 32)

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()

    def generate(self, model, name):
        """export -> generate, and the host's stand-in for every layer's code."""
        onnx = os.path.join(self.work.name, name, "model.onnx")
        os.makedirs(os.path.dirname(onnx), exist_ok=True)
        generated = os.path.join(self.work.name, name, "generated")
        cgt.export(model, self.x, onnx)
        cgt.generate(onnx, generated, ptx_only=True, tool=convgen_tool(), extra_args=["--no-cache"])
        with open(os.path.join(generated, "convgen-model.json")) as f:
            for layer in json.load(f)["layers"]:
                path = os.path.join(generated, layer["manifest"])
                with open(path) as m:
                    self.host.register(path, json.load(m), lambda *args: None)
        return generated

    def test_every_layer_swaps_and_the_cpu_output_is_unchanged(self):
        model = pruned_model()
        with torch.no_grad():
            expected = model(self.x)
        generated = self.generate(model, "all")
        model, table = cgt.load(model, generated, self.x, policy="always", cache=False)
        self.assertEqual([row.module for row in table], convs(model))
        self.assertEqual(len(table.swapped()), 15, str(table))
        self.assertIn("15 of 15 convolutions run convgen's kernels", str(table))
        with torch.no_grad():
            self.assertTrue(torch.equal(model(self.x), expected), "CPU tensors run PyTorch")
        # The swap keeps the module tree: same names, same state_dict keys.
        self.assertIsInstance(model.conv1, nn.Conv2d)
        self.assertIn("conv1.weight", model.state_dict())

        model, table = cgt.load(model, generated, self.x, policy="never", cache=False)
        self.assertEqual(table.swapped(), [])
        self.assertTrue(all(row.reason == "policy 'never'" for row in table))
        self.assertFalse(any("forward" in vars(m) for m in model.modules()))

    def test_a_stale_layer_and_a_changed_activation_are_refused(self):
        model = pruned_model()
        generated = self.generate(model, "stale")
        with torch.no_grad():
            model.layer1[0].conv1.weight[0, 0, 0, 0] += 1.0
        model.relu = nn.LeakyReLU(0.1)  # the stem's ReLU, fused into conv1
        model, table = cgt.load(model, generated, self.x, policy="always", cache=False)
        rows = {row.module: row for row in table}
        self.assertFalse(rows["layer1.0.conv1"].swapped)
        self.assertIn("stale", rows["layer1.0.conv1"].reason)
        self.assertFalse(rows["conv1"].swapped)
        self.assertIn("fused relu", rows["conv1"].reason)
        self.assertEqual(len(table.swapped()), 13, str(table))

    def test_injected_timings_keep_pytorch_where_convgen_loses(self):
        model = pruned_model()
        generated = self.generate(model, "timed")
        losers = {"/layer1/layer1.0/conv1/Conv", "/layer3/layer3.1/conv2/Conv"}

        def timer(match, swap):
            return (0.30, 0.20) if match.layer in losers else (0.10, 0.20)

        model, table = cgt.load(model, generated, self.x, timer=timer, cache=False)
        rows = {row.layer: row for row in table}
        for layer in losers:
            self.assertFalse(rows[layer].swapped)
            self.assertEqual((rows[layer].convgen_ms, rows[layer].torch_ms), (0.30, 0.20))
            self.assertIn("not faster", rows[layer].reason)
        self.assertEqual(len(table.swapped()), 13)
        text = str(table)
        self.assertIn("0.3000", text)
        self.assertIn("0.2000", text)

    def test_reload_picks_up_a_regenerated_folder(self):
        model = pruned_model(0.5)
        generated = self.generate(model, "reload")
        model, table = cgt.load(model, generated, self.x, policy="always", cache=False)
        self.assertEqual(len(table.swapped()), 15)
        # The next pruning round changes the model: until it is generated
        # again, reload finds the changed layers stale.
        prune.l1_unstructured(model.layer2[1].conv2, "weight", amount=0.9)
        prune.remove(model.layer2[1].conv2, "weight")
        table = model.convgen_reload()
        self.assertEqual([r.module for r in table if not r.swapped], ["layer2.1.conv2"])
        self.generate(model, "reload")
        table = model.convgen_reload()
        self.assertEqual(len(table.swapped()), 15, str(table))


    def test_layers_that_rely_on_others_are_refused_when_one_changes(self):
        model = structured_model()
        generated = self.generate(model, "structured")
        relying = set()
        with open(os.path.join(generated, "convgen-model.json")) as f:
            for layer in json.load(f)["layers"]:
                with open(os.path.join(generated, layer["manifest"])) as m:
                    channels = json.load(m).get("channels", {})
                if channels.get("zero_inputs") or channels.get("unread_outputs"):
                    relying.add(layer["name"])
        self.assertGreater(len(relying), 5)
        model, table = cgt.load(model, generated, self.x, policy="always", cache=False)
        self.assertEqual(len(table.swapped()), 15, str(table))
        with torch.no_grad():  # a kept filter: a pruned one's BatchNorm zeroes it when folded
            weight = model.layer3[1].conv2.weight
            weight[tuple((weight != 0).nonzero()[0])] += 1.0
        table = model.convgen_reload()
        for row in table:
            if row.module == "layer3.1.conv2":
                self.assertIn("stale", row.reason)
            elif row.layer in relying:
                self.assertFalse(row.swapped, row.module)
                self.assertIn("relies on zero or unread channels of other layers", row.reason)
            else:
                self.assertTrue(row.swapped, f"{row.module}: {row.reason}")

    def test_a_copy_runs_pytorch_and_unload_restores_the_model(self):
        import copy
        model = pruned_model()
        generated = self.generate(model, "copy")
        model, _ = cgt.load(model, generated, self.x, policy="always", cache=False)
        twin = copy.deepcopy(model)
        self.assertFalse(twin.conv1._convgen_swap.active)
        self.assertTrue(model.conv1._convgen_swap.active)
        with self.assertRaises(cgt.ConvgenError):
            cgt.reload(twin)
        cgt.unload(model)
        self.assertFalse(any("forward" in vars(m) for m in model.modules()))
        self.assertFalse(hasattr(model, "convgen_reload"))


@unittest.skipIf(torch is None or not torch.cuda.is_available(), "needs a CUDA GPU")
class GpuLoadTest(unittest.TestCase):
    def test_the_swapped_model_matches_pytorch(self):
        model = pruned_model().cuda()
        x = torch.randn(2, 3, 32, 32, device="cuda")
        with torch.no_grad():
            expected = model(x)
        with tempfile.TemporaryDirectory() as work:
            onnx = os.path.join(work, "model.onnx")
            cgt.export(model, x, onnx)
            cgt.generate(onnx, os.path.join(work, "generated"), tool=convgen_tool())
            model, table = cgt.load(model, os.path.join(work, "generated"), x, policy="always",
                                    cache=False)
            self.assertEqual(len(table.swapped()), 15, str(table))
            with torch.no_grad():
                got = model(x)
            torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
            model, table = cgt.load(model, os.path.join(work, "generated"), x,
                                    cache=os.path.join(work, "t.json"))
            for row in table:
                self.assertIsNotNone(row.torch_ms, str(table))


if __name__ == "__main__":
    unittest.main()
