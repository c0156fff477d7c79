#!/usr/bin/env python3
"""gpu_evidence: the first GPU run as one prepared command (issue 16).

    python3 tools/gpu_evidence.py prepare [-o DIR] [--set full|small]   # here, with LLVM 19
    python3 tools/gpu_evidence.py run --prepared DIR -o OUT             # on the GPU machine
    python3 tools/gpu_evidence.py report OUT                            # (re)writes the report

scripts/gpu-prepare.sh and scripts/gpu-evidence.sh wrap the first two.

prepare (here: the GPU machines have no LLVM 19) writes into one folder,
default build-evidence/prepared (git-ignored: hand it to the device tool as a
`carry` path), everything the GPU run needs:
- the weights and sidecars (.npz + .json) each case is checked against;
- per model, sparsity, element type and batch, the layers generated with
  `convgen --all --arch sm_90 --for-batch N` (H100 and H200 are sm_90);
- convgen's own dense kernel of every layer (`--tiling dense=1`), fp32, per batch;
- for the tuning step, the first few candidate tilings of a few layers
  (`convgen --list-tilings`), generated here, since tuning on the GPU machine
  cannot generate;
- evidence-manifest.json: every case in the order the run takes them, how many
  timed cases each holds, the commit, convgen's version and the sizes;
- lib/libconvgen.so from this build, the fallback if the runtime-only build
  fails there.
Cases are generated in priority order and kept while the folder fits --max-mib
(64); a case that does not fit is deleted and listed as left out, with why.
Inputs are not carried: convbench draws them with torch.randn on the device.

run executes the steps below, each under its own time budget (seconds,
GPU_EVIDENCE_BUDGET_<STEP> overrides). A step that runs out keeps what it
measured, and the report says what was skipped and why:
  details   device, driver, CUDA, cuDNN, torch, commit, date (nvidia-smi when present)
  inputs    the weights not carried made again (tools/make_layers.py), all checked by digest
  build     the runtime-only tree (cmake -DCONVGEN_RUNTIME_ONLY=ON) for libconvgen.so
  gpu_tests the runtime's GPU tests (they need LLVM 19 to generate their layers:
            skipped, saying so, where there is none and no prebuilt binary)
  convbench every prepared case at batch 1 and 32 against cuDNN and cuSPARSE
            (fp32, TF32 off; fp16), and convgen's dense kernel
  tune      the prepared candidate tilings, timed convgen-only
  report    evidence.md and evidence.json, from every convbench.json written
With CONVGEN_CUDA_DRIVER set the run is a rehearsal on the host CUDA driver
(test/hostcuda): convbench runs with --host-driver, cuDNN and cuSPARSE are
skipped, and every report says "REHEARSAL".

Exit codes: 0 every step ran or was skipped for a stated reason and every
timed layer was correct; 1 a step failed or a layer was wrong (the report
says which); 2 bad usage or an unusable prepared folder.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
PYTHON = sys.executable or "/usr/bin/python3"
MANIFEST = "evidence-manifest.json"
REHEARSAL_FLAG = "REHEARSAL: host CUDA driver, no GPU; timings are not GPU figures"

# Seconds per step; the sum is the 10 minutes of a GPU window, start-up excluded.
BUDGETS = {"details": 15, "inputs": 30, "build": 135, "gpu_tests": 60, "convbench": 300,
           "tune": 45, "report": 15}
# The whole run, under the device tool's 600 s per command with a margin:
# each step gets its budget or what is left, whichever is less.
TOTAL_S = 570
# Weights files larger than this are not carried but made again on the GPU
# machine by tools/make_layers.py (seeded: the same arrays, checked by digest).
CARRY_WEIGHTS_MAX = 4 * 2**20

# The time model of the budget estimate. Per timed case (a layer at a batch):
# the float64 check and 5 warm-up calls + 20 samples of at least 1 ms for
# convgen, the same for cuDNN (plus cudnnFind on its first call) and for
# cuSPARSE (its im2col included). Per layer and batch, the module load, whose
# JIT compiles the PTX: ptxas's rate, measured here (ptxas 13.0, sm_90, one
# core: JIT_SECONDS_PER_MIB), stands in for the driver's JIT, the same
# compiler. Per step, one process start (Python, torch, CUDA context).
SECONDS_PER_CASE = {"convgen": 0.15, "cudnn": 0.25, "cudnn_tf32": 0.25, "cusparse": 0.15}
STEP_STARTUP_S = 10.0
# ptxas 13.0 -arch=sm_90 here: the example's UPN1 at 95 % (0.66 MiB of PTX) in
# 1.56 s, F_5_1 (0.27 MiB) in 0.58 s. Larger modules may compile slower than
# linearly; the first GPU run measures the real loads (convbench's load_ms).
JIT_SECONDS_PER_MIB = 2.3


class EvidenceError(Exception):
    pass


def _git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _folder_bytes(path):
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            full = os.path.join(directory, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npz_digest(path):
    """SHA-256 of an .npz's arrays (names, dtypes, shapes, bytes): the zip
    itself records the time it was written."""
    import numpy as np
    digest = hashlib.sha256()
    with np.load(path) as npz:
        for key in sorted(npz.files):
            array = npz[key]
            digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- prepare

def _small_model(directory):
    """Two tiny layers for the rehearsal test: generated in seconds, run in
    milliseconds by the host stand-in."""
    import numpy as np
    rng = np.random.default_rng(16)
    layers = [("tiny.conv3x3", 8, 8, 12, 3, 1, 1, "relu"),
              ("tiny.pw_s2", 16, 8, 10, 1, 2, 0, None)]
    arrays, specs = {}, []
    for name, c, k, size, kernel, stride, padding, activation in layers:
        weight = (rng.standard_normal((k, c, kernel, kernel)) / np.sqrt(c * kernel * kernel))
        weight = weight.astype(np.float32).ravel()
        weight[np.argsort(np.abs(weight), kind="stable")[:int(round(0.9 * weight.size))]] = 0.0
        arrays[name + ".weight"] = weight.reshape(k, c, kernel, kernel)
        arrays[name + ".bias"] = (rng.standard_normal(k) * 0.1).astype(np.float32)
        out = (size + 2 * padding - kernel) // stride + 1
        specs.append({"name": name, "weight": name + ".weight", "bias": name + ".bias",
                      "input": [1, c, size, size], "stride": [stride, stride],
                      "padding": [padding, padding], "dilation": [1, 1], "groups": 1,
                      "activation": activation, "output": [1, k, out, out]})
    np.savez(os.path.join(directory, "tiny-s90.npz"), **arrays)
    with open(os.path.join(directory, "tiny-s90.json"), "w") as f:
        json.dump({"model": "tiny", "layers": specs}, f, indent=1)
    return {"tiny-s90": ("tiny", 90)}


def _benchmark_models(directory, sets, sparsities):
    """The benchmark set of issue 5 (scripts/make-benchmark-set.sh: seeded
    random weights pruned by magnitude; the shipped example, its 70 % pruned
    from the 50 % weights), the sets and sparsities asked for."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "make-benchmark-set.sh"), scratch],
                       check=True, stdout=subprocess.DEVNULL)
        for name in sets:
            for sparsity in sparsities:
                for ext in (".npz", ".json"):
                    stem = f"{name}-s{sparsity}{ext}"
                    shutil.copy(os.path.join(scratch, stem), os.path.join(directory, stem))


def _cases(set_name):
    """Every case of a set, in the order of priority (the run takes them in
    this order, and prepare keeps them in this order while they fit)."""
    if set_name == "small":
        return (["tiny"], [90],
                [("tiny", 90, "f32", "sparse"), ("tiny", 90, "f32", "dense"),
                 ("tiny", 90, "f16", "sparse")],
                [("tiny", 90, "f32", "tiny.conv3x3")], 2)
    models = ["paper", "esrgan_medium_x4", "resnet50"]
    # First what the first GPU window must show: 90 % fp32 with the dense
    # kernel beside it; then each other sparsity and element type once, the
    # least code first; ResNet-50's shapes, the most code, last, layer by layer
    # into what room is left.
    cases = [("paper", 90, "f32", "sparse"), ("paper", 90, "f32", "dense"),
             ("esrgan_medium_x4", 90, "f32", "sparse"), ("esrgan_medium_x4", 90, "f32", "dense")]
    for sparsity, dtype in ((90, "f16"), (95, "f32"), (95, "f16"), (70, "f32"), (70, "f16")):
        cases += [("paper", sparsity, dtype, "sparse"),
                  ("esrgan_medium_x4", sparsity, dtype, "sparse")]
    cases += [("resnet50", 90, "f32", "sparse"), ("resnet50", 90, "f32", "dense")]
    for sparsity, dtype in ((90, "f16"), (95, "f32"), (95, "f16"), (70, "f32"), (70, "f16")):
        cases.append(("resnet50", sparsity, dtype, "sparse"))
    # Two layers whose code is small (about 0.5 MiB of PTX per candidate).
    tune = [("paper", 90, "f32", "paper.resnet_56x56_64"),
            ("esrgan_medium_x4", 90, "f32", "F_0")]
    return models, [70, 90, 95], cases, tune, 3


def _case_dir(model, sparsity, dtype, mode):
    return f"gen/{model}-s{sparsity}/{dtype}-{mode}"


# Models whose code is too big to carry whole: prepared layer by layer.
PER_LAYER_MODELS = {"resnet50"}


def _layers_by_nonzeros(npz_path):
    """The sidecar's layers, the fewest nonzero weights first."""
    import numpy as np
    with open(npz_path[:-4] + ".json") as f:
        specs = json.load(f)["layers"]
    with np.load(npz_path) as npz:
        counts = {s["name"]: int(np.count_nonzero(npz[s["weight"]])) for s in specs}
    return sorted(counts, key=lambda name: (counts[name], name))


def _nonzeros(npz_path):
    import numpy as np
    with np.load(npz_path) as npz:
        return sum(int(np.count_nonzero(npz[k])) for k in npz.files if k.endswith(".weight"))


def _remove_layer(case_path, name):
    stem = name.replace("/", "_").replace("\\", "_")
    stem = "_" + stem if stem.startswith(".") else stem
    for directory, _, files in os.walk(case_path):
        for f in files:
            if f in (stem + ".ptx", stem + ".fatbin", stem + ".json", stem + ".weights.bin") or \
                    re.fullmatch(re.escape(stem) + r"\.m\d+\.(ptx|fatbin)", f):
                os.unlink(os.path.join(directory, f))


def drop_ptx_beside_fatbinaries(directory):
    """Deletes each NAME.ptx (or NAME.m<k>.ptx) that has a fatbinary beside
    it: the runtime loads the fatbinary, which holds the same PTX, so the
    folder carries it once and has room for more cases."""
    for name in os.listdir(directory):
        if name.endswith(".ptx") and os.path.exists(os.path.join(directory, name[:-4] + ".fatbin")):
            os.unlink(os.path.join(directory, name))


def _layer_count(sidecar):
    with open(sidecar) as f:
        return len(json.load(f)["layers"])


def prepare(args):
    convgen = args.convgen
    if not os.path.exists(convgen):
        raise EvidenceError(f"no convgen at {convgen}: build it first (scripts/build.sh)")
    out = os.path.abspath(args.output)
    if os.path.exists(out):
        if os.listdir(out) and not os.path.exists(os.path.join(out, MANIFEST)):
            raise EvidenceError(f"{out} exists and is not a prepared folder: give another -o")
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "models"))
    started = time.monotonic()
    model_names, sparsities, cases, tune, candidates_per_layer = _cases(args.set)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the scratch is removed
    scratch_models = tempfile.TemporaryDirectory()
    models = scratch_models.name
    if args.set == "small":
        _small_model(models)
    else:
        _benchmark_models(models, model_names, sparsities)
    budget = int(args.max_mib * 1024 * 1024)
    regenerate = {}

    def weights_bytes_to_add(stem):
        """What carrying this model's weights would add to the folder."""
        if os.path.exists(os.path.join(out, "models", stem + ".json")):
            return 0
        npz_bytes = os.path.getsize(os.path.join(models, stem + ".npz"))
        return os.path.getsize(os.path.join(models, stem + ".json")) + (
            npz_bytes if npz_bytes <= CARRY_WEIGHTS_MAX else 0)

    def carry_weights(stem):
        if os.path.exists(os.path.join(out, "models", stem + ".json")):
            return
        shutil.copy(os.path.join(models, stem + ".json"), os.path.join(out, "models"))
        npz = os.path.join(models, stem + ".npz")
        if os.path.getsize(npz) <= CARRY_WEIGHTS_MAX:
            shutil.copy(npz, os.path.join(out, "models"))
        else:
            model, sparsity = stem.rsplit("-s", 1)
            regenerate[f"models/{stem}.npz"] = {
                "command": ["tools/make_layers.py", model, "--sparsity", f"0.{sparsity}",
                            "-o", f"models/{stem}.npz"],
                "sha256_arrays": _npz_digest(npz), "bytes": os.path.getsize(npz)}

    deadline = started + 60.0 * args.max_minutes if args.max_minutes else None

    def left():
        return None if deadline is None else deadline - time.monotonic()

    def generate(directory, npz, dtype, batch, extra, layers=None):
        command = [convgen, "--weights", npz, "--arch", args.arch, "--dtype", dtype,
                   "--for-batch", str(batch), "-o", directory] + extra
        command += sum((["--layer", name] for name in layers), []) if layers else ["--all"]
        if args.no_cache:
            command.append("--no-cache")
        if args.jobs:
            command += ["-j", str(args.jobs)]
        t0 = time.monotonic()
        remaining = left()
        if remaining is not None and remaining <= 0:
            raise subprocess.TimeoutExpired(command, 0)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, timeout=remaining)
        drop_ptx_beside_fatbinaries(directory)
        return time.monotonic() - t0

    def ptx_bytes(path):
        """The PTX the driver has to JIT-compile: that of layers without a
        fatbinary (a layer with one carries its --arch cubin, loaded as it is)."""
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
                   for f in fs if f.endswith(".ptx")
                   and f[:-4] + ".fatbin" not in fs)

    def leave_out(entry, why):
        entry["why"] = why
        manifest["left_out"].append(entry)
        print(f"gpu-prepare: {entry.get('dir', '')}: LEFT OUT ({why})", flush=True)

    manifest = {"format": "convgen-gpu-evidence/1", "set": args.set, "arch": args.arch,
                "batches": args.batches, "created": datetime.datetime.now(
                    datetime.timezone.utc).isoformat(timespec="seconds"),
                "commit": _git("rev-parse", "HEAD"),
                "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
                "host": platform.node(), "max_mib": args.max_mib,
                "cases": [], "left_out": [], "tune": []}
    def prepare_tuning():
        """The tuning candidates, right after the cases they belong to, so that
        room is left for them."""
        prepared = {(c["model"], c["sparsity"], c["dtype"]) for c in manifest["cases"]}
        for model, sparsity, dtype, layer in tune:
            if (model, sparsity, dtype) not in prepared:
                continue
            if left() is not None and left() <= 0:
                manifest["left_out"].append({"model": model, "sparsity": sparsity, "dtype": dtype,
                                             "layer": layer, "why": "preparation ran out of time "
                                             "(--max-minutes) before its tuning candidates"})
                continue
            stem = f"{model}-s{sparsity}"
            npz = os.path.join(models, stem + ".npz")
            base = [convgen, "--weights", npz, "--arch", args.arch, "--dtype", dtype]
            for batch in args.batches:
                listing = subprocess.run(base + ["--list-tilings", "--layer", layer, "--for-batch",
                                                 str(batch)], check=True, capture_output=True,
                                         text=True).stdout
                tilings = [line.split("\t")[1] for line in listing.splitlines()
                           if line and not line.startswith("#")][:candidates_per_layer]
                for index, tiling in enumerate(tilings):
                    relative = f"tune/{stem}/{dtype}/{layer}/b{batch}/c{index}"
                    entry = {"model": model, "sparsity": sparsity, "dtype": dtype,
                             "layer": layer, "batch": batch, "candidate": index, "tiling": tiling,
                             "heuristic": index == 0, "weights": f"models/{stem}.npz",
                             "geometry": f"models/{stem}.json", "dir": relative}
                    try:
                        subprocess.run(base + ["--layer", layer, "--for-batch", str(batch),
                                               "--tiling", tiling, "-o", os.path.join(out, relative)]
                                       + (["--no-cache"] if args.no_cache else []),
                                       check=True, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)
                    except subprocess.CalledProcessError as error:
                        entry["why"] = f"convgen exit {error.returncode}"
                        manifest["left_out"].append(entry)
                        continue
                    if _folder_bytes(out) > budget:
                        shutil.rmtree(os.path.join(out, relative))
                        entry["why"] = f"the folder would exceed {args.max_mib} MiB"
                        manifest["left_out"].append(entry)
                        continue
                    entry["ptx_bytes"] = ptx_bytes(os.path.join(out, relative))
                    manifest["tune"].append(entry)

    # First, so that room is kept for it: the fallback library.
    lib = args.lib
    if lib and os.path.exists(lib):
        os.makedirs(os.path.join(out, "lib"), exist_ok=True)
        shutil.copy(lib, os.path.join(out, "lib", "libconvgen.so"))
        if shutil.which("strip"):  # its debug information is most of it
            subprocess.run(["strip", "--strip-debug", os.path.join(out, "lib", "libconvgen.so")],
                           check=False)
        if _folder_bytes(out) > budget:
            os.unlink(os.path.join(out, "lib", "libconvgen.so"))
            manifest["lib_left_out"] = f"the folder would exceed {args.max_mib} MiB"
    else:
        manifest["lib_left_out"] = f"no libconvgen.so at {lib}"
    tuned = False
    for case in cases:
        model, sparsity, dtype, mode = case
        if not tuned and ((sparsity, dtype) != (90, "f32") or model in PER_LAYER_MODELS):
            prepare_tuning()
            tuned = True
        stem = f"{model}-s{sparsity}"
        npz = os.path.join(models, stem + ".npz")
        relative = _case_dir(*case)
        case_path = os.path.join(out, relative)
        entry = {"model": model, "sparsity": sparsity, "dtype": dtype, "mode": mode,
                 "weights": f"models/{stem}.npz", "geometry": f"models/{stem}.json",
                 "dir": relative + "/b{batch}", "layers": _layer_count(npz[:-4] + ".json")}
        extra = ["--tiling", "dense=1"] if mode == "dense" else []
        seconds = 0.0
        # A whole case predicted not to fit is not generated: its size from
        # the same model's case already kept, scaled by the nonzeros.
        known = [c for c in manifest["cases"] if c["model"] == model and c["mode"] == mode
                 and "layer_names" not in c]
        if known and model not in PER_LAYER_MODELS:
            base = known[0]
            predicted = base["bytes"] * _nonzeros(npz) / _nonzeros(
                os.path.join(models, f"{model}-s{base['sparsity']}.npz"))
            room = budget - _folder_bytes(out) - weights_bytes_to_add(stem)
            if predicted > 1.1 * room:
                entry["predicted_bytes"] = int(predicted)
                leave_out(entry, f"predicted {predicted / 2**20:.1f} MiB (from the "
                                 f"{base['sparsity']} % {base['dtype']} case, by nonzeros), "
                                 f"over the {max(room, 0) / 2**20:.1f} MiB left of {args.max_mib}; "
                                 "not generated")
                continue
        try:
            if model in PER_LAYER_MODELS:
                # Too much code for the folder as a whole: layer by layer, the
                # fewest nonzeros first, while the folder fits.
                kept, dropped = [], []
                for name in _layers_by_nonzeros(npz):
                    if dropped:
                        dropped.append(name)
                        continue
                    try:
                        for batch in args.batches:
                            seconds += generate(os.path.join(case_path, f"b{batch}"), npz, dtype,
                                                batch, extra, [name])
                    except subprocess.TimeoutExpired:
                        _remove_layer(case_path, name)
                        dropped.append(name)
                        entry["layers_why"] = "preparation ran out of time (--max-minutes)"
                        continue
                    if _folder_bytes(out) + weights_bytes_to_add(stem) > budget:
                        _remove_layer(case_path, name)
                        dropped.append(name)
                        entry["layers_why"] = f"the folder would exceed {args.max_mib} MiB"
                        continue
                    kept.append(name)
                if not kept:
                    shutil.rmtree(case_path, ignore_errors=True)
                    leave_out(entry, entry.get("layers_why", "no layer fits"))
                    continue
                entry["layer_names"] = kept
                entry["layers"] = len(kept)
                if dropped:
                    entry["layers_left_out"] = dropped
            else:
                for batch in args.batches:
                    seconds += generate(os.path.join(case_path, f"b{batch}"), npz, dtype, batch,
                                        extra)
        except subprocess.TimeoutExpired:
            shutil.rmtree(case_path, ignore_errors=True)
            leave_out(entry, "preparation ran out of time (--max-minutes)")
            continue
        except subprocess.CalledProcessError as error:
            shutil.rmtree(case_path, ignore_errors=True)
            leave_out(entry, f"convgen exit {error.returncode}: {error.stderr.strip()[-300:]}")
            continue
        entry["generate_s"] = round(seconds, 2)
        entry["ptx_bytes"] = ptx_bytes(case_path)
        entry["bytes"] = _folder_bytes(case_path)
        entry["timed_cases"] = entry["layers"] * len(args.batches)
        if _folder_bytes(out) + weights_bytes_to_add(stem) > budget:
            shutil.rmtree(case_path)
            leave_out(entry, f"the folder would exceed {args.max_mib} MiB")
            continue
        carry_weights(stem)
        manifest["cases"].append(entry)
        note = (f" ({len(entry['layers_left_out'])} layers left out: {entry['layers_why']})"
                if entry.get("layers_left_out") else "")
        print(f"gpu-prepare: {relative}: {entry['layers']} layers x {len(args.batches)} batches, "
              f"{entry['ptx_bytes'] / 2**20:.1f} MiB of PTX to JIT-compile, {seconds:.1f} s{note}",
              flush=True)

    if not tuned:
        prepare_tuning()
    # The weights are checked on the other side against these digests.
    manifest["digests"] = {f"models/{name}": _npz_digest(os.path.join(out, "models", name))
                           for name in sorted(os.listdir(os.path.join(out, "models")))
                           if name.endswith(".npz")}
    manifest["regenerate"] = regenerate
    scratch_models.cleanup()
    manifest["timed_cases"] = sum(c["timed_cases"] for c in manifest["cases"])
    manifest["tune_cases"] = len(manifest["tune"])
    manifest["estimate_s"] = estimate(manifest)
    manifest["prepare_s"] = round(time.monotonic() - started, 1)
    _write_json(os.path.join(out, MANIFEST), manifest)
    manifest["bytes"] = _folder_bytes(out)
    _write_json(os.path.join(out, MANIFEST), manifest)
    print(f"gpu-prepare: {out}: {manifest['bytes'] / 2**20:.1f} MiB (at most {args.max_mib}), "
          f"{len(manifest['cases'])} cases, {manifest['timed_cases']} timed layer-batches, "
          f"{manifest['tune_cases']} tuning candidates, {len(manifest['left_out'])} left out; "
          f"estimated GPU run {manifest['estimate_s']['total']:.0f} s "
          f"(convbench {manifest['estimate_s']['convbench']:.0f} s)", flush=True)
    if manifest["bytes"] > budget:
        raise EvidenceError(f"{out} holds {manifest['bytes']} bytes, over {args.max_mib} MiB")
    return 0


def estimate(manifest):
    """The run's time from the number of timed cases and the PTX the driver
    compiles (SECONDS_PER_CASE, JIT_SECONDS_PER_MIB)."""
    convbench = STEP_STARTUP_S
    jit = 0.0
    for case in manifest["cases"]:
        per = SECONDS_PER_CASE["convgen"]
        if case["mode"] == "sparse":
            per += SECONDS_PER_CASE["cudnn"] + (
                SECONDS_PER_CASE["cudnn_tf32"] + SECONDS_PER_CASE["cusparse"]
                if case["dtype"] == "f32" else 0.0)
        convbench += per * case["timed_cases"]
        jit += JIT_SECONDS_PER_MIB * case.get("ptx_bytes", 0) / 2**20
    tune = STEP_STARTUP_S + sum(SECONDS_PER_CASE["convgen"] + JIT_SECONDS_PER_MIB
                                * t.get("ptx_bytes", 0) / 2**20 for t in manifest["tune"])
    fixed = sum(v for k, v in BUDGETS.items() if k not in ("convbench", "tune"))
    return {"convbench": round(convbench + jit, 1), "jit": round(jit, 1), "tune": round(tune, 1),
            "fits": convbench + jit <= BUDGETS["convbench"] and tune <= BUDGETS["tune"],
            "total": round(fixed + min(convbench + jit, BUDGETS["convbench"])
                           + min(tune, BUDGETS["tune"]), 1),
            "model": {"per_timed_case_s": SECONDS_PER_CASE, "step_startup_s": STEP_STARTUP_S,
                      "jit_s_per_mib": JIT_SECONDS_PER_MIB}}


# -------------------------------------------------------------------- run

class Run:
    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.output)
        self.prepared = os.path.abspath(args.prepared)
        self.rehearsal = bool(os.environ.get("CONVGEN_CUDA_DRIVER"))
        self.started = time.monotonic()
        self.total = float(os.environ.get("GPU_EVIDENCE_TOTAL_S", TOTAL_S))
        self.steps = []
        self.failed = False
        path = os.path.join(self.prepared, MANIFEST)
        try:
            with open(path) as f:
                self.manifest = json.load(f)
        except (OSError, ValueError) as error:
            raise EvidenceError(f"cannot read {path} ({error}): run scripts/gpu-prepare.sh here "
                                f"and carry the folder")
        os.makedirs(self.out, exist_ok=True)
        self.log = open(os.path.join(self.out, "run.log"), "a")
        self.lib = os.environ.get("CONVGEN_LIB")

    def budget(self, step):
        """The step's own budget, within what the whole run has left
        (GPU_EVIDENCE_TOTAL_S, default TOTAL_S), the report's share kept."""
        value = os.environ.get(f"GPU_EVIDENCE_BUDGET_{step.upper()}")
        own = float(value) if value else float(BUDGETS[step])
        if step == "report":
            return own
        left = self.total - (time.monotonic() - self.started) - BUDGETS["report"]
        return max(0.0, min(own, left))

    def say(self, text):
        print(f"gpu-evidence: {text}", flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def record(self, step, status, why="", seconds=0.0, **more):
        entry = {"step": step, "status": status, "why": why, "seconds": round(seconds, 1),
                 "budget_s": (float(os.environ.get(f"GPU_EVIDENCE_BUDGET_{step.upper()}")
                                    or BUDGETS[step]) if step in BUDGETS else None), **more}
        self.steps.append(entry)
        self.say(f"{step}: {status}{' (' + why + ')' if why else ''} in {seconds:.1f} s")
        if status == "failed":
            self.failed = True
        self._save()

    def _save(self):
        _write_json(os.path.join(self.out, "steps.json"), {"rehearsal": self.rehearsal,
                                                          "steps": self.steps})

    def command(self, argv, seconds, env=None, cwd=ROOT, log_name=None):
        """Runs argv in its own process group under a deadline, its output
        appended to logs/LOG_NAME; returns its exit code, or None when the
        deadline killed it (the whole group: convbench and what it started)."""
        log_path = os.path.join(self.out, "logs", log_name or "command.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "a") as log:
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                       env=env, start_new_session=True)
            try:
                return process.wait(timeout=max(1.0, seconds))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                return None

    # The steps.

    def details(self):
        t0 = time.monotonic()
        details = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds"),
                   "host": platform.node(), "cpus": os.cpu_count(),
                   "commit": _git("rev-parse", "HEAD") or self.manifest.get("commit"),
                   "commit_source": "git" if _git("rev-parse", "HEAD") else "prepared folder",
                   "dirty": (bool(_git("status", "--porcelain", "--untracked-files=no"))
                             if _git("rev-parse", "HEAD") else self.manifest.get("dirty")),
                   "prepared_commit": self.manifest.get("commit"),
                   "prepared_created": self.manifest.get("created"),
                   "rehearsal": self.rehearsal, "python": sys.version.split()[0]}
        if self.rehearsal:
            details["device"] = "convgen host CUDA driver (test double), no GPU"
            details["driver"] = os.environ["CONVGEN_CUDA_DRIVER"]
        smi = shutil.which("nvidia-smi")
        if smi:
            code = self.command([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                                 "clocks.max.mem,power.limit", "--format=csv"], 10,
                                log_name="nvidia-smi.log")
            with open(os.path.join(self.out, "logs", "nvidia-smi.log")) as f:
                details["nvidia_smi"] = "\n".join(line for line in f.read().splitlines()
                                                  if not line.startswith("$ "))
            self.command([smi, "-q"], 10, log_name="nvidia-smi-q.log")
        else:
            details["nvidia_smi"] = "not present"
        probe = ("import json, torch; print(json.dumps({'torch': torch.__version__, "
                 "'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(), "
                 "'gpu': torch.cuda.get_device_name() if torch.cuda.is_available() else None}))")
        try:
            details.update(json.loads(subprocess.run([PYTHON, "-c", probe], capture_output=True,
                                                     text=True,
                                                     timeout=self.budget("details")).stdout))
        except (ValueError, subprocess.TimeoutExpired, OSError) as error:
            details["torch"] = f"unavailable ({error})"
        if self.rehearsal:
            details["cuda"] = details["cudnn"] = "n/a (rehearsal: no GPU)"
        _write_json(os.path.join(self.out, "details.json"), details)
        self.details_ = details
        self.record("details", "ran", seconds=time.monotonic() - t0)

    def weights_path(self, relative):
        """Where a case's weights are: in the prepared folder, or, for those it
        does not carry (too big), made again under OUT/models: writing them into
        the prepared folder would push it past the 64 MiB it must stay within."""
        if relative in self.manifest.get("regenerate", {}):
            return os.path.join(self.out, relative)
        return os.path.join(self.prepared, relative)

    def inputs(self):
        """The weights not carried are made again (tools/make_layers.py, seeded),
        and every weights file is checked against the prepared digest."""
        t0 = time.monotonic()
        budget = self.budget("inputs")
        made, bad = [], []
        for relative, how in self.manifest.get("regenerate", {}).items():
            target = self.weights_path(relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                argv = [PYTHON, os.path.join(ROOT, how["command"][0])] + how["command"][1:-1] + [
                    target]
                code = self.command(argv, budget - (time.monotonic() - t0), log_name="inputs.log")
                if code != 0:
                    bad.append(f"{relative} (make_layers {'out of time' if code is None else code})")
                    continue
                made.append(relative)
            if _npz_digest(target) != how["sha256_arrays"]:
                bad.append(f"{relative} (made again, but its arrays differ from the prepared ones)")
        for relative, digest in self.manifest.get("digests", {}).items():
            if _npz_digest(os.path.join(self.prepared, relative)) != digest:
                bad.append(f"{relative} (differs from the prepared digest)")
        why = (f"made again with tools/make_layers.py: {', '.join(made)}" if made else
               "every weights file was carried") + "; inputs are drawn by convbench (torch.randn)"
        if bad:
            why = "weights unusable (their cases will fail): " + ", ".join(bad) + "; " + why
        self.record("inputs", "failed" if bad else "ran", why, time.monotonic() - t0)

    def build(self):
        t0 = time.monotonic()
        budget = self.budget("build")
        if self.lib and os.path.exists(self.lib):
            self.record("build", "skipped", f"CONVGEN_LIB names a built libconvgen.so ({self.lib})",
                        time.monotonic() - t0)
            return
        build = os.path.join(ROOT, self.args.build_dir)
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        jobs = str(os.cpu_count() or 2)
        configured = False
        for tests in ("ON", "OFF"):  # without GoogleTest, the library alone
            code = self.command(["cmake", "-S", ROOT, "-B", build, "-DCONVGEN_RUNTIME_ONLY=ON",
                                 f"-DCONVGEN_BUILD_TESTS={tests}", "-DCMAKE_BUILD_TYPE=Release"]
                                + generator, budget - (time.monotonic() - t0), log_name="build.log")
            if code == 0:
                configured = True
                break
            shutil.rmtree(build, ignore_errors=True)
        built = os.path.join(build, "src", "libconvgen.so")
        why = ""
        if configured:
            code = self.command(["cmake", "--build", build, "-j", jobs],
                                budget - (time.monotonic() - t0), log_name="build.log")
            if code == 0 and os.path.exists(built):
                self.lib = built
                self.record("build", "ran", f"runtime-only tree {self.args.build_dir}, tests {tests}",
                            time.monotonic() - t0)
                self.runtime_tests = os.path.join(build, "test", "runtime_tests")
                return
            why = "out of time" if code is None else f"build exit {code}"
        else:
            why = "cmake could not configure the runtime-only tree (see logs/build.log)"
        fallback = os.path.join(self.prepared, "lib", "libconvgen.so")
        if os.path.exists(fallback):
            self.lib = fallback
            why += "; using the prepared folder's libconvgen.so"
        self.record("build", "failed", why, time.monotonic() - t0)

    def gpu_tests(self):
        t0 = time.monotonic()
        budget = self.budget("gpu_tests")
        ran = []
        runtime_tests = getattr(self, "runtime_tests", None)
        if runtime_tests and os.path.exists(runtime_tests):
            code = self.command([runtime_tests], budget / 3, log_name="runtime_tests.log")
            ran.append(f"runtime_tests {'passed' if code == 0 else 'out of time' if code is None else 'FAILED'}")
            if code != 0:
                self.failed = True
        binary = os.environ.get("GPU_EVIDENCE_GPU_TESTS")
        if not binary:
            for candidate in ("build/test/gpu_tests",):
                if os.path.exists(os.path.join(ROOT, candidate)):
                    binary = os.path.join(ROOT, candidate)
                    break
        if not binary or not os.path.exists(binary):
            why = ("gpu_tests need LLVM 19 (they generate their layers), which this machine does "
                   "not have, and no built gpu_tests was given (GPU_EVIDENCE_GPU_TESTS); "
                   "convbench's float64 check covers the prepared layers")
            self.record("gpu_tests", "skipped", "; ".join(ran + [why]), time.monotonic() - t0)
            return
        argv = [binary]
        if os.environ.get("GPU_EVIDENCE_GPU_TESTS_FILTER"):
            argv.append("--gtest_filter=" + os.environ["GPU_EVIDENCE_GPU_TESTS_FILTER"])
        argv.append("--gtest_output=json:" + os.path.join(self.out, "gpu_tests.json"))
        code = self.command(argv, budget - (time.monotonic() - t0), log_name="gpu_tests.log")
        status = "ran" if code == 0 else "partial" if code is None else "failed"
        ran.append(" ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv[:-1])))
        why = ("out of time: the tests that ran are in logs/gpu_tests.log" if code is None else
               "passed" if code == 0 else f"exit {code} (see logs/gpu_tests.log)")
        if code == 127:
            status, why = "skipped", f"{binary} cannot start here (a library missing: LLVM 19?)"
        self.record("gpu_tests", status, "; ".join(ran + ([why] if why else [])),
                    time.monotonic() - t0)

    def _convbench_argv(self, case, batches, output, extra):
        argv = ["--weights", self.weights_path(case["weights"]),
                "--geometry", os.path.join(self.prepared, case["geometry"]),
                "--batch", ",".join(map(str, batches)),
                "--dtype", case["dtype"], "--arch", self.manifest["arch"],
                "--generated", os.path.join(self.prepared, case["dir"]),
                "-o", output] + extra
        if self.rehearsal:
            argv.append("--host-driver")
        return argv

    def _worker(self, step, plan):
        """Runs convbench over \p plan (name, argv) in one process (torch and
        the CUDA context start once) under the step's budget. Returns, per
        name, convbench's exit code, or None where it did not finish."""
        plan_path = os.path.join(self.out, f"{step}-plan.json")
        _write_json(plan_path, [{"name": n, "argv": a} for n, a in plan])
        env = dict(os.environ)
        if self.lib:
            env["CONVGEN_LIB"] = self.lib
        status_path = os.path.join(self.out, f"{step}-status.json")
        if os.path.exists(status_path):
            os.unlink(status_path)
        self.command([PYTHON, os.path.abspath(__file__), "_worker", plan_path, status_path],
                     self.budget(step), env=env, log_name=f"{step}.log")
        try:
            with open(status_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def convbench(self):
        t0 = time.monotonic()
        plan = []
        for case in self.manifest["cases"]:
            name = case["dir"].split("/b{batch}")[0].replace("gen/", "").replace("/", "-")
            names = case.get("layer_names")
            if self.args.layers:
                with open(os.path.join(self.prepared, case["geometry"])) as f:
                    present = names or [spec["name"] for spec in json.load(f)["layers"]]
                names = [n for n in self.args.layers if n in present]
                if not names:
                    continue  # none of the layers asked for is in this case
            layers = sum((["--layer", n] for n in names), []) if names is not None else ["--all"]
            extra = layers + (["--convgen-only"] if case["mode"] == "dense" else [])
            plan.append((name, self._convbench_argv(case, self.manifest["batches"],
                                                    os.path.join(self.out, "convbench", name),
                                                    extra)))
        codes = self._worker("convbench", plan)
        ran = [n for n, _ in plan if codes.get(n) in (0, 1)]
        wrong = [n for n, _ in plan if codes.get(n) == 1]
        unusable = [n for n, _ in plan if codes.get(n) not in (None, 0, 1)]
        unfinished = [n for n, _ in plan if n not in codes]
        why = []
        if wrong:
            why.append("a layer wrong or failed in: " + ", ".join(wrong))
        if unusable:
            why.append("convbench could not run: " + ", ".join(unusable) + " (logs/convbench.log)")
        if unfinished:
            why.append("out of time before finishing (what they measured is kept): "
                       + ", ".join(unfinished))
        left_out = [e for e in self.manifest.get("left_out", []) if "layer" not in e]
        partial = [c for c in self.manifest["cases"] if c.get("layers_left_out")]
        if left_out or partial:
            why.append(f"{len(left_out)} cases not prepared and {len(partial)} prepared in part "
                       "(evidence.md: Not prepared)")
        status = "failed" if (wrong or unusable) else "partial" if unfinished else "ran"
        self.record("convbench", status, "; ".join(why), time.monotonic() - t0, ran=ran,
                    unfinished=unfinished)

    def tune(self):
        t0 = time.monotonic()
        trials = self.manifest.get("tune", [])
        if not trials:
            self.record("tune", "skipped", "no tuning candidates were prepared", 0.0)
            return
        plan = []
        for trial in trials:
            name = (f"{trial['model']}-s{trial['sparsity']}-{trial['dtype']}-{trial['layer']}-"
                    f"b{trial['batch']}-c{trial['candidate']}")
            plan.append((name, self._convbench_argv(trial, [trial["batch"]],
                                                    os.path.join(self.out, "tune", name),
                                                    ["--layer", trial["layer"], "--convgen-only"])))
        codes = self._worker("tune", plan)
        unfinished = [n for n, _ in plan if n not in codes]
        why = ("candidates generated beforehand (the GPU machine has no LLVM), timed "
               "convgen-only; no cache to record in there: the report names the fastest tiling")
        if unfinished:
            why += f"; out of time before {len(unfinished)} of {len(plan)} candidates"
        self.record("tune", "partial" if unfinished else "ran", why, time.monotonic() - t0)

    def execute(self):
        self.say(REHEARSAL_FLAG if self.rehearsal else "GPU run")
        estimate_s = self.manifest.get("estimate_s", {})
        self.say(f"prepared: {len(self.manifest['cases'])} cases, "
                 f"{self.manifest.get('timed_cases')} timed layer-batches, estimated "
                 f"{estimate_s.get('total', '?')} s; budgets {BUDGETS}")
        for step in (self.details, self.inputs, self.build, self.gpu_tests, self.convbench,
                     self.tune):
            if self.budget(step.__name__) < 3:
                self.record(step.__name__, "skipped", f"no time left of the run's "
                            f"{self.total:.0f} s (GPU_EVIDENCE_TOTAL_S)")
                continue
            try:
                step()
            except Exception as error:  # a step's own bug must not lose the others
                self.record(step.__name__, "failed", f"{type(error).__name__}: {error}")
        t0 = time.monotonic()
        write_report(self.out, self.prepared)
        self.record("report", "ran", seconds=time.monotonic() - t0)
        write_report(self.out, self.prepared)  # with the report step in it
        return 1 if self.failed or not report_all_correct(self.out) else 0


# ----------------------------------------------------------------- report

def _load_results(out):
    rows, tune_rows, meta = [], [], None
    for kind, target in (("convbench", rows), ("tune", tune_rows)):
        base = os.path.join(out, kind)
        if not os.path.isdir(base):
            continue
        for name in sorted(os.listdir(base)):
            path = os.path.join(base, name, "convbench.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                report = json.load(f)
            meta = meta or report
            for row in report["layers"]:
                target.append(dict(row, case=name, weights=report["weights"],
                                   complete=report.get("complete", True)))
    return rows, tune_rows, meta


def report_all_correct(out):
    rows, tune_rows, _ = _load_results(out)
    return all(r.get("correct") for r in rows)


def _fmt(value, digits=2, suffix=""):
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def summary_rows(rows):
    """Per layer, sparsity and element type: speedup over cuDNN at each batch,
    % of FMA peak, % of bandwidth, and the speedup over convgen's dense kernel."""
    dense = {(r["layer"], r["batch"]): r for r in rows
             if r.get("case", "").endswith("-dense") and "error" not in r}
    table = {}
    for r in rows:
        if r.get("case", "").endswith("-dense"):
            continue
        sparsity = r["weights"].rsplit("-s", 1)[-1].split(".")[0]
        key = (r["layer"], sparsity, r.get("dtype", "f32"))
        entry = table.setdefault(key, {"layer": r["layer"], "sparsity": sparsity,
                                       "dtype": key[2], "batches": {}})
        d = dense.get((r["layer"], r["batch"]))
        vs_dense = (d["convgen_ms"] / r["convgen_ms"]
                    if d and "error" not in r and r.get("dtype", "f32") == d.get("dtype", "f32")
                    else None)
        entry["batches"][r["batch"]] = dict(r, speedup_dense=vs_dense)
    return list(table.values())


def write_report(out, prepared):
    rows, tune_rows, meta = _load_results(out)
    try:
        with open(os.path.join(out, "steps.json")) as f:
            steps = json.load(f)
    except (OSError, ValueError):
        steps = {"rehearsal": bool(os.environ.get("CONVGEN_CUDA_DRIVER")), "steps": []}
    try:
        with open(os.path.join(out, "details.json")) as f:
            details = json.load(f)
    except (OSError, ValueError):
        details = {}
    try:
        with open(os.path.join(prepared, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError, TypeError):
        manifest = {}
    rehearsal = steps.get("rehearsal") or (meta or {}).get("rehearsal", False)
    summary = summary_rows(rows)
    batches = sorted({r["batch"] for r in rows})
    tuning = {}
    for r in tune_rows:
        if "error" in r or not r.get("correct"):
            continue
        key = (r["layer"], r["batch"], r.get("dtype"), r["weights"])
        entry = tuning.setdefault(key, {"layer": r["layer"], "batch": r["batch"],
                                        "dtype": r.get("dtype"), "weights": r["weights"],
                                        "trials": []})
        entry["trials"].append({"tiling": r.get("tiling"), "ms": r["convgen_ms"],
                                "heuristic": r["case"].endswith("-c0")})
    for entry in tuning.values():
        best = min(entry["trials"], key=lambda t: t["ms"])
        heuristic = next((t for t in entry["trials"] if t["heuristic"]), None)
        entry["best"] = best
        entry["gain"] = heuristic["ms"] / best["ms"] if heuristic else None
    evidence = {"rehearsal": rehearsal, "flag": REHEARSAL_FLAG if rehearsal else None,
                "details": details, "steps": steps.get("steps", []),
                "prepared": {k: manifest.get(k) for k in ("commit", "created", "arch", "set",
                                                          "timed_cases", "estimate_s", "bytes",
                                                          "left_out", "regenerate")},
                "summary": summary, "rows": rows, "tuning": list(tuning.values())}
    _write_json(os.path.join(out, "evidence.json"), evidence)

    lines = ["# GPU evidence" + (" (REHEARSAL)" if rehearsal else ""), ""]
    if rehearsal:
        lines += [f"**{REHEARSAL_FLAG}.** The layers ran through libconvgen.so on the host CUDA "
                  "driver, whose stand-in computes each output with PyTorch's CPU convolution: "
                  "the correctness column checks the path, not the kernels, and every time and "
                  "ratio below (vs dense, tuning) is the host's, not a kernel's. cuDNN and "
                  "cuSPARSE are skipped (no GPU).", ""]
    device = details.get("gpu") or details.get("device") or (meta or {}).get("device", "unknown")
    lines += [f"Device: {device}. Driver: {(meta or {}).get('driver', 'n/a')}. "
              f"CUDA {details.get('cuda')}, cuDNN {details.get('cudnn')}, torch "
              f"{details.get('torch')}. Date {details.get('date_utc')}. Commit "
              f"{details.get('commit')} ({details.get('commit_source')}"
              f"{', with uncommitted changes' if details.get('dirty') else ''}); prepared at "
              f"{manifest.get('commit')} on {manifest.get('created')}, arch {manifest.get('arch')}.",
              ""]
    if details.get("nvidia_smi") and details["nvidia_smi"] != "not present":
        lines += ["```", details["nvidia_smi"], "```", ""]
    lines += ["## Steps", "", "| step | status | seconds | budget s | notes |", "|---|---|---:|---:|---|"]
    for s in steps.get("steps", []):
        lines.append(f"| {s['step']} | {s['status']} | {s['seconds']} | "
                     f"{_fmt(s.get('budget_s'), 0)} | {s.get('why') or ''} |")
    lines += ["", "## Per layer", "",
              "Speedup = cuDNN time / convgen time (fp32 with TF32 off, and TF32 = with TF32 "
              "on, PyTorch's default on Ampere and later; fp16 against cuDNN in fp16 with "
              "tensor cores); vs dense = convgen's own dense kernel / its sparse one; "
              "% FMA = useful fp32 FLOP/s (2·nnz·N·Ho·Wo / t) over the fp32 FMA peak; % BW = "
              "(input + output + weights read) bytes / t over the memory bandwidth.", ""]
    header = "| layer | sparsity | dtype |"
    rule = "|---|---:|---|"
    for b in batches:
        header += (f" vs cuDNN N={b} | vs cuDNN TF32 N={b} | vs cuSPARSE N={b} | vs dense N={b} |"
                   f" % FMA N={b} | % BW N={b} |")
        rule += "---:|---:|---:|---:|---:|---:|"
    lines += [header + " ok |", rule + "---|"]
    for e in summary:
        line = f"| {e['layer']} | {e['sparsity']} % | {e['dtype']} |"
        ok = True
        for b in batches:
            r = e["batches"].get(b)
            if r is None:
                line += " not run |" * 6
                continue
            if "error" in r:
                line += f" FAILED: {r['error'][:60]} |" + " |" * 5
                ok = False
                continue
            ok = ok and r.get("correct", False)
            line += (f" {_fmt(r.get('speedup_cudnn'))} | {_fmt(r.get('speedup_cudnn_tf32'))} | "
                     f"{_fmt(r.get('speedup_cusparse'))} | "
                     f"{_fmt(r.get('speedup_dense'))} | {_fmt(r.get('fp32_peak_pct'), 1)} | "
                     f"{_fmt(r.get('bandwidth_peak_pct'), 1)} |")
        lines.append(line + (" yes |" if ok else " NO |"))
    if not summary:
        lines.append("| (no layer was timed) |")
    if tuning:
        lines += ["", "## Tuning (candidates generated beforehand, timed convgen-only)", "",
                  "| layer | N | dtype | heuristic ms | best ms | best tiling | gain |",
                  "|---|---:|---|---:|---:|---|---:|"]
        for e in tuning.values():
            heuristic = next((t for t in e["trials"] if t["heuristic"]), None)
            lines.append(f"| {e['layer']} | {e['batch']} | {e['dtype']} | "
                         f"{_fmt(heuristic['ms'] if heuristic else None, 4)} | "
                         f"{_fmt(e['best']['ms'], 4)} | {e['best']['tiling']} | "
                         f"{_fmt(e['gain'])} |")
    left_out = manifest.get("left_out") or []
    partial = [c for c in manifest.get("cases") or [] if c.get("layers_left_out")]
    if left_out or partial:
        lines += ["", "## Not prepared", ""]
        for case in partial:
            lines.append(f"- {case['model']}-s{case['sparsity']} {case['dtype']} {case['mode']}: "
                         f"{len(case['layers_left_out'])} of "
                         f"{case['layers'] + len(case['layers_left_out'])} layers left out "
                         f"({case.get('layers_why')}): {', '.join(case['layers_left_out'])}")
        for entry in left_out:
            what = entry.get("layer") or entry.get("mode")
            lines.append(f"- {entry['model']}-s{entry['sparsity']} {entry['dtype']} {what}: "
                         f"{entry['why']}")
    lines += ["", "Raw results: convbench/*/convbench.json (one per case), tune/*/, logs/, "
              "details.json, steps.json, evidence.json."]
    with open(os.path.join(out, "evidence.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ------------------------------------------------------------------- main

def worker(plan_path, status_path):
    """Runs convbench.main on each entry of the plan, in this one process,
    writing each exit code as it comes."""
    sys.path.insert(0, HERE)
    import convbench
    with open(plan_path) as f:
        plan = json.load(f)
    codes = {}
    for entry in plan:
        print(f"=== {entry['name']}", flush=True)
        try:
            code = convbench.main(entry["argv"])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
        except Exception as error:  # noqa: BLE001 - recorded, and the plan goes on
            print(f"convbench raised {type(error).__name__}: {error}", flush=True)
            code = 3
        codes[entry["name"]] = code
        _write_json(status_path, codes)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return worker(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="generate everything the GPU run needs (here, with LLVM)")
    p.add_argument("-o", "--output", default=os.path.join(ROOT, "build-evidence", "prepared"))
    p.add_argument("--set", choices=["full", "small"], default="full")
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--batches", type=lambda t: [int(v) for v in t.split(",")], default=[1, 32])
    p.add_argument("--max-mib", type=float, default=62.0,
                   help="size limit of the folder's files (default 62: the device tool carries "
                        "64 MiB in all, directories and anything else carried included)")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--max-minutes", type=float,
                   help="stop generating after this long; what is left is listed as left out")
    p.add_argument("-j", "--jobs", type=int)
    p.add_argument("--convgen", default=os.environ.get(
        "CONVGEN_TOOL", os.path.join(ROOT, "build", "tools", "convgen")))
    p.add_argument("--lib", default=os.environ.get(
        "CONVGEN_LIB", os.path.join(ROOT, "build", "src", "libconvgen.so")))
    r = sub.add_parser("run", help="the GPU run (or, with CONVGEN_CUDA_DRIVER, its rehearsal)")
    r.add_argument("--prepared", default=os.path.join(ROOT, "build-evidence", "prepared"))
    r.add_argument("-o", "--output", default=None)
    r.add_argument("--build-dir", default="build-rt")
    r.add_argument("--layer", dest="layers", action="append", default=[],
                   help="only these layers (default: every layer of each case)")
    w = sub.add_parser("report", help="rewrite evidence.md and evidence.json from a run's folder")
    w.add_argument("output")
    w.add_argument("--prepared")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            return prepare(args)
        if args.command == "report":
            write_report(args.output, args.prepared or "")
            return 0
        if args.output is None:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            args.output = os.path.join(ROOT, "build-evidence", f"results-{stamp}")
        return Run(args).execute()
    except EvidenceError as error:
        print(f"gpu-evidence: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"gpu-evidence: {' '.join(map(str, error.cmd[:3]))}… failed with exit code "
              f"{error.returncode}: {(error.stderr or '').strip()[-400:]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
