#!/usr/bin/env python3
"""convbench: time convgen's generated layers on the GPU against cuDNN and cuSPARSE.

    python3 tools/convbench.py --weights bench/resnet50-s90.npz --all -o results/

For each layer it:
1. generates the layer with convgen, or reuses a directory with --generated;
2. runs it through libconvgen.so (examples/pytorch/convgen_torch.py) at each batch
   size (default 1 and 32);
3. checks the result against a float64 convolution by PyTorch, reporting the max abs
   error and that error over the output's scale (the baseline cuSPARSE output too);
4. times the layer and two baselines with CUDA events, after warm-up, as the
   median of --runs samples (default 20); a sample times back-to-back calls for
   about 1 ms and divides, so host launch latency does not count:
   - cuDNN, through torch.nn.functional.conv2d: fp32 with TF32 off, and
     cudnn.benchmark on, so that cudnnFind picks the fastest algorithm. It includes
     the bias and the activation as PyTorch runs them; convgen fuses both;
   - cuDNN again with TF32 on (fp32 layers), on tensor cores: what PyTorch runs
     by default on Ampere and later (torch.backends.cudnn.allow_tf32), so the
     baseline most users actually have;
   - cuSPARSE, through torch.sparse: CSR SpMM of the pruned weights over the
     im2col'd input (F.unfold). groups > 1 is not covered;
5. reports per layer the time, the speedup over each baseline, useful GFLOP/s
   (2 * nnz * N * Ho * Wo / t) and its share of the GPU's fp32 peak, and the
   bandwidth achieved ((input + output + weights read) bytes / t) and its share of peak.

With --dtype f16 the layers are generated with fp16 inputs and outputs (fp32
weights and accumulation) and compared with cuDNN in fp16, tensor cores allowed.

Each batch size gets its own generation (`convgen --for-batch N`): the tiling
heuristic plans for the batch. With --tune, each layer and batch first tries
the candidate tilings `convgen --list-tilings` names: each is generated,
checked against the reference and timed; the fastest correct one is recorded
in convgen's cache (`convgen --record-tuning`), where later generation for
that batch finds it, and the report shows the heuristic's time beside the
tuned one.

It writes convbench.json and convbench.md to -o, with the device, driver, CUDA
and cuDNN versions, the date and the commit. Peaks come from a table of known
GPUs, or from --peak-tflops and --peak-gbs.

--generated DIR reuses layers generated beforehand (on a machine with LLVM:
the GPU machines have none); a "{batch}" in DIR is replaced by each batch
size, for layers generated per batch (`convgen --for-batch N`). --convgen-only
times convgen's kernels alone, without the baselines (what a tuning trial does).

--host-driver is the rehearsal without a GPU (scripts/gpu-evidence.sh): the
host CUDA driver that CONVGEN_CUDA_DRIVER names (test/hostcuda) stands in for
libcuda. The layers are loaded and launched through libconvgen.so exactly as
on a GPU: module load of the very PTX, globals, weight uploads, one launch
per kernel with the manifest's grid. Each launch is checked (grid, block,
pointers inside device memory), and a stand-in then writes the layer's
output with PyTorch's CPU convolution, so the correctness check exercises
the path, not the kernels (convgen verify and the hostcuda tests run those).
cuDNN and cuSPARSE are skipped; the report is flagged as a rehearsal and its
times are host times, not GPU figures.

Exit codes: 0 every layer correct, 1 a layer disagrees with the reference or
failed on the GPU (the report records which, and the run goes on), 2 cannot run
here (no CUDA GPU, no libconvgen.so, bad input).
"""
import argparse
import ctypes
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "examples", "pytorch"))

# fp32 peak (TFLOP/s, CUDA cores) and memory bandwidth (GB/s) by device name.
# The first key found in the device name wins, so variants come first.
PEAKS = {
    "H100 80GB HBM3": (67.0, 3350.0),  # SXM
    "H100 PCIe": (51.2, 2039.0),
    "H100 NVL": (60.0, 3900.0),
    "H200 NVL": (60.0, 4800.0),
    "H200": (67.0, 4800.0),  # SXM
    "A100-SXM4-80GB": (19.5, 2039.0),
    "A100-SXM4-40GB": (19.5, 1555.0),
}


class BenchError(Exception):
    pass


def _peaks(device_name, args):
    if args.peak_tflops and args.peak_gbs:
        return args.peak_tflops, args.peak_gbs
    for key, value in PEAKS.items():
        if key in device_name:
            return (args.peak_tflops or value[0], args.peak_gbs or value[1])
    return args.peak_tflops, args.peak_gbs


def _driver_version(host=None):
    try:
        cuda = host.cuda if host else ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if cuda.cuDriverGetVersion(ctypes.byref(version)) == 0:
            return f"{version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        pass
    return "unknown"


def _commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _load_weights(npz, key):
    """The dense OIHW weights as convgen reads them (a prune pair multiplied out)."""
    if key in npz.files:
        return npz[key]
    if key + "_orig" in npz.files and key + "_mask" in npz.files:
        return npz[key + "_orig"] * npz[key + "_mask"]
    raise BenchError(f"weights '{key}' not in the .npz")


def _time_calls_ms(torch, run, calls):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def _median_ms(torch, run, runs, warmup, sample_ms=1.0):
    """Median time of one call over `runs` samples. A sample times enough
    back-to-back calls to last about `sample_ms`, then divides: one call
    timed alone from an idle GPU would count the host's launch latency,
    which dominates layers of a few microseconds."""
    for _ in range(warmup):
        run()
    single = max(_time_calls_ms(torch, run, 1), 1e-3)
    calls = max(1, min(1000, int(sample_ms / single)))
    return statistics.median(_time_calls_ms(torch, run, calls) / calls for _ in range(runs))


def _activation(torch, name):
    if name == "relu":
        return torch.relu_
    if name == "relu6":
        return lambda y: torch.clamp_(y, 0.0, 6.0)
    return lambda y: y


def _tolerance(args, half):
    """Max abs error / output scale that counts as correct: fp16 outputs
    carry one rounding to half (2^-11 relative) on top of fp32's error. By
    the layer's own dtype, so a --generated f16 layer is judged as one."""
    if args.tolerance is not None:
        return args.tolerance
    return 2e-3 if half else 1e-4


def _stem(name):
    stem = name.replace("/", "_").replace("\\", "_")
    return "_" + stem if stem.startswith(".") else stem


REHEARSAL_FLAG = "REHEARSAL: host CUDA driver, no GPU; timings are not GPU figures"
SKIPPED_ON_HOST = "cuDNN and cuSPARSE skipped: rehearsal on the host CUDA driver (no GPU)"


class HostDriver:
    """The rehearsal's device: the host CUDA driver (test/hostcuda/HostCuda.h)
    loaded as CONVGEN_CUDA_DRIVER names it, the same instance libconvgen.so
    loads. Device memory is host memory; a module's PTX runs a Python
    stand-in registered for its text."""

    LAUNCH = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                              ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                              ctypes.POINTER(ctypes.c_void_p))
    GLOBAL = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                              ctypes.POINTER(ctypes.c_size_t))

    class Module(ctypes.Structure):
        pass

    Module._fields_ = [("user", ctypes.c_void_p), ("launch", LAUNCH), ("global_", GLOBAL)]

    def __init__(self):
        path = os.environ.get("CONVGEN_CUDA_DRIVER")
        if not path:
            raise BenchError("--host-driver needs CONVGEN_CUDA_DRIVER naming the host CUDA driver "
                             "(build/test/libconvgen_hostcuda.so)")
        try:
            self.cuda = ctypes.CDLL(os.path.abspath(path))
            self.cuda.convgen_hostcuda_register
        except (OSError, AttributeError) as error:
            raise BenchError(f"CONVGEN_CUDA_DRIVER={path} is not the host CUDA driver ({error})")
        self.path = path
        c = self.cuda
        c.convgen_hostcuda_register.argtypes = [ctypes.c_char_p, ctypes.POINTER(HostDriver.Module)]
        c.convgen_hostcuda_unregister.argtypes = [ctypes.c_char_p]
        c.convgen_hostcuda_is_device_memory.argtypes = [ctypes.c_ulonglong, ctypes.c_size_t]
        c.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
        c.cuMemFree_v2.argtypes = [ctypes.c_uint64]
        c.cuMemcpyHtoD_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
        c.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
        self._check(c.cuInit(0), "cuInit")
        self._keep = []  # what the registrations point at; modules loaded keep pointing
        name = ctypes.create_string_buffer(128)
        c.cuDeviceGetName(name, 128, 0)
        self.name = name.value.decode()

    def _check(self, status, api):
        if status != 0:
            raise BenchError(f"host CUDA driver: {api} returned {status}")

    def alloc(self, nbytes):
        pointer = ctypes.c_uint64(0)
        self._check(self.cuda.cuMemAlloc_v2(ctypes.byref(pointer), max(1, nbytes)), "cuMemAlloc")
        return pointer.value

    def free(self, pointer):
        self.cuda.cuMemFree_v2(pointer)

    def upload(self, pointer, array):
        self._check(self.cuda.cuMemcpyHtoD_v2(pointer, array.ctypes.data, array.nbytes), "cuMemcpyHtoD")

    def download(self, pointer, array):
        self._check(self.cuda.cuMemcpyDtoH_v2(array.ctypes.data, pointer, array.nbytes), "cuMemcpyDtoH")

    def register(self, manifest_path, manifest, compute):
        """Makes the layer's PTX runnable: each launch is checked against the
        manifest, and the first kernel's launch runs compute(input, output,
        batch) on host addresses (the layer's whole output)."""
        import numpy as np
        directory = os.path.dirname(manifest_path)
        # One module, or one per kernel (a constant bank each); a manifest
        # from before modules names its one PTX at the top.
        modules = manifest.get("modules") or [{"ptx": manifest["ptx"], "fatbin": manifest.get("fatbin")}]
        ptx_texts = []
        for module in modules:
            path = os.path.join(directory, module["ptx"])
            if not os.path.exists(path) and module.get("fatbin"):
                # A prepared GPU folder carries the PTX inside the fatbinary only.
                ptx_texts.append(fatbinary_ptx(os.path.join(directory, module["fatbin"])) or b"")
                continue
            with open(path, "rb") as f:
                ptx_texts.append(f.read())
        text = b"\n".join(ptx_texts).decode("utf-8", errors="replace")
        globals_ = {}
        problems = []
        kernels = {k["symbol"]: k for k in manifest["kernels"]}
        first = manifest["kernels"][0]["symbol"]
        launch = manifest["launch"]
        element = 2 if manifest.get("dtype") == "f16" else 4
        g = manifest["geometry"]

        def refuse(problem):
            message = ctypes.create_string_buffer(f"{manifest['layer']}: {problem}".encode())
            problems.append(message)
            print(f"host CUDA driver: {message.value.decode()}", file=sys.stderr, flush=True)
            return ctypes.addressof(message)

        def on_launch(user, symbol, grid, block, parameters):
            try:
                symbol = symbol.decode()
                kernel = kernels.get(symbol)
                if kernel is None:
                    return refuse(f"launch of {symbol}, which the manifest does not list")
                value = lambda i, t: ctypes.cast(parameters[i], ctypes.POINTER(t))[0]
                source, weights, bias, output = (value(i, ctypes.c_uint64) for i in range(4))
                batch = value(4, ctypes.c_int32)
                groups = -(-batch // launch["grid"]["images_per_thread"])
                block_x = launch["block"][0]
                grid_x = -(-groups * launch["grid"]["x_threads_per_image_group"] // block_x)
                if (grid[0], grid[1], grid[2]) != (grid_x, kernel["grid_y"], 1) or \
                        (block[0], block[1], block[2]) != tuple(launch["block"]):
                    return refuse(f"{symbol} launched on grid {grid[0]}x{grid[1]}x{grid[2]} of "
                                  f"{block[0]}x{block[1]}x{block[2]}; the manifest says "
                                  f"{grid_x}x{kernel['grid_y']}x1 of {launch['block']}")
                _, c, h, w = g["input"]
                _, k, p, q = g["output"]
                in_bytes, out_bytes = batch * c * h * w * element, batch * k * p * q * element
                device = self.cuda.convgen_hostcuda_is_device_memory
                if not device(source, in_bytes):
                    return refuse(f"the input is not {in_bytes} bytes of device memory")
                if not device(output, out_bytes):
                    return refuse(f"the output is not {out_bytes} bytes of device memory")
                if kernel["weights"]["count"] and not device(weights, 4 * kernel["weights"]["count"]):
                    return refuse(f"the weights of {symbol} are not device memory")
                if g.get("bias") and not device(bias, 4 * k):
                    return refuse("the bias is not device memory")
                if symbol == first:
                    compute(source, output, batch)
                return None
            except Exception as error:  # a Python error must not unwind through C
                return refuse(f"stand-in failed: {error!r}")

        def on_global(user, symbol, nbytes):
            symbol = symbol.decode()
            if symbol not in globals_:
                found = re.search(r"\.(const|global)\s+(\.align\s+\d+\s+)?\.([bfsu])(8|16|32|64)\s+"
                                  + re.escape(symbol) + r"\[(\d+)\]", text)
                if not found:
                    return None
                globals_[symbol] = np.zeros(int(found.group(5)) * int(found.group(4)) // 8, np.uint8)
            nbytes[0] = globals_[symbol].nbytes
            return globals_[symbol].ctypes.data

        callbacks = (HostDriver.LAUNCH(on_launch), HostDriver.GLOBAL(on_global))
        module = HostDriver.Module(None, *callbacks)
        # Registered again for each load: another layer may have the same PTX
        # (the code) with other weights; a module keeps the code it loaded with.
        self._keep.append((callbacks, module, globals_, problems))
        for files, ptx in zip(modules, ptx_texts):
            self.cuda.convgen_hostcuda_register(ptx, ctypes.byref(module))
            if files.get("fatbin"):
                # The double finds a fatbinary's host code by the PTX inside
                # it, which the fatbinary tool stripped of comments and indentation.
                inner = fatbinary_ptx(os.path.join(directory, files["fatbin"]))
                if inner is not None:
                    self.cuda.convgen_hostcuda_register(inner, ctypes.byref(module))


def fatbinary_ptx(path):
    """The PTX inside a fatbinary (runtime/FatbinaryImage.h has the layout),
    as bytes without its NUL padding; None if it holds none."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    magic, _, header, body = struct.unpack_from("<IHHQ", data, 0)
    if magic != 0xBA55ED50:
        raise ValueError(f"{path}: not a fatbinary")
    at, end = header, header + body
    while at < end:
        kind, _, entry_header, size = struct.unpack_from("<HHIQ", data, at)
        if kind == 1:
            return data[at + entry_header:at + entry_header + size].split(b"\0")[0]
        at += entry_header + size
    return None


_HOST = []


def _host_driver():
    """One HostDriver per process: its registrations (and the callbacks they
    point at) must outlive every run in it (tools/gpu_evidence.py runs many)."""
    if not _HOST:
        _HOST.append(HostDriver())
    return _HOST[0]


def _host_median_ms(run, runs, warmup, sample_ms=1.0):
    """_median_ms with the host's clock: the host driver runs every launch
    to completion before it returns."""
    import time
    for _ in range(warmup):
        run()
    start = time.perf_counter()
    run()
    single = max((time.perf_counter() - start) * 1000.0, 1e-3)
    calls = max(1, min(1000, int(sample_ms / single)))
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        samples.append((time.perf_counter() - start) * 1000.0 / calls)
    return statistics.median(samples)


def _read_layer(torch, spec, npz, manifest_path):
    with open(manifest_path) as f:
        manifest = json.load(f)
    weight = torch.from_numpy(_load_weights(npz, spec["weight"]).astype("float32"))
    bias = (torch.from_numpy(_load_weights(npz, spec["bias"]).astype("float32"))
            if spec.get("bias") else None)
    nonzeros = int((weight != 0).sum().item())
    if nonzeros != manifest["nonzeros"]:
        raise BenchError(f"{manifest_path} was generated from other weights ({manifest['nonzeros']} "
                         f"nonzeros, the .npz has {nonzeros}): regenerate it")
    return manifest, weight, bias


def _base_result(spec, manifest, batch):
    return {"layer": spec["name"], "batch": batch, "mode": manifest["mode"],
            "dtype": manifest.get("dtype", "f32"),
            "tiling": manifest["tiling"].get("spec"),
            "tiling_source": manifest["tiling"].get("source"),
            "kernels": len(manifest["kernels"]), "nonzeros": manifest["nonzeros"],
            "weights_total": manifest["weights_total"]}


def _error_of(got, expected):
    error = (got.double() - expected).abs()
    scale = max(expected.abs().max().item(), 1.0)
    return error.max().item(), scale


def _add_rates(result, manifest, batch, peaks):
    """Speedups, useful GFLOP/s and bandwidth, and their shares of peak."""
    g = manifest["geometry"]
    _, c, h, w = g["input"]
    _, k, p, q = g["output"]
    half = manifest.get("dtype") == "f16"
    seconds = result["convgen_ms"] / 1000.0
    useful_flops = 2.0 * manifest["nonzeros"] * batch * p * q
    # Input and output once each, and the weights the kernels read (the
    # packed nonzeros, or the whole tensor when dense) with the bias.
    weight_floats = manifest["weights"]["count"] + manifest["weights"]["bias_count"]
    element = 2.0 if half else 4.0
    moved_bytes = element * batch * (c * h * w + k * p * q) + 4.0 * weight_floats
    result["speedup_cudnn"] = (result["cudnn_ms"] / result["convgen_ms"]
                               if result.get("cudnn_ms") else None)
    result["speedup_cudnn_tf32"] = (result["cudnn_tf32_ms"] / result["convgen_ms"]
                                    if result.get("cudnn_tf32_ms") else None)
    result["speedup_cusparse"] = (result["cusparse_ms"] / result["convgen_ms"]
                                  if result.get("cusparse_ms") else None)
    result["useful_gflops"] = useful_flops / seconds / 1e9
    result["bandwidth_gbs"] = moved_bytes / seconds / 1e9
    tflops, gbs = peaks
    result["fp32_peak_pct"] = 100.0 * result["useful_gflops"] / (tflops * 1000.0) if tflops else None
    result["bandwidth_peak_pct"] = 100.0 * result["bandwidth_gbs"] / gbs if gbs else None
    return result


def bench_layer_host(torch, F, host, spec, npz, manifest_path, batch, args, peaks,
                     timing_only=False):
    """bench_layer's rehearsal on the host CUDA driver (--host-driver)."""
    import numpy as np
    from convgen_torch import load_library

    manifest, weight, bias = _read_layer(torch, spec, npz, manifest_path)
    g = manifest["geometry"]
    stride, padding, dilation, groups = g["stride"], g["padding"], g["dilation"], g["groups"]
    activate = _activation(torch, g["activation"])
    _, c, h, w = g["input"]
    _, k, p, q = g["output"]
    half = manifest.get("dtype") == "f16"
    dtype = np.float16 if half else np.float32
    ctype = ctypes.c_uint16 if half else ctypes.c_float

    def compute(source, output, images):
        # The stand-in for the kernels: PyTorch's CPU convolution of what the
        # input's device memory holds, written to the output's.
        x_in = np.frombuffer((ctype * (images * c * h * w)).from_address(source), dtype=dtype)
        x_in = torch.from_numpy(x_in.astype(np.float32).reshape(images, c, h, w))
        with torch.no_grad():
            y = activate(F.conv2d(x_in, weight, bias, stride, padding, dilation, groups))
        out = np.frombuffer((ctype * (images * k * p * q)).from_address(output), dtype=dtype)
        out[:] = y.numpy().ravel().astype(dtype)

    host.register(manifest_path, manifest, compute)
    lib = load_library()
    handle = ctypes.c_void_p()

    def check(status):
        if status != 0:
            from convgen_torch import ConvgenError
            raise ConvgenError(lib.convgen_last_error().decode(errors="replace"))

    import time
    started = time.perf_counter()
    check(lib.convgen_layer_load(os.fsencode(manifest_path), 0, ctypes.byref(handle)))
    result = _base_result(spec, manifest, batch)
    result["load_ms"] = (time.perf_counter() - started) * 1000.0
    x = torch.randn(batch, c, h, w)
    x_host = x.numpy().astype(dtype)
    out_host = np.zeros((batch, k, p, q), dtype)
    source, output = host.alloc(x_host.nbytes), host.alloc(out_host.nbytes)
    try:
        host.upload(source, x_host)
        check(lib.convgen_layer_launch(handle, source, output, batch, 0))
        host.download(output, out_host)
        with torch.no_grad():
            expected = activate(F.conv2d(torch.from_numpy(x_host.astype(np.float64)),
                                         weight.double(), None if bias is None else bias.double(),
                                         stride, padding, dilation, groups))
        result["max_abs_error"], scale = _error_of(torch.from_numpy(out_host.astype(np.float64)),
                                                   expected)
        result["max_scaled_error"] = result["max_abs_error"] / scale
        result["correct"] = bool(result["max_abs_error"] <= _tolerance(args, half) * scale)
        result["convgen_ms"] = _host_median_ms(
            lambda: check(lib.convgen_layer_launch(handle, source, output, batch, 0)),
            args.runs, args.warmup)
    finally:
        host.free(source)
        host.free(output)
        lib.convgen_layer_free(handle)
    if timing_only:
        return result
    result["cudnn_ms"] = None
    result["cusparse_ms"] = None
    result["cusparse_correct"] = None
    result["baselines"] = SKIPPED_ON_HOST
    return _add_rates(result, manifest, batch, peaks)


def bench_layer(torch, F, spec, npz, manifest_path, batch, args, peaks, timing_only=False):
    if getattr(args, "host", None) is not None:
        return bench_layer_host(torch, F, args.host, spec, npz, manifest_path, batch, args, peaks,
                                timing_only)
    from convgen_torch import ConvgenConv2d

    manifest, weight, bias = _read_layer(torch, spec, npz, manifest_path)
    weight, bias = weight.cuda(), None if bias is None else bias.cuda()
    g = manifest["geometry"]
    stride, padding, dilation, groups = g["stride"], g["padding"], g["dilation"], g["groups"]
    activate = _activation(torch, g["activation"])
    _, c, h, w = g["input"]
    _, k, p, q = g["output"]
    half = manifest.get("dtype") == "f16"
    x = torch.randn(batch, c, h, w, device="cuda")
    if half:
        x = x.half()
    weight_cudnn = weight.half() if half else weight
    bias_cudnn = None if bias is None else (bias.half() if half else bias)

    import time
    torch.cuda.synchronize()
    started = time.perf_counter()
    layer = ConvgenConv2d(manifest_path)  # the module load: the driver JIT-compiles the PTX
    load_ms = (time.perf_counter() - started) * 1000.0

    def cudnn():
        # fp16: cuDNN on half weights, with tensor cores (its default).
        return activate(F.conv2d(x, weight_cudnn, bias_cudnn, stride, padding, dilation, groups))

    result = _base_result(spec, manifest, batch)
    result["load_ms"] = load_ms

    def reference():
        # float64, so that the check does not depend on the algorithm
        # cudnn.benchmark picks (FFT and Winograd lose precision in fp32).
        return activate(F.conv2d(x.double(), weight.double(),
                                 None if bias is None else bias.double(),
                                 stride, padding, dilation, groups))

    with torch.no_grad():
        expected, got = reference(), layer(x)
        torch.cuda.synchronize()
        result["max_abs_error"], scale = _error_of(got, expected)
        # Relative to the output's scale: per-output relative errors blow up
        # on outputs near zero (after ReLU), and mean nothing there.
        result["max_scaled_error"] = result["max_abs_error"] / scale
        result["correct"] = bool(result["max_abs_error"] <= _tolerance(args, half) * scale)

        # Timed through the C API directly, on preallocated tensors: the
        # module's shape checks and allocation are host work a deployment
        # does not repeat per call.
        out = torch.empty_like(got)
        stream = torch.cuda.current_stream().cuda_stream

        def convgen():
            layer._check(layer._lib.convgen_layer_launch(layer._handle, x.data_ptr(), out.data_ptr(),
                                                         batch, stream))
        result["convgen_ms"] = _median_ms(torch, convgen, args.runs, args.warmup)
        if timing_only:
            return result
        if args.convgen_only:
            result["cudnn_ms"] = result["cusparse_ms"] = result["cusparse_correct"] = None
            result["baselines"] = "skipped: --convgen-only"
            return _add_rates(result, manifest, batch, peaks)
        result["cudnn_ms"] = _median_ms(torch, cudnn, args.runs, args.warmup)
        result["cudnn_tf32_ms"] = None
        if not half:
            # PyTorch's default on Ampere and later: TF32 tensor cores, with
            # cudnn.benchmark finding the algorithm again under it.
            torch.backends.cudnn.allow_tf32 = True
            try:
                result["cudnn_tf32_ms"] = _median_ms(torch, cudnn, args.runs, args.warmup)
            finally:
                torch.backends.cudnn.allow_tf32 = False
        if groups == 1 and not half:
            dense = weight.reshape(k, -1)
            csr = dense.to_sparse_csr()

            def cusparse():
                columns = F.unfold(x, weight.shape[2:], dilation, padding, stride)  # N, CRS, PQ
                flat = columns.permute(1, 0, 2).reshape(columns.shape[1], -1)
                y = torch.sparse.mm(csr, flat).reshape(k, batch, p * q).permute(1, 0, 2)
                y = y.reshape(batch, k, p, q)
                if bias is not None:
                    y = y + bias.view(1, -1, 1, 1)
                return activate(y)

            # The baseline must be right too, or its time means nothing.
            cusparse_error, _ = _error_of(cusparse(), expected)
            result["cusparse_correct"] = bool(cusparse_error <= _tolerance(args, half) * scale)
            result["cusparse_ms"] = _median_ms(torch, cusparse, args.runs, args.warmup)
        else:
            result["cusparse_ms"] = None
            result["cusparse_correct"] = None

    return _add_rates(result, manifest, batch, peaks)


def _markdown(report):
    lines = [f"# convbench: {report['device']}", ""]
    if report.get("rehearsal"):
        lines += [f"**{REHEARSAL_FLAG}.** {report.get('baselines', SKIPPED_ON_HOST)}.", ""]
    elif report.get("baselines"):
        lines += [f"Baselines: {report['baselines']}.", ""]
    lines += [f"Driver {report['driver']}, CUDA {report['cuda']}, cuDNN {report['cudnn']}, "
             f"{report['date']}, commit {report['commit']}. Median of {report['runs']} runs "
             f"after {report['warmup']} warm-up runs. Weights: {report['weights']}.", "",
             f"Activations {report.get('dtype', 'f32')}.", "",
             
             "| layer | N | mode | kernels | tiling (source) | convgen ms | heuristic ms | "
             "cuDNN ms | speedup | cuDNN TF32 ms | speedup | cuSPARSE ms | "
             "speedup | useful GFLOP/s | % fp32 peak | GB/s | % bandwidth | max abs err | ok |",
             "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]

    def fmt(value, digits=3):
        return "n/a" if value is None else f"{value:.{digits}f}"
    for r in report["layers"]:
        if "error" in r:
            lines.append(f"| {r['layer']} | {r['batch']} | FAILED: {r['error']} |" + " |" * 16)
            continue
        lines.append(
            f"| {r['layer']} | {r['batch']} | {r['mode']} | {r['kernels']} | "
            f"{r.get('tiling')} ({r.get('tiling_source')}) | {fmt(r['convgen_ms'])} | "
            f"{fmt(r.get('heuristic_ms'))} | "
            f"{fmt(r['cudnn_ms'])} | {fmt(r['speedup_cudnn'], 2)} | "
            f"{fmt(r.get('cudnn_tf32_ms'))} | {fmt(r.get('speedup_cudnn_tf32'), 2)} | "
            f"{fmt(r['cusparse_ms'])} | "
            f"{fmt(r['speedup_cusparse'], 2)} | {fmt(r['useful_gflops'], 1)} | "
            f"{fmt(r['fp32_peak_pct'], 1)} | {fmt(r['bandwidth_gbs'], 1)} | "
            f"{fmt(r['bandwidth_peak_pct'], 1)} | {r['max_abs_error']:.2e} | "
            f"{'yes' if r['correct'] else 'NO'} |")
    for batch, geomean in report["geomean_speedup_cudnn"].items():
        lines.append("")
        lines.append(f"Geomean speedup over cuDNN at batch {batch}: {geomean:.2f}x")
    for batch, geomean in report.get("geomean_speedup_cudnn_tf32", {}).items():
        lines.append("")
        lines.append(f"Geomean speedup over cuDNN with TF32 (PyTorch's default) at batch {batch}: "
                     f"{geomean:.2f}x")
    for batch, gain in report.get("geomean_tuning_gain", {}).items():
        lines.append("")
        lines.append(f"Geomean gain of tuning over the heuristic at batch {batch}: {gain:.2f}x")
    return "\n".join(lines) + "\n"


def _write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes it 0600
    os.replace(tmp.name, path)


def tune_layer(torch, F, spec, npz, batch, args, peaks, base, scratch, directory, generate,
               manifest_in):
    """Tries `convgen --list-tilings`'s candidates for one layer at one batch,
    records the fastest correct one, and regenerates the layer with it into
    \p directory. Returns what the report shows beside the tuned time."""
    listing = subprocess.run(base + ["--list-tilings", "--layer", spec["name"],
                                     "--for-batch", str(batch)],
                             check=True, capture_output=True, text=True).stdout
    candidates = [line.split("\t")[1] for line in listing.splitlines()
                  if line and not line.startswith("#")]
    trials = []
    for index, tiling in enumerate(candidates):
        trial_dir = os.path.join(scratch, f"tune-{_stem(spec['name'])}-b{batch}-{index}")
        try:
            generate(trial_dir, batch, [spec["name"]], tiling)
            measured = bench_layer(torch, F, spec, npz, manifest_in(trial_dir, spec), batch, args,
                                   peaks, timing_only=True)
        except subprocess.CalledProcessError as error:
            trials.append({"tiling": tiling, "error": f"convgen exit {error.returncode}"})
            continue
        except Exception as error:  # a launch failure: this candidate is out
            trials.append({"tiling": tiling, "error": str(error)})
            continue
        trials.append({"tiling": tiling, "ms": measured["convgen_ms"],
                       "correct": measured["correct"]})
        print(f"  tune {spec['name']} N={batch} {tiling}: {measured['convgen_ms']:.4f} ms "
              f"{'ok' if measured['correct'] else 'WRONG'}", flush=True)
    good = [t for t in trials if t.get("correct")]
    if not good:
        raise BenchError(f"layer {spec['name']} batch {batch}: no candidate tiling ran correctly")
    best = min(good, key=lambda t: t["ms"])
    heuristic = trials[0] if trials and trials[0].get("correct") else None
    measurements = {"batch": batch, "best_ms": best["ms"],
                    "heuristic_ms": heuristic["ms"] if heuristic else None,
                    "device": args.device_name, "trials": trials}
    subprocess.run(base + ["--record-tuning", json.dumps(measurements), "--tiling", best["tiling"],
                           "--layer", spec["name"], "--for-batch", str(batch)],
                   check=True, stdout=subprocess.DEVNULL)
    generate(directory, batch, [spec["name"]])  # picks the record up
    return {"heuristic_ms": heuristic["ms"] if heuristic else None,
            "heuristic_tiling": candidates[0], "tuning_trials": trials}


def run(args):
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
    except ImportError as error:
        raise BenchError(f"needs numpy and torch ({error})")
    args.host = _host_driver() if args.host_driver else None
    if args.host is None and not torch.cuda.is_available():
        raise BenchError("needs a CUDA GPU (torch.cuda.is_available() is False)")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True

    sidecar_path = args.geometry or os.path.splitext(args.weights)[0] + ".json"
    try:
        with open(sidecar_path) as f:
            sidecar = json.load(f)
    except (OSError, ValueError) as error:
        raise BenchError(f"cannot read the sidecar {sidecar_path}: {error}")
    specs = sidecar["layers"] if args.all else [s for s in sidecar["layers"] if s["name"] in args.layer]
    missing = set(args.layer or []) - {s["name"] for s in specs}
    if missing:
        raise BenchError(f"no layer {', '.join(sorted(missing))} in {sidecar_path}")
    if not specs:
        raise BenchError("nothing to do: give --layer NAME or --all")
    npz = np.load(args.weights)

    from convgen_torch import ConvgenError, load_library
    try:
        load_library()  # fails early, before any layer, if libconvgen.so is missing
    except OSError as error:
        raise BenchError(f"cannot load libconvgen.so ({error}): build it, or set CONVGEN_LIB")
    work = tempfile.TemporaryDirectory()
    base = [args.convgen, "--weights", args.weights, "--geometry", sidecar_path,
            "--arch", args.arch, "--dtype", args.dtype]

    def generate(directory, batch, names, tiling=None):
        command = base + ["-o", directory, "--for-batch", str(batch)]
        if tiling:
            command += ["--tiling", tiling]
        for name in names:
            command += ["--layer", name]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    def manifest_in(directory, spec):
        path = os.path.join(directory, _stem(spec["name"]) + ".json")
        if not os.path.exists(path):
            raise BenchError(f"no {path}: generate the layer, or leave out --generated")
        return path

    # One generation per batch: the tiling heuristic plans for the batch
    # (and tuned tilings are recorded per batch).
    directories = {}
    for batch in args.batch:
        if args.generated:
            directories[batch] = args.generated.replace("{batch}", str(batch))
        else:
            directories[batch] = os.path.join(work.name, f"b{batch}")
            generate(directories[batch], batch, [spec["name"] for spec in specs])

    device = args.host.name if args.host else torch.cuda.get_device_name()
    args.device_name = device
    peaks = _peaks(device, args)
    results = []

    def write_report():
        """After every layer, so that a run stopped part way (a time budget)
        keeps what it measured."""
        geomeans, geomeans_tf32, gains = {}, {}, {}
        for batch in args.batch:
            tuned = [r["heuristic_ms"] / r["convgen_ms"] for r in results
                     if r["batch"] == batch and r.get("heuristic_ms") and "error" not in r]
            if tuned:
                gains[str(batch)] = statistics.geometric_mean(tuned)
            speedups = [r["speedup_cudnn"] for r in results
                        if r["batch"] == batch and "error" not in r and r.get("speedup_cudnn")]
            if speedups:
                geomeans[str(batch)] = statistics.geometric_mean(speedups)
            tf32 = [r["speedup_cudnn_tf32"] for r in results
                    if r["batch"] == batch and "error" not in r and r.get("speedup_cudnn_tf32")]
            if tf32:
                geomeans_tf32[str(batch)] = statistics.geometric_mean(tf32)
        rehearsal = args.host is not None
        report = {"device": device, "driver": _driver_version(args.host),
                  "cuda": "n/a (rehearsal)" if rehearsal else torch.version.cuda,
                  "cudnn": "n/a (rehearsal)" if rehearsal else torch.backends.cudnn.version(),
                  "torch": torch.__version__, "rehearsal": rehearsal,
                  "baselines": (SKIPPED_ON_HOST if rehearsal else
                                "skipped: --convgen-only" if args.convgen_only else
                                "cuDNN (fp32 with TF32 off, and again with TF32 on, PyTorch's "
                                "default; fp16 with tensor cores) and cuSPARSE "
                                "(fp32, groups 1)"),
                  "date": datetime.date.today().isoformat(), "commit": _commit(),
                  "weights": os.path.basename(args.weights), "arch": args.arch,
                  "dtype": args.dtype, "tuned": bool(args.tune),
                  "generated": args.generated,
                  "runs": args.runs, "warmup": args.warmup,
                  "peak_fp32_tflops": peaks[0], "peak_bandwidth_gbs": peaks[1],
                  "layers": results, "geomean_speedup_cudnn": geomeans,
                  "geomean_speedup_cudnn_tf32": geomeans_tf32,
                  "geomean_tuning_gain": gains,
                  "complete": len(results) == len(specs) * len(args.batch)}
        os.makedirs(args.output, exist_ok=True)
        _write_atomically(os.path.join(args.output, "convbench.json"),
                          json.dumps(report, indent=1) + "\n")
        _write_atomically(os.path.join(args.output, "convbench.md"), _markdown(report))
    for spec in specs:
        for batch in args.batch:
            heuristic = None
            try:
                if args.tune:
                    heuristic = tune_layer(torch, F, spec, npz, batch, args, peaks, base, work.name,
                                           directories[batch], generate, manifest_in)
                result = bench_layer(torch, F, spec, npz, manifest_in(directories[batch], spec),
                                     batch, args, peaks)
            except (ConvgenError, BenchError, subprocess.CalledProcessError) as error:
                # A driver or launch failure, no correct candidate, or convgen
                # failing on this layer: recorded, and the run goes on.
                if isinstance(error, subprocess.CalledProcessError):
                    error = f"convgen exit code {error.returncode}"
                results.append({"layer": spec["name"], "batch": batch, "error": str(error),
                                "correct": False})
                print(f"{spec['name']:28s} N={batch:<3d} FAILED: {error}", flush=True)
                write_report()
                continue
            if heuristic:
                result.update(heuristic)
            results.append(result)
            cudnn = (f"cuDNN {result['cudnn_ms']:.3f} ms ({result['speedup_cudnn']:.2f}x)"
                     if result.get("cudnn_ms") else "cuDNN skipped")
            print(f"{result['layer']:28s} N={batch:<3d} convgen {result['convgen_ms']:.3f} ms  "
                  f"{cudnn}  "
                  f"max abs err {result['max_abs_error']:.2e}  "
                  f"{'ok' if result['correct'] else 'WRONG'}", flush=True)
            write_report()
    write_report()
    work.cleanup()
    return 0 if all(r["correct"] for r in results) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="pruned .npz")
    parser.add_argument("--geometry", help="sidecar (default: the .npz path with .json)")
    parser.add_argument("--layer", action="append", default=[], help="a layer; may be repeated")
    parser.add_argument("--all", action="store_true", help="every layer")
    parser.add_argument("--batch", type=lambda t: [int(v) for v in t.split(",")], default=[1, 32],
                        help="batch sizes, comma-separated (default 1,32)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=None,
                        help="max abs error / output scale that counts as correct "
                             "(default 1e-4, 2e-3 with --dtype f16)")
    parser.add_argument("--dtype", choices=["f32", "f16"], default="f32",
                        help="activation type of the generated layers and of cuDNN")
    parser.add_argument("--tune", action="store_true",
                        help="try the candidate tilings per layer and batch, record the "
                             "fastest correct one in convgen's cache, and report it beside "
                             "the heuristic's")
    parser.add_argument("--arch", default="sm_80")
    parser.add_argument("--generated", help="reuse layers generated into this directory "
                                            "(\"{batch}\" in it: the batch size)")
    parser.add_argument("--convgen-only", action="store_true",
                        help="time convgen's kernels alone, without cuDNN and cuSPARSE")
    parser.add_argument("--host-driver", action="store_true",
                        help="rehearsal without a GPU: run on the host CUDA driver that "
                             "CONVGEN_CUDA_DRIVER names; no baselines, host times")
    parser.add_argument("--convgen", default=os.environ.get(
        "CONVGEN_TOOL", os.path.join(ROOT, "build", "tools", "convgen")))
    parser.add_argument("--peak-tflops", type=float, help="fp32 peak of this GPU")
    parser.add_argument("--peak-gbs", type=float, help="memory bandwidth of this GPU")
    parser.add_argument("-o", "--output", default="convbench-results")
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error("--runs must be at least 20")
    if args.tune and args.generated:
        parser.error("--tune generates its candidates itself: leave out --generated")
    try:
        return run(args)
    except BenchError as error:
        print(f"convbench: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"convbench: convgen failed with exit code {error.returncode}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
