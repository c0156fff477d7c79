#!/usr/bin/env python3
"""codesizebench: measure instruction-cache effects of convgen's unrolled code on a GPU.

    python3 tools/codesizebench.py -o results/codesize

convgen's code grows with the nonzeros it bakes in, so its speed may fall off
once a kernel's code outgrows the instruction caches. Two sweeps, on synthetic
magnitude-pruned 3x3 layers (28x28, 64 input channels, ReLU, bias):

1. code size at fixed work: the same number of nonzeros (--nonzeros) spread over
   more output channels (K = 32 .. 512). The useful work, 2 x nnz x N x Ho x Wo,
   stays the same; the PTX grows with the channel blocks (each has its own code).
   Reported: time, PTX bytes, and useful GFLOP/s against PTX size.
2. code sections run at once: one layer (K = 256) with 1, 2, 4 and 8 channel
   blocks per thread block (`cta-blocks`, each a different code section), the
   spatial threads per block scaled to keep 128-256 threads. Reported: time
   against the code sections per block.

Each variant is generated with `convgen --tiling`, checked against a float64
reference and timed like convbench (median of back-to-back samples). The
heuristic's code-size rule (channel blocks per block bounded by an estimated
128 KiB of code; docs/codegen.md) is what these figures are to settle.

Writes codesize.json and codesize.md to -o, with the device, driver, date and
commit. Exit codes: 0 done and every variant correct, 1 a variant was wrong,
2 cannot run here (no CUDA GPU, no libconvgen.so, bad input).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convbench  # noqa: E402  (timing, reference check, report helpers)
import make_layers  # noqa: E402  (atomic writes)

CHANNELS, SIZE = 64, 28
# Everything but the swept parameter is fixed, so that nothing else (skipped
# input channels, say, which grow with K at fixed nnz) mixes in.
FIXED = "bk=4,bw=1,bh=1,bn=1,stage=0,skip=0,weights=global,dense=0"



def ptxas_figures(manifest):
    """The manifest's ptxas figures; {} where ptxas did not run ("not run")."""
    ptxas = manifest.get("ptxas")
    return ptxas if isinstance(ptxas, dict) else {}

def fixed_nonzero_weights(rng, k, c, nonzeros):
    """OIHW 3x3 weights with exactly `nonzeros` nonzero values, at random
    positions, N(0, 1/fan-in) like make_layers."""
    import numpy as np
    total = k * c * 9
    if not 0 < nonzeros <= total:
        raise convbench.BenchError(f"{nonzeros} nonzeros do not fit a {k}x{c}x3x3 layer")
    weight = np.zeros(total, np.float32)
    positions = rng.choice(total, size=nonzeros, replace=False)
    weight[positions] = (rng.standard_normal(nonzeros) / np.sqrt(c * 9)).astype(np.float32)
    weight[positions[weight[positions] == 0]] = 1e-3  # exactly `nonzeros` nonzero
    return weight.reshape(k, c, 3, 3)


def make_model(path, layers, batch, seed):
    """Writes the .npz and sidecar of `layers`: (name, k, nonzeros)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    arrays, specs = {}, []
    for name, k, nonzeros in layers:
        arrays[f"{name}.weight"] = fixed_nonzero_weights(rng, k, CHANNELS, nonzeros)
        arrays[f"{name}.bias"] = (rng.standard_normal(k) * 0.1).astype(np.float32)
        specs.append({"name": name, "weight": f"{name}.weight", "bias": f"{name}.bias",
                      "input": [batch, CHANNELS, SIZE, SIZE], "stride": [1, 1],
                      "padding": [1, 1], "dilation": [1, 1], "groups": 1,
                      "activation": "relu", "output": [batch, k, SIZE, SIZE]})
    make_layers.write_atomically(path, lambda f: np.savez(f, **arrays))
    sidecar = {"model": "codesize", "layers": specs}
    make_layers.write_atomically(os.path.splitext(path)[0] + ".json",
                                 lambda f: f.write((json.dumps(sidecar, indent=1) + "\n").encode()))
    return specs


def variants(nonzeros):
    """(sweep, layer name, K, nonzeros, tiling)."""
    out = []
    for k in (32, 64, 128, 256, 512):
        out.append(("code_size", f"k{k}", k, nonzeros, f"{FIXED},threads=128,cta-blocks=1"))
    for blocks in (1, 2, 4, 8):
        threads = max(32, 256 // blocks)
        out.append(("sections", f"cta{blocks}", 256, nonzeros,
                    f"{FIXED},threads={threads},cta-blocks={blocks}"))
    return out


def run(args):
    try:
        import numpy as np  # noqa: F401
        import torch
        import torch.nn.functional as F
    except ImportError as error:
        raise convbench.BenchError(f"needs numpy and torch ({error})")
    if not torch.cuda.is_available():
        raise convbench.BenchError("needs a CUDA GPU (torch.cuda.is_available() is False)")
    torch.backends.cudnn.allow_tf32 = False
    from convgen_torch import load_library
    try:
        load_library()
    except OSError as error:
        raise convbench.BenchError(f"cannot load libconvgen.so ({error}): build it, or set CONVGEN_LIB")

    work = tempfile.TemporaryDirectory()
    model = os.path.join(work.name, "codesize.npz")
    chosen = variants(args.nonzeros)
    layers = {(name, k, nz) for _, name, k, nz, _ in chosen}
    specs = {s["name"]: s for s in make_model(model, sorted(layers), args.batch, args.seed)}
    npz = np.load(model)
    peaks = convbench._peaks(torch.cuda.get_device_name(), args)
    rows = []
    for sweep, name, k, nonzeros, tiling in chosen:
        directory = os.path.join(work.name, f"{sweep}-{name}")
        subprocess.run([args.convgen, "--weights", model, "--layer", name, "-o", directory,
                        "--arch", args.arch, "--tiling", tiling, "--no-cache"],
                       check=True, stdout=subprocess.DEVNULL)
        manifest_path = os.path.join(directory, name + ".json")
        result = convbench.bench_layer(torch, F, specs[name], npz, manifest_path, args.batch,
                                       args, peaks, timing_only=True)
        with open(manifest_path) as f:
            manifest = json.load(f)
        seconds = result["convgen_ms"] / 1000.0
        row = {"sweep": sweep, "layer": name, "out_channels": k, "nonzeros": nonzeros,
               "tiling": tiling, "ptx_bytes": manifest["ptx_bytes"],
               "registers": ptxas_figures(manifest).get("registers"),
               "code_sections_per_block": manifest["tiling"]["channel_blocks_per_block"],
               "ms": result["convgen_ms"], "correct": result["correct"],
               "useful_gflops": 2.0 * nonzeros * args.batch * SIZE * SIZE / seconds / 1e9}
        rows.append(row)
        print(f"{sweep:10s} {name:6s} PTX {row['ptx_bytes'] / 1024:8.1f} KiB  {row['ms']:.4f} ms  "
              f"{row['useful_gflops']:.1f} GFLOP/s  {'ok' if row['correct'] else 'WRONG'}",
              flush=True)
    report = {"device": torch.cuda.get_device_name(), "driver": convbench._driver_version(),
              "date": datetime.date.today().isoformat(), "commit": convbench._commit(),
              "batch": args.batch, "nonzeros": args.nonzeros, "arch": args.arch,
              "runs": args.runs, "rows": rows}
    os.makedirs(args.output, exist_ok=True)
    convbench._write_atomically(os.path.join(args.output, "codesize.json"),
                                json.dumps(report, indent=1) + "\n")
    convbench._write_atomically(os.path.join(args.output, "codesize.md"), markdown(report))
    work.cleanup()
    return 0 if all(r["correct"] for r in rows) else 1


def markdown(report):
    lines = [f"# codesizebench: {report['device']}", "",
             f"Driver {report['driver']}, {report['date']}, commit {report['commit']}, batch "
             f"{report['batch']}, {report['nonzeros']} nonzeros per layer, median of "
             f"{report['runs']} runs.", "",
             "| sweep | layer | K | tiling | PTX KiB | regs | sections/block | ms | useful GFLOP/s | ok |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['sweep']} | {r['layer']} | {r['out_channels']} | {r['tiling']} | "
                     f"{r['ptx_bytes'] / 1024:.1f} | {r['registers']} | "
                     f"{r['code_sections_per_block']} | {r['ms']:.4f} | "
                     f"{r['useful_gflops']:.1f} | {'yes' if r['correct'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nonzeros", type=int, default=8192,
                        help="nonzero weights of every layer (default 8192)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", default="sm_80")
    parser.add_argument("--convgen", default=os.environ.get(
        "CONVGEN_TOOL", os.path.join(convbench.ROOT, "build", "tools", "convgen")))
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--peak-gbs", type=float)
    parser.add_argument("-o", "--output", default="codesize-results")
    args = parser.parse_args(argv)
    args.tolerance = None
    args.dtype = "f32"
    if args.nonzeros < 1 or args.batch < 1 or args.runs < 20:
        parser.error("--nonzeros and --batch must be positive and --runs at least 20")
    try:
        return run(args)
    except convbench.BenchError as error:
        print(f"codesizebench: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"codesizebench: convgen failed with exit code {error.returncode}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
