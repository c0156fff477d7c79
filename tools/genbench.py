#!/usr/bin/env python3
"""genbench: how fast convgen regenerates a model, round after pruning round.

    python3 tools/genbench.py [-o DIR] [--models resnet50,esrgan] [--jobs N]

For each model it times three runs of `convgen --all` into one fresh cache and
output directory:
  cold         an empty cache: every layer compiled, PTX emitted, ptxas run;
  no-change    the same weights again: every layer a cache hit, nothing written;
  values-only  every nonzero weight scaled by 1.01 (same masks): hits, and only
               the packed weights and manifests rewritten.
It records each run's wall time and peak memory: the largest sum of resident
sets of convgen and its children (ptxas), sampled every 50 ms, and convgen's
own high-water mark (VmHWM). wait4's ru_maxrss is not used: on Linux it keeps
the forking Python's resident set, torch included. It checks them against
the targets of issue 6: ResNet-50 cold <= 60 s, no-change <= 2 s,
values-only <= 5 s, peak <= 4 GiB.

Models:
  resnet50  every conv of ResNet-50 (defined here, as torchvision's, with
            PyTorch's default random init), exported by tools/export_pytorch.py
            with BatchNorm folded and 90 % magnitude pruning; input 1x3x224x224
  esrgan    the shipped example at 90 %

It writes genbench.json and genbench.md to -o, with the machine, the date and
the commit. Exit codes: 0 ran (targets met or not: the report says), 1 convgen
failed on a model, 2 cannot run (no torch, no convgen).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

TARGETS = {"cold": 60.0, "no-change": 2.0, "values-only": 5.0}
PEAK_TARGET_GIB = 4.0


def resnet50():
    """torchvision's ResNet-50 (v1.5: stride on the 3x3), without torchvision."""
    import torch.nn as nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride, downsample):
            super().__init__()
            width = planes
            self.conv1, self.bn1 = nn.Conv2d(inplanes, width, 1, bias=False), nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu1(self.bn1(self.conv1(x)))
            out = self.relu2(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu3(out + identity)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
            self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            inplanes, layers = 64, []
            for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                stage = []
                for b in range(blocks):
                    downsample = None
                    if b == 0 and (stride != 1 or inplanes != planes * 4):
                        downsample = nn.Sequential(
                            nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                            nn.BatchNorm2d(planes * 4))
                    stage.append(Bottleneck(inplanes, planes, stride if b == 0 else 1, downsample))
                    inplanes = planes * 4
                layers.append(nn.Sequential(*stage))
            self.layer1, self.layer2, self.layer3, self.layer4 = layers

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    return ResNet50()


def make_model(name, work):
    """The model's .npz (with its sidecar beside it)."""
    if name == "esrgan":
        for suffix in (".npz", ".json"):
            shutil.copy(os.path.join(ROOT, "examples", "esrgan_medium_x4",
                                     "esrgan_medium_x4-s90" + suffix), work)
        return os.path.join(work, "esrgan_medium_x4-s90.npz")
    if name == "resnet50":
        import torch
        from export_pytorch import export
        torch.manual_seed(0)
        model = resnet50().eval()
        path = os.path.join(work, "resnet50-s90.npz")
        export(model, torch.randn(1, 3, 224, 224), path, prune=0.9, model_name="resnet50")
        return path
    raise SystemExit(f"genbench: unknown model {name}")


def scaled_values(npz, work):
    """The model with every conv weight scaled by 1.01: same masks, new values."""
    import numpy as np
    arrays = dict(np.load(npz))
    for key, array in arrays.items():
        if key.endswith(".weight") and array.ndim == 4:
            arrays[key] = (array * np.float32(1.01)).astype(array.dtype)
    stem = os.path.splitext(os.path.basename(npz))[0] + "-values"
    path = os.path.join(work, stem + ".npz")
    np.savez(path, **arrays)
    shutil.copy(os.path.splitext(npz)[0] + ".json", os.path.join(work, stem + ".json"))
    return path


def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _tree_rss_bytes(pid):
    """VmRSS of `pid` and all its descendants."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += _status_kib(current, "VmRSS") * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    pending += [int(child) for child in f.read().split()]
        except (OSError, ValueError):
            pass  # exited meanwhile
    return total


def timed(command):
    """(seconds, peak tree RSS, convgen's VmHWM, stdout, stderr) of one run."""
    start = time.monotonic()
    peak_tree = high_water = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        while process.poll() is None:
            peak_tree = max(peak_tree, _tree_rss_bytes(process.pid))
            try:
                high_water = max(high_water, _status_kib(process.pid, "VmHWM") * 1024)
            except OSError:
                pass
            time.sleep(0.05)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr.strip()}")
    return seconds, max(peak_tree, high_water), high_water, stdout, stderr


def bench_model(name, args, work):
    npz = make_model(name, work)
    values = scaled_values(npz, work)
    cache, output = os.path.join(work, name + "-cache"), os.path.join(work, name + "-out")
    base = [args.convgen, "--all", "-o", output, "--cache-dir", cache]
    if args.jobs:
        base += ["--jobs", str(args.jobs)]
    if args.max_memory:
        base += ["--max-memory", str(args.max_memory)]
    runs = {}
    for run, weights in (("cold", npz), ("no-change", npz), ("values-only", values)):
        if run not in args.runs.split(","):
            continue
        seconds, peak, high_water, stdout, stderr = timed(base + ["--weights", weights])
        total = [line for line in stdout.splitlines() if line.startswith("total:")]
        runs[run] = {"seconds": seconds, "peak_rss_bytes": peak, "convgen_hwm_bytes": high_water,
                     "summary": total[0] if total else "",
                     "hits": stderr.count(": hit,"), "misses": stderr.count(": miss,"),
                     "up_to_date": stderr.count("up to date")}
        print(f"{name:10s} {run:12s} {seconds:8.2f} s  peak {peak / 2**30:.2f} GiB  "
              f"{runs[run]['summary']}", flush=True)
        if run == "cold":
            runs[run]["table"] = stdout
    layers = runs["cold"]["misses"]
    return {"model": name, "layers": layers, "runs": runs}


def _markdown(report):
    lines = [f"# genbench: {report['date']}, commit {report['commit']}", "",
             f"{report['cpu']}, {report['cores']} cores, {report['memory_gib']:.0f} GiB; "
             f"convgen --all --jobs {report['jobs'] or 'default (one per core)'}, --max-memory "
             f"{str(report['max_memory']) + ' GiB' if report['max_memory'] else 'default'}.", "",
             "Peak GiB: the largest sampled sum of resident sets of convgen and its ptxas "
             "children; convgen GiB: convgen's own high-water mark.", "",
             "| model | layers | run | seconds | target | peak GiB | convgen GiB | hits | up to date |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for model in report["models"]:
        for run, r in model["runs"].items():
            target = TARGETS[run] if (run != "cold" or model["model"] == "resnet50") else None
            verdict = "" if target is None else (f" ({'met' if r['seconds'] <= target else 'MISSED'})")
            lines.append(f"| {model['model']} | {model['layers']} | {run} | {r['seconds']:.2f} | "
                         f"{'' if target is None else f'<= {target:g} s'}{verdict} | "
                         f"{r['peak_rss_bytes'] / 2**30:.2f} | {r['convgen_hwm_bytes'] / 2**30:.2f} | "
                         f"{r['hits']} | {r['up_to_date']} |")
    lines += ["", f"Peak memory target: <= {PEAK_TARGET_GIB:g} GiB.", ""]
    for model in report["models"]:
        lines += [f"## {model['model']}: cold run, per layer", "", "```",
                  model["runs"]["cold"]["table"].rstrip(), "```", ""]
    return "\n".join(lines)


def _write_atomically(path, text):
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(os.path.abspath(path)),
                                     delete=False) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes it 0600
    os.replace(tmp.name, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,esrgan")
    parser.add_argument("--runs", default="cold,no-change,values-only",
                        help="which runs, in order; values-only needs the others' cache")
    parser.add_argument("--jobs", type=int, default=0, help="convgen --jobs (default: its own)")
    parser.add_argument("--max-memory", type=float, default=0,
                        help="convgen --max-memory in GiB (default: its own)")
    parser.add_argument("--convgen", default=os.environ.get(
        "CONVGEN_TOOL", os.path.join(ROOT, "build", "tools", "convgen")))
    parser.add_argument("-o", "--output", default="genbench-results")
    args = parser.parse_args(argv)
    if not os.path.exists(args.convgen):
        print(f"genbench: no convgen at {args.convgen}: build it, or pass --convgen", file=sys.stderr)
        return 2
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
    except ImportError as error:
        print(f"genbench: needs numpy and torch ({error})", file=sys.stderr)
        return 2
    with open("/proc/meminfo") as f:
        memory = int(f.readline().split()[1]) * 1024
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    report = {"date": datetime.date.today().isoformat(), "commit": commit,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "memory_gib": memory / 2**30, "jobs": args.jobs, "max_memory": args.max_memory,
              "models": []}
    try:
        with open("/proc/cpuinfo") as f:
            report["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            try:
                report["models"].append(bench_model(name, args, work))
            except RuntimeError as error:  # convgen failed: timing it means nothing
                print(f"genbench: {error}", file=sys.stderr)
                return 1
    os.makedirs(args.output, exist_ok=True)
    _write_atomically(os.path.join(args.output, "genbench.json"), json.dumps(report, indent=1) + "\n")
    _write_atomically(os.path.join(args.output, "genbench.md"), _markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
