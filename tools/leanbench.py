#!/usr/bin/env python3
"""Code shape of generated kernels: machine (SASS) instructions per fma in
the code, registers, spills, ptxas and generation seconds, per layer, arch
and batch, read from the manifests convgen writes (ptxas measures them; no
GPU needed). Writes JSON and a Markdown table.

    tools/leanbench.py --convgen build/tools/convgen \\
        --model examples/esrgan_medium_x4/esrgan_medium_x4-s90.npz \\
        --arch sm_80 --arch sm_90 --batch 1 --batch 32 -o docs/benchmarks/lean-DATE

Figures are static (from the cubin), not timings. Exit status: 0, or 2 for
bad usage; a layer convgen fails on is recorded as failed, not fatal.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genbench import _write_atomically as write_atomically  # noqa: E402  (stdlib only, no numpy)


def shape_class(geometry):
    """The issue's target classes: depthwise, 1x1, or k x k (k > 1)."""
    _, in_per_group, kernel_h, kernel_w = geometry["weight_shape"]
    if geometry["groups"] > 1 and in_per_group == 1:
        return "depthwise"
    return "1x1" if (kernel_h, kernel_w) == (1, 1) else "kxk"


def ptxas_seconds(ptxas, ptx_files, arch):
    """ptxas's wall time on the layer's PTX (every module's), run again here
    (convgen does not record its own ptxas time: the manifest stays
    reproducible)."""
    if not ptxas or not all(os.path.exists(ptx) for ptx in ptx_files):
        return None
    start = time.monotonic()
    for ptx in ptx_files:
        done = subprocess.run([ptxas, f"-arch={arch}", "-o", os.devnull, ptx], capture_output=True)
        if done.returncode != 0:
            return None
    return round(time.monotonic() - start, 2)


def run_model(convgen, ptxas_path, model, arch, batch, scratch, layers=()):
    out = os.path.join(scratch, f"{os.path.basename(model)}-{arch}-b{batch}")
    selection = [a for name in layers for a in ("--layer", name)] if layers else ["--all"]
    command = [convgen, "--weights", model, *selection, "--arch", arch, "--for-batch", str(batch),
               "-o", out, "--no-cache", "--jobs", "1"]
    done = subprocess.run(command, capture_output=True, text=True)
    rows = []
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        if not name.endswith(".json") or name == "convgen-model.json":
            continue
        with open(os.path.join(out, name)) as f:
            m = json.load(f)
        ptxas = m.get("ptxas")
        ptxas = ptxas if isinstance(ptxas, dict) else {}  # "not run": --ptx-only
        phases = {}
        rows.append({
            "model": os.path.basename(model), "layer": m["layer"], "arch": arch, "batch": batch,
            "kernel": "x".join(str(n) for n in m["geometry"]["weight_shape"][2:]),
            "groups": m["geometry"]["groups"], "mode": m["mode"],
            "shape_class": shape_class(m["geometry"]),
            "tiling": m["tiling"]["spec"], "fma": m["multiply_adds_in_code"],
            "sass": ptxas.get("sass_instructions"), "sass_per_fma": ptxas.get("sass_per_fma"),
            "registers": ptxas.get("registers"),
            "spill_bytes": (ptxas.get("spill_store_bytes") or 0) + (ptxas.get("spill_load_bytes") or 0),
            "ptxas_seconds": ptxas_seconds(ptxas_path, [os.path.join(out, module["ptx"]) for module in
                                                        m.get("modules") or [{"ptx": m["ptx"]}]],
                                           arch),
        })
    return rows, done.returncode, done.stderr


def seconds_by_layer(stderr):
    """'[3/28] F_1_1: off, 4.40 s' lines: generation seconds per layer."""
    seconds = {}
    for line in stderr.splitlines():
        if "] " in line and line.rstrip().endswith(" s") and ": " in line:
            try:
                name = line.split("] ", 1)[1].split(":", 1)[0]
                seconds[name] = float(line.rsplit(",", 1)[1].strip()[:-2])
            except (IndexError, ValueError):
                pass
    return seconds


def markdown(rows):
    """One row per layer, then the worst ratio per target class."""
    lines = ["| model | layer | kernel | arch | batch | tiling | fma | SASS | SASS/fma | regs "
             "| spill B | ptxas s | gen s |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tiling = ",".join(p for p in r["tiling"].split(",")
                          if p.split("=")[0] in ("bk", "bw", "bh", "bn", "threads", "split", "weights"))
        lines.append(
            f'| {r["model"]} | {r["layer"]} | {r["kernel"]}{" dw" if r["shape_class"] == "depthwise" else ""} '
            f'| {r["arch"]} | {r["batch"]} | {tiling}{" dense" if r["mode"] == "dense" else ""} '
            f'| {r["fma"]} | {r["sass"]} | {r["sass_per_fma"]} | {r["registers"]} '
            f'| {r["spill_bytes"]} | {r["ptxas_seconds"]} | {r["generation_seconds"]} |')
    lines += ["", "| class | arch | batch | layers | worst SASS/fma | layer | spills | dense |",
              "|---|---|---:|---:|---:|---|---:|---:|"]
    for key in sorted({(r["shape_class"], r["arch"], r["batch"]) for r in rows}):
        group = [r for r in rows if (r["shape_class"], r["arch"], r["batch"]) == key]
        measured = [r for r in group if r["sass_per_fma"] is not None]
        worst = max(measured, key=lambda r: r["sass_per_fma"]) if measured else None
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(group)} "
                     f'| {worst["sass_per_fma"] if worst else "-"} '
                     f'| {worst["model"] + " " + worst["layer"] if worst else "-"} '
                     f'| {sum(1 for r in group if r["spill_bytes"])} '
                     f'| {sum(1 for r in group if r["mode"] == "dense")} |')
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--convgen", default="build/tools/convgen")
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--arch", action="append", default=[])
    parser.add_argument("--batch", action="append", type=int, default=[])
    parser.add_argument("--ptxas", default="/usr/local/cuda/bin/ptxas",
                        help="ptxas to time on each layer's PTX ('' to skip)")
    parser.add_argument("--layer", action="append", default=[],
                        help="only this layer (repeatable; default: every layer of each model)")
    parser.add_argument("-o", "--output", required=True, help="path stem for .json and .md")
    args = parser.parse_args()
    archs = args.arch or ["sm_80"]
    batches = args.batch or [1]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.model:
            for arch in archs:
                for batch in batches:
                    found, status, stderr = run_model(args.convgen, args.ptxas, model, arch, batch, scratch,
                                                       args.layer)
                    seconds = seconds_by_layer(stderr)
                    for row in found:
                        row["generation_seconds"] = seconds.get(row["layer"])
                    rows.extend(found)
                    print(f"leanbench: {os.path.basename(model)} {arch} batch {batch}: "
                          f"{len(found)} layers (convgen exit {status})", file=sys.stderr)
    # Written whole or not at all: a temp file, then a rename.
    write_atomically(args.output + ".json", json.dumps(rows, indent=1) + "\n")
    write_atomically(args.output + ".md", markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
