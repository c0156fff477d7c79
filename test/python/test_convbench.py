"""tools/convbench.py: without a CUDA GPU it says so and exits 2; its report
helpers work on plain data; with a GPU, a small run must produce correct
results and both report files."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from convgen_tool import SOURCE_DIR

sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))
import convbench  # noqa: E402

EXAMPLE = os.path.join(SOURCE_DIR, "examples", "esrgan_medium_x4", "esrgan_medium_x4-s90.npz")
TOOL = os.path.join(SOURCE_DIR, "tools", "convbench.py")


def _cuda_available():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


class ConvbenchTest(unittest.TestCase):
    def test_runs_or_says_why_not(self):
        with tempfile.TemporaryDirectory() as out:
            result = subprocess.run(
                [sys.executable, TOOL, "--weights", EXAMPLE, "--layer", "F_m1", "--batch", "1",
                 "-o", out], capture_output=True, text=True, timeout=500)
            if not _cuda_available():
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn("convbench: needs", result.stderr)
                self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
                self.skipTest("no CUDA GPU: convbench stopped cleanly with exit code 2")
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            report = json.load(open(os.path.join(out, "convbench.json")))
            self.assertTrue(all(r["correct"] for r in report["layers"]))
            self.assertTrue(os.path.exists(os.path.join(out, "convbench.md")))

    def test_tunes_in_fp16_or_says_why_not(self):
        with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, XDG_CACHE_HOME=cache)
            result = subprocess.run(
                [sys.executable, TOOL, "--weights", EXAMPLE, "--layer", "F_m1", "--batch", "1",
                 "--dtype", "f16", "--tune", "-o", out],
                capture_output=True, text=True, timeout=900, env=env)
            if not _cuda_available():
                self.assertEqual(result.returncode, 2, result.stderr)
                self.skipTest("no CUDA GPU: convbench --tune stopped cleanly with exit code 2")
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            report = json.load(open(os.path.join(out, "convbench.json")))
            row = report["layers"][0]
            self.assertEqual(row["dtype"], "f16")
            self.assertTrue(row["correct"])
            self.assertIsNotNone(row["heuristic_ms"])
            self.assertGreater(len(row["tuning_trials"]), 1)
            # The record is in the cache, and the layer was generated from it.
            self.assertEqual(row["tiling_source"], "tuned")
            records = os.listdir(os.path.join(cache, "convgen", "v1", "tuning"))
            self.assertEqual(len(records), 1)

    def test_tune_with_generated_is_a_usage_error(self):
        result = subprocess.run([sys.executable, TOOL, "--weights", EXAMPLE, "--all", "--tune",
                                 "--generated", "somewhere"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("leave out --generated", result.stderr)

    def test_host_driver_without_the_host_driver_says_so(self):
        env = {k: v for k, v in os.environ.items() if k != "CONVGEN_CUDA_DRIVER"}
        result = subprocess.run([sys.executable, TOOL, "--weights", EXAMPLE, "--layer", "F_m1",
                                 "--host-driver"], capture_output=True, text=True, env=env)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("CONVGEN_CUDA_DRIVER", result.stderr)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)

    def test_rehearsal_report_is_flagged(self):
        report = {"device": "host", "driver": "12.4", "cuda": "n/a", "cudnn": "n/a",
                  "date": "d", "commit": "c", "runs": 20, "warmup": 5, "weights": "w.npz",
                  "rehearsal": True, "baselines": convbench.SKIPPED_ON_HOST, "layers": [],
                  "geomean_speedup_cudnn": {}}
        text = convbench._markdown(report)
        self.assertIn(convbench.REHEARSAL_FLAG, text)
        self.assertIn("cuDNN and cuSPARSE skipped", text)

    def test_markdown_puts_tuned_beside_heuristic(self):
        row = {"layer": "conv", "batch": 32, "mode": "sparse", "kernels": 1,
               "tiling": "bk=4,bw=2", "tiling_source": "tuned", "convgen_ms": 0.5,
               "heuristic_ms": 0.75, "cudnn_ms": 2.0, "speedup_cudnn": 4.0, "cusparse_ms": None,
               "speedup_cusparse": None, "useful_gflops": 1.0, "fp32_peak_pct": None,
               "bandwidth_gbs": 1.0, "bandwidth_peak_pct": None, "max_abs_error": 1e-6,
               "correct": True}
        report = {"device": "GPU", "driver": "1", "cuda": "1", "cudnn": 1, "date": "d",
                  "commit": "c", "runs": 20, "warmup": 5, "weights": "w.npz", "dtype": "f32",
                  "layers": [row], "geomean_speedup_cudnn": {"32": 4.0},
                  "geomean_tuning_gain": {"32": 1.5}}
        text = convbench._markdown(report)
        self.assertIn("| bk=4,bw=2 (tuned) | 0.500 | 0.750 |", text)
        self.assertIn("gain of tuning over the heuristic at batch 32: 1.50x", text)

    def test_too_few_runs_is_a_usage_error(self):
        result = subprocess.run([sys.executable, TOOL, "--weights", EXAMPLE, "--all", "--runs", "5"],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--runs must be at least 20", result.stderr)

    def test_prune_pair_is_multiplied_out(self):
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "m.npz")
            np.savez(path, **{"c.weight_orig": np.full((2, 1, 1, 1), 3.0, np.float32),
                              "c.weight_mask": np.array([1, 0], np.float32).reshape(2, 1, 1, 1)})
            weights = convbench._load_weights(np.load(path), "c.weight")
            self.assertEqual(weights.ravel().tolist(), [3.0, 0.0])
            with self.assertRaises(convbench.BenchError):
                convbench._load_weights(np.load(path), "d.weight")

    def test_markdown_has_a_row_per_layer_and_the_geomean(self):
        row = {"layer": "conv", "batch": 32, "mode": "sparse", "kernels": 2, "convgen_ms": 0.5,
               "tiling": "bk=4,bw=1", "tiling_source": "heuristic", "cudnn_ms": 1.5, "speedup_cudnn": 3.0,
               "cudnn_tf32_ms": 0.6, "speedup_cudnn_tf32": 1.2, "cusparse_ms": None,
               "speedup_cusparse": None, "useful_gflops": 1000.0, "fp32_peak_pct": 1.5,
               "bandwidth_gbs": 100.0, "bandwidth_peak_pct": 3.0, "max_abs_error": 1e-6,
               "correct": True}
        report = {"device": "GPU", "driver": "13.0", "cuda": "12.4", "cudnn": 90100,
                  "date": "2026-11-21", "commit": "abc", "runs": 20, "warmup": 5,
                  "weights": "m.npz", "layers": [row], "geomean_speedup_cudnn": {"32": 3.0},
                  "geomean_speedup_cudnn_tf32": {"32": 1.2}}
        text = convbench._markdown(report)
        self.assertIn("| cuDNN ms | speedup | cuDNN TF32 ms | speedup | cuSPARSE ms |", text)
        self.assertIn("| conv | 32 | sparse | 2 | bk=4,bw=1 (heuristic) | 0.500 | n/a | 1.500 | "
                      "3.00 | 0.600 | 1.20 | n/a | n/a |", text)
        self.assertIn("Geomean speedup over cuDNN at batch 32: 3.00x", text)
        self.assertIn("Geomean speedup over cuDNN with TF32 (PyTorch's default) at batch 32: 1.20x",
                      text)

    def test_a_layer_that_failed_on_the_gpu_gets_a_row_saying_so(self):
        report = {"device": "GPU", "driver": "13.0", "cuda": "12.4", "cudnn": 90100,
                  "date": "2026-11-21", "commit": "abc", "runs": 20, "warmup": 5,
                  "weights": "m.npz", "geomean_speedup_cudnn": {},
                  "layers": [{"layer": "conv", "batch": 1, "correct": False,
                              "error": "cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX"}]}
        self.assertIn("| conv | 1 | FAILED: cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX |",
                      convbench._markdown(report))

    def test_known_gpus_have_peaks(self):
        args = type("Args", (), {"peak_tflops": None, "peak_gbs": None})()
        self.assertEqual(convbench._peaks("NVIDIA H200", args), (67.0, 4800.0))
        self.assertEqual(convbench._peaks("NVIDIA H200 NVL", args), (60.0, 4800.0))
        self.assertEqual(convbench._peaks("NVIDIA H100 PCIe", args), (51.2, 2039.0))
        self.assertEqual(convbench._peaks("NVIDIA H100 80GB HBM3", args), (67.0, 3350.0))
        self.assertEqual(convbench._peaks("Unknown GPU", args), (None, None))


if __name__ == "__main__":
    unittest.main()
