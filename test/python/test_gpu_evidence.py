"""scripts/gpu-evidence.sh rehearsed on the host CUDA driver (issue 16): a
small prepared set (two tiny layers, fp32 and fp16, batch 1 and 32, the dense
kernel, two tuning candidates) is made by scripts/gpu-prepare.sh and run end to
end. The report must exist, be flagged as a rehearsal, say that cuDNN and
cuSPARSE were skipped, and hold a timed, correct row per layer and batch."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

from convgen_tool import SOURCE_DIR, convgen_tool

sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))
import gpu_evidence  # noqa: E402

PREPARE = os.path.join(SOURCE_DIR, "scripts", "gpu-prepare.sh")
EVIDENCE = os.path.join(SOURCE_DIR, "scripts", "gpu-evidence.sh")


def _built(name, env, relative):
    """A file of the build tree: from its variable, else beside libconvgen.so."""
    path = os.environ.get(env)
    if not path and os.environ.get("CONVGEN_LIB"):
        build = os.path.dirname(os.path.dirname(os.environ["CONVGEN_LIB"]))
        path = os.path.join(build, relative)
    if not path or not os.path.exists(path):
        raise unittest.SkipTest(f"no {name}: run through ctest")
    return path


class GpuEvidenceRehearsalTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tool = convgen_tool()
        cls.lib = _built("libconvgen.so", "CONVGEN_LIB", "src/libconvgen.so")
        cls.driver = _built("host CUDA driver", "CONVGEN_HOSTCUDA_LIB",
                            "test/libconvgen_hostcuda.so")
        cls.work = tempfile.TemporaryDirectory()
        cls.prepared = os.path.join(cls.work.name, "prepared")
        cls.out = os.path.join(cls.work.name, "out")
        env = dict(os.environ, CONVGEN_TOOL=cls.tool, CONVGEN_LIB=cls.lib)
        cls.prepare = subprocess.run(["bash", PREPARE, cls.prepared, "--set", "small"], env=env,
                                     capture_output=True, text=True, timeout=300)
        env.update(CONVGEN_CUDA_DRIVER=cls.driver)
        gpu_tests = os.path.join(os.path.dirname(cls.driver), "gpu_tests")
        if os.path.exists(gpu_tests):  # one quick test of it: the step is rehearsed, not the suite
            env.update(GPU_EVIDENCE_GPU_TESTS=gpu_tests,
                       GPU_EVIDENCE_GPU_TESTS_FILTER="HostDriverTest.CApiRunsAndReloadsALayer")
        cls.run_ = subprocess.run(["bash", EVIDENCE, cls.prepared, "-o", cls.out], env=env,
                                  capture_output=True, text=True, timeout=600)

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()

    def manifest(self):
        with open(os.path.join(self.prepared, gpu_evidence.MANIFEST)) as f:
            return json.load(f)

    def test_prepared_folder_fits_and_lists_every_case(self):
        self.assertEqual(self.prepare.returncode, 0, self.prepare.stdout + self.prepare.stderr)
        manifest = self.manifest()
        self.assertLessEqual(manifest["bytes"], 64 * 2**20)
        self.assertEqual([(c["dtype"], c["mode"]) for c in manifest["cases"]],
                         [("f32", "sparse"), ("f32", "dense"), ("f16", "sparse")])
        self.assertEqual(manifest["left_out"], [])
        self.assertEqual(manifest["timed_cases"], 3 * 2 * 2)  # cases x layers x batches
        self.assertEqual(len(manifest["tune"]), 2 * 2)  # candidates x batches
        for case in manifest["cases"]:
            for batch in manifest["batches"]:
                directory = os.path.join(self.prepared, case["dir"].format(batch=batch))
                manifests = [f for f in os.listdir(directory)
                             if f.endswith(".json") and f != "convgen-model.json"]
                self.assertEqual(len(manifests), 2, directory)
        self.assertIn("estimate_s", manifest)

    def test_rehearsal_runs_end_to_end(self):
        self.assertEqual(self.run_.returncode, 0, self.run_.stdout + self.run_.stderr)
        with open(os.path.join(self.out, "evidence.md")) as f:
            text = f.read()
        self.assertIn(gpu_evidence.REHEARSAL_FLAG, text)
        self.assertIn("cuDNN and cuSPARSE are skipped", text)
        with open(os.path.join(self.out, "evidence.json")) as f:
            evidence = json.load(f)
        self.assertTrue(evidence["rehearsal"])
        steps = {s["step"]: s for s in evidence["steps"]}
        self.assertEqual(set(steps), {"details", "inputs", "build", "gpu_tests", "convbench",
                                      "tune", "report"})
        self.assertEqual(steps["inputs"]["status"], "ran", steps["inputs"])
        self.assertEqual(steps["convbench"]["status"], "ran", steps["convbench"])
        self.assertEqual(steps["tune"]["status"], "ran", steps["tune"])
        self.assertEqual(steps["build"]["status"], "skipped")  # CONVGEN_LIB given
        self.assertIn(steps["gpu_tests"]["status"], ("ran", "skipped"))
        for step in evidence["steps"]:
            if step["status"] == "skipped":
                self.assertTrue(step["why"], step)

    def test_a_timed_correct_row_per_layer_and_batch(self):
        manifest = self.manifest()
        for case in manifest["cases"]:
            name = case["dir"].split("/b{batch}")[0].replace("gen/", "").replace("/", "-")
            with open(os.path.join(self.out, "convbench", name, "convbench.json")) as f:
                report = json.load(f)
            self.assertTrue(report["rehearsal"])
            self.assertTrue(report["complete"])
            self.assertIn("skipped", report["baselines"])
            rows = report["layers"]
            self.assertEqual(sorted((r["layer"], r["batch"]) for r in rows),
                             sorted((layer, batch) for layer in ("tiny.conv3x3", "tiny.pw_s2")
                                    for batch in manifest["batches"]))
            for row in rows:
                self.assertNotIn("error", row)
                self.assertTrue(row["correct"], row)
                self.assertGreater(row["convgen_ms"], 0.0)
                self.assertEqual(row["dtype"], case["dtype"])
                self.assertIsNone(row["cudnn_ms"])
                self.assertIsNone(row["cusparse_ms"])
                if case["mode"] == "dense":
                    self.assertEqual(row["mode"], "dense")
        with open(os.path.join(self.out, "evidence.json")) as f:
            summary = json.load(f)["summary"]
        self.assertEqual(sorted((e["layer"], e["dtype"]) for e in summary),
                         [("tiny.conv3x3", "f16"), ("tiny.conv3x3", "f32"),
                          ("tiny.pw_s2", "f16"), ("tiny.pw_s2", "f32")])
        for entry in summary:
            for row in entry["batches"].values():
                # beside convgen's own dense kernel, fp32 only
                self.assertEqual(row["speedup_dense"] is not None, entry["dtype"] == "f32")

    def test_report_without_results_says_so(self):
        with tempfile.TemporaryDirectory() as out:
            gpu_evidence.write_report(out, "")
            with open(os.path.join(out, "evidence.md")) as f:
                self.assertIn("(no layer was timed)", f.read())

    def test_estimate_counts_timed_cases(self):
        manifest = {"cases": [{"mode": "sparse", "dtype": "f32", "timed_cases": 10,
                               "ptx_bytes": 2**20},
                              {"mode": "dense", "dtype": "f32", "timed_cases": 10}],
                    "tune": []}
        per = gpu_evidence.SECONDS_PER_CASE
        expected = (gpu_evidence.STEP_STARTUP_S + 10 * (per["convgen"] + per["cudnn"]
                                                        + per["cudnn_tf32"] + per["cusparse"])
                    + 10 * per["convgen"] + gpu_evidence.JIT_SECONDS_PER_MIB)
        self.assertAlmostEqual(gpu_evidence.estimate(manifest)["convbench"], expected, places=1)


if __name__ == "__main__":
    unittest.main()
