#!/usr/bin/env python3
"""genbench: how fast convgen regenerates a model, round after pruning round.

    python3 tools/genbench.py [-o DIR] [--models resnet50,inceptionv3,esrgan] [--jobs N]

For each model it times these runs of `convgen --all -v` (the first three
into one fresh cache and output directory):
  cold          an empty cache: every layer specialised, PTX emitted, ptxas
                run once per layer (its cubin kept in NAME.fatbin);
  no-change     the same weights again: every layer a cache hit, nothing written;
  values-only   every nonzero weight scaled by 1.01 (same masks): hits, and only
                the packed weights and manifests rewritten;
  cold-ptx-only an empty cache of its own, with --ptx-only: no ptxas, PTX only
                (the draft rounds of a pruning loop).
It records each run's wall time and peak memory: the largest sum of resident
sets of convgen and its children (ptxas), sampled every 50 ms, and convgen's
own high-water mark (VmHWM). wait4's ru_maxrss is not used: on Linux it keeps
the forking Python's resident set.

For the cold run it also breaks each layer's time down by phase, from the
`phases:` lines of `convgen -v` (summed over a split layer's kernels):
specialise (the template with the layer's constants, loops rolled),
eliminate (the unroll that leaves out zero weights, and the weight-map
check), pack + cleanup, NVPTX (PTX emission) and ptxas, with the seconds per
fma in code, and fatbinary (packing the cubins). With --jobs > 1 layers overlap, so the phases add up to more
than the wall time.

Targets (issue 23, this 2-core machine, --jobs 2): ResNet-50 at 90 % cold
<= 900 s by default and <= 300 s with --ptx-only, the example <= 30 s;
no-change <= 2 s, values-only <= 5 s; peak <= 4 GiB. InceptionV3 is timed
without a target.

Models (made here; numpy only):
  resnet50     every conv of torchvision's ResNet-50 (53 layers), from
               tools/make_layers.py resnet50-model at 90 % (random weights,
               magnitude-pruned); input 1x3x224x224
  inceptionv3  every conv of torchvision's InceptionV3 (94 layers), from
               tools/make_layers.py inceptionv3-model at 90 %; input 1x3x299x299
  esrgan       the shipped example at 90 %

It writes genbench.json and genbench.md to -o, with the machine, the date and
the commit. Exit codes: 0 ran (targets met or not: the report says), 1 convgen
failed on a model, 2 cannot run (no numpy, no convgen).
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))

TARGETS = {"no-change": 2.0, "values-only": 5.0}
COLD_TARGETS = {"resnet50": 900.0, "esrgan": 30.0}
PTX_ONLY_TARGETS = {"resnet50": 300.0}
RUNS = ("cold", "no-change", "values-only", "cold-ptx-only")
PEAK_TARGET_GIB = 4.0
MODEL_SETS = {"resnet50": "resnet50-model", "inceptionv3": "inceptionv3-model"}
PHASES = ("specialise", "eliminate", "pack", "cleanup", "ptx", "ptxas", "fatbinary")


def make_model(name, work):
    """The model's .npz (with its sidecar beside it)."""
    if name == "esrgan":
        for suffix in (".npz", ".json"):
            shutil.copy(os.path.join(ROOT, "examples", "esrgan_medium_x4",
                                     "esrgan_medium_x4-s90" + suffix), work)
        return os.path.join(work, "esrgan_medium_x4-s90.npz")
    if name in MODEL_SETS:
        path = os.path.join(work, name + "-s90.npz")
        subprocess.run([sys.executable, os.path.join(HERE, "make_layers.py"), MODEL_SETS[name],
                        "--sparsity", "0.9", "-o", path], check=True, capture_output=True)
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


PHASE_LINE = re.compile(r"^convgen: layer '(?P<layer>[^']+)' phases:(?P<phases>.*)$")


def layer_phases(stderr, table):
    """{layer: {phase: seconds, "fma": fma in code}} from `convgen -v`."""
    layers = {}
    for line in stderr.splitlines():
        match = PHASE_LINE.match(line)
        if not match:
            continue
        phases = layers.setdefault(match["layer"], {})
        for phase, seconds in re.findall(r"(\w+) ([0-9.]+) s", match["phases"]):
            phases[phase] = phases.get(phase, 0.0) + float(seconds)
    # The summary table: layer, shape..., then "fma in code" is the 8th
    # field from the right (fma, PTX KiB, SASS/fma, regs, spill B, kernels,
    # cache, time s).
    for line in table.splitlines():
        fields = line.split()
        if fields and fields[0] in layers and len(fields) > 9:
            try:
                layers[fields[0]]["fma"] = int(fields[-8])
            except ValueError:
                pass
    return layers


def bench_model(name, args, work):
    npz = make_model(name, work)
    values = scaled_values(npz, work)
    cache, output = os.path.join(work, name + "-cache"), os.path.join(work, name + "-out")
    base = [args.convgen, "--all", "-v", "-o", output, "--cache-dir", cache]
    if args.jobs:
        base += ["--jobs", str(args.jobs)]
    if args.max_memory:
        base += ["--max-memory", str(args.max_memory)]
    draft = [args.convgen, "--all", "-v", "--ptx-only", "-o", output + "-ptx-only",
             "--cache-dir", cache + "-ptx-only"] + base[7:]
    runs = {}
    for run, command, weights in (("cold", base, npz), ("no-change", base, npz),
                                  ("values-only", base, values), ("cold-ptx-only", draft, npz)):
        if run not in args.runs.split(","):
            continue
        seconds, peak, high_water, stdout, stderr = timed(command + ["--weights", weights])
        total = [line for line in stdout.splitlines() if line.startswith("total:")]
        runs[run] = {"seconds": seconds, "peak_rss_bytes": peak, "convgen_hwm_bytes": high_water,
                     "summary": total[0] if total else "",
                     "hits": stderr.count(": hit,"), "misses": stderr.count(": miss,"),
                     "up_to_date": stderr.count("up to date")}
        print(f"{name:10s} {run:12s} {seconds:8.2f} s  peak {peak / 2**30:.2f} GiB  "
              f"{runs[run]['summary']}", flush=True)
        if run.startswith("cold"):
            runs[run]["table"] = stdout
            runs[run]["phases"] = layer_phases(stderr, stdout)
    layers = max((r["misses"] for r in runs.values()), default=0)
    return {"model": name, "layers": layers, "runs": runs}


def _phase_table(phases):
    """Per layer: the phases' seconds and seconds per fma in code, then totals."""
    lines = ["| layer | fma in code | " + " | ".join(PHASES) + " | total s | ms / fma |",
             "|---|---:|" + "---:|" * (len(PHASES) + 2)]
    totals = {phase: 0.0 for phase in PHASES}
    total_fma = 0
    for layer, p in phases.items():
        seconds = sum(p.get(phase, 0.0) for phase in PHASES)
        fma = p.get("fma", 0)
        total_fma += fma
        for phase in PHASES:
            totals[phase] += p.get(phase, 0.0)
        per_fma = f"{1000 * seconds / fma:.3f}" if fma else "-"
        lines.append(f"| {layer} | {fma} | " + " | ".join(f"{p.get(phase, 0.0):.2f}" for phase in PHASES)
                     + f" | {seconds:.2f} | {per_fma} |")
    seconds = sum(totals.values())
    per_fma = f"{1000 * seconds / total_fma:.3f}" if total_fma else "-"
    lines.append(f"| **all {len(phases)} layers** | {total_fma} | "
                 + " | ".join(f"{totals[phase]:.1f}" for phase in PHASES)
                 + f" | {seconds:.1f} | {per_fma} |")
    return lines


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
            target = (COLD_TARGETS.get(model["model"]) if run == "cold" else
                      PTX_ONLY_TARGETS.get(model["model"]) if run == "cold-ptx-only" else TARGETS[run])
            verdict = "" if target is None else (f" ({'met' if r['seconds'] <= target else 'MISSED'})")
            lines.append(f"| {model['model']} | {model['layers']} | {run} | {r['seconds']:.2f} | "
                         f"{'' if target is None else f'<= {target:g} s'}{verdict} | "
                         f"{r['peak_rss_bytes'] / 2**30:.2f} | {r['convgen_hwm_bytes'] / 2**30:.2f} | "
                         f"{r['hits']} | {r['up_to_date']} |")
    lines += ["", f"Peak memory target: <= {PEAK_TARGET_GIB:g} GiB.", ""]
    for model in report["models"]:
        for run in ("cold", "cold-ptx-only"):
            cold = model["runs"].get(run)
            if not cold:
                continue
            lines += [f"## {model['model']}: {run} run, seconds per phase and layer", "",
                      "Each layer's own time (CPU-bound, one thread per layer); with --jobs > 1 "
                      "layers overlap, so the total exceeds the wall time.", ""]
            lines += _phase_table(cold.get("phases", {})) + [""]
            lines += [f"## {model['model']}: {run} run, convgen's table", "", "```",
                      cold["table"].rstrip(), "```", ""]
    return "\n".join(lines)


def _write_atomically(path, text):
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(os.path.abspath(path)),
                                     delete=False) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes it 0600
    os.replace(tmp.name, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,inceptionv3,esrgan")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help="which runs, in order; no-change and values-only need cold's cache")
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
    except ImportError as error:
        print(f"genbench: needs numpy ({error})", file=sys.stderr)
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
