"""convgen for PyTorch models: export, generate, load (and reload).

    import convgen.torch
    convgen.torch.export(model, x, "work/model.onnx")      # or .npz (+ sidecar)
    convgen.torch.generate("work/model.onnx", "work/generated")
    model, table = convgen.torch.load(model, "work/generated", x)
    print(table)

`load` matches every nn.Conv2d of the model to a generated layer: by name
(the generated layer's weight source is the module's parameter), then by
geometry, fused activation and a SHA-256 of the weights the export wrote
(`model_weights_sha256` in the layer manifest), so a layer whose weights
changed after generation is refused as stale. With policy "auto" (the
default) each matching layer is then timed on the GPU against PyTorch's own
convolution (the conv and the BatchNorm folded into it) at the model's input
shape, with PyTorch's current TF32 setting, and swapped only where convgen is
faster. Timings are cached per device, shape, settings and kernel, so a second
load does not time again. "always" and "never" force the choice.

A swapped layer stays an nn.Conv2d with its parameters and state_dict keys:
only its forward changes. It runs convgen's kernels in eval mode on CUDA
tensors of the input shape and type it was generated for, and PyTorch's
convolution otherwise (training, CPU, another shape); the BatchNorm folded into
it then passes its output through. The ReLU after a layer generated with a
fused ReLU still runs: applying it twice changes nothing. A generated
activation the model does not apply right after the conv is refused.

After the next pruning round: export, generate into the same folder, then
`convgen.torch.reload(model)` (or `model.convgen_reload()`), which reloads
only the changed layers through the runtime and matches and decides again.
"""
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import types

import torch
import torch.nn as nn

from . import ConvgenError, find_tool
from .exporter import ExportError
from .exporter import export as _export_files
from .exporter import _trace, fused_after, layer_tensors
from .policy import POLICIES, TimingCache, choose
from .runtime import ModelRuntime

MODEL_MANIFEST = "convgen-model.json"


# ---------------------------------------------------------------- export, generate

def export(model, example_input, path, fold_bn=True, compressed=False, model_name=None):
    """Writes the model's convolutions as convgen input. A path ending in .onnx
    gets the whole network as ONNX, with the .npz and its sidecar beside it;
    any other path gets the .npz and its sidecar. Returns `path`.

    Prune the model itself first (torch.nn.utils.prune, or your own): `load`
    checks the weights the model holds against the ones exported."""
    onnx = str(path).lower().endswith(".onnx")
    npz = os.path.splitext(path)[0] + ".npz" if onnx else path
    with disabled(model):
        _export_files(model, example_input, npz, fold_bn=fold_bn, compressed=compressed,
                      model_name=model_name, onnx=onnx)
    return path


def generate(weights, output_dir, arch=None, ptx_only=False, cache_dir=None, extra_args=(),
             tool=None):
    """Runs `convgen --weights WEIGHTS --all -o OUTPUT_DIR` (every layer, and
    the model manifest load needs). Returns the finished process: .stdout is
    the summary table, .stderr the progress log. Raises ConvgenError with the
    tool's error line if it fails.

    arch: a list or "sm_80,sm_90"; by default, where PyTorch sees a CUDA GPU
    convgen supports, that GPU's arch, so that the driver loads its cubin
    without compiling; else convgen's default."""
    command = [tool or find_tool(), "--weights", str(weights), "--all", "-o", str(output_dir)]
    if arch is None and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        if 70 <= 10 * major + minor <= 90:  # convgen's range (sm_70 .. sm_90)
            arch = f"sm_{major}{minor}"
    if arch:
        command += ["--arch", arch if isinstance(arch, str) else ",".join(arch)]
    if ptx_only:
        command.append("--ptx-only")
    if cache_dir:
        command += ["--cache-dir", str(cache_dir)]
    command += list(extra_args)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "error" in line] or \
            result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
        raise ConvgenError(lines[-1])
    return result


# ---------------------------------------------------------------- the swap table

class SwapRow:
    """One nn.Conv2d of the model: whether it runs convgen's kernels, and why."""

    def __init__(self, module, layer=None, swapped=False, reason="", convgen_ms=None,
                 torch_ms=None, timing=""):
        self.module, self.layer, self.swapped, self.reason = module, layer, swapped, reason
        self.convgen_ms, self.torch_ms, self.timing = convgen_ms, torch_ms, timing

    def as_dict(self):
        return dict(vars(self))


class SwapTable(list):
    """The rows of a load, in the model's order; str() is a text table."""

    def swapped(self):
        return [row for row in self if row.swapped]

    def __str__(self):
        def ms(value):
            return "-" if value is None else f"{value:.4f}"
        header = ("module", "swapped", "convgen ms", "PyTorch ms", "timing", "why")
        rows = [header] + [(r.module, "yes" if r.swapped else "no", ms(r.convgen_ms),
                            ms(r.torch_ms), r.timing or "-", r.reason) for r in self]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
                 for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"{len(self.swapped())} of {len(self)} convolutions run convgen's kernels")
        return "\n".join(lines)


# ---------------------------------------------------------------- matching

def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise ConvgenError(f"{path}: cannot read: {error}") from error


def _generated_layers(generated_dir):
    """Per module name: (model manifest entry, layer manifest)."""
    model_manifest = os.path.join(generated_dir, MODEL_MANIFEST)
    if not os.path.exists(model_manifest):
        raise ConvgenError(f"{generated_dir} has no {MODEL_MANIFEST}: generate every layer with "
                           "`convgen --all` (convgen.torch.generate does)")
    layers, calls = {}, {}
    for entry in _read_json(model_manifest).get("layers", []):
        manifest = _read_json(os.path.join(generated_dir, entry["manifest"]))
        # "layer1.0.conv1.weight", or "... * ..._mask", or "... folded with ...".
        source = manifest.get("weights", {}).get("source", "").split(" ")[0]
        module = source[:source.rfind(".weight")] if ".weight" in source else entry["name"]
        layers[module] = (entry, manifest)
        calls[module] = calls.get(module, 0) + 1
    # A module called twice is two layers (two Conv nodes) with facts of
    # their own: one kernel cannot stand for both.
    twice = {module for module, count in calls.items() if count > 1}
    return model_manifest, layers, twice


def weights_sha256(weight, bias):
    """What model_weights_sha256 in a layer manifest hashes: the OIHW weights
    and then the bias, as little-endian float32."""
    digest = hashlib.sha256(weight.detach().cpu().float().contiguous().numpy().tobytes())
    if bias is not None:
        digest.update(bias.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _geometry_problem(conv, call, manifest):
    """Why the generated layer does not fit this call of `conv`, or None."""
    g = manifest.get("geometry", {})
    expected = {"input": list(g.get("input", []))[1:], "output": list(g.get("output", []))[1:],
                "stride": list(g.get("stride", [])), "dilation": list(g.get("dilation", [])),
                "groups": g.get("groups")}
    actual = {"input": list(call.inputs[0].shape[1:]), "output": list(call.output.shape[1:]),
              "stride": list(conv.stride), "dilation": list(conv.dilation),
              "groups": conv.groups}
    for key in expected:
        if expected[key] != actual[key]:
            return (f"generated for {key} {expected[key]}, the model has {actual[key]}: "
                    "regenerate")
    return None


class _Match:
    """A conv of the model and the generated layer that computes it."""

    def __init__(self, name, conv, bn, input_shape, dtype, entry, manifest):
        self.name, self.conv, self.bn = name, conv, bn
        self.input_shape, self.dtype = input_shape, dtype
        self.entry, self.manifest = entry, manifest
        self.layer = entry["name"]


def _match(conv_calls, calls, layers, twice):
    """(rows, matches): every conv of the model, and the ones that fit."""
    rows, matches = [], []
    for name, call in conv_calls:
        conv = call.module
        if name not in layers:
            rows.append(SwapRow(name, reason="no generated layer"))
            continue
        entry, manifest = layers[name]
        row = SwapRow(name, layer=entry["name"])
        rows.append(row)
        if name in twice:
            row.reason = "called more than once in the model: a generated layer per call"
            continue
        problem = _geometry_problem(conv, call, manifest)
        if problem:
            row.reason = problem
            continue
        expected = manifest.get("model_weights_sha256")
        if not expected:
            row.reason = "its manifest has no model_weights_sha256: regenerate with this convgen"
            continue
        bn_call, activation = fused_after(calls, call, fold_bn=True)
        folded = None
        for bn in ([bn_call] if bn_call else []) + [None]:
            try:
                weight, bias = layer_tensors(conv, bn, name)
            except ExportError:
                continue  # a BatchNorm without running statistics cannot have been folded
            if weights_sha256(weight, bias) == expected:
                folded = bn
                break
        else:
            row.reason = ("stale: the model's weights differ from those generated (export and "
                          "generate again)")
            continue
        if folded is None:
            # Generated without the BatchNorm: what fuses is what follows the conv.
            _, activation = fused_after(calls, call, fold_bn=False)
        generated = manifest.get("geometry", {}).get("activation", "none")
        if generated not in ("none", None) and generated != activation:
            row.reason = (f"generated with a fused {generated}, which the model does not apply "
                          "right after this conv: the swap would change its output")
            continue
        dtype = torch.float16 if manifest.get("dtype") == "f16" else torch.float32
        matches.append((row, _Match(name, conv, folded.module if folded else None,
                                    tuple(call.inputs[0].shape), dtype, entry, manifest)))
    return rows, matches


# ---------------------------------------------------------------- the swap itself

class _Swap:
    """What a swapped conv needs to run convgen's kernels."""

    def __init__(self, runtime, match, device):
        self.runtime, self.layer = runtime, match.layer
        self.device, self.dtype = device, match.dtype
        self.input_chw, self.output_chw = runtime.shape(match.layer)
        self.bn = match.bn
        self.folds_bn = match.bn is not None
        self.active = True

    def __deepcopy__(self, memo):
        # A copy of the model (the export makes one) runs PyTorch only: the
        # kernels stay with the model that loaded them.
        copied = _Swap.__new__(_Swap)
        copied.__dict__.update(self.__dict__)
        copied.bn = None
        copied.active = False
        return copied

    def applies(self, conv, x):
        """convgen runs inference only: autograd would lose the conv."""
        return (self.active and not conv.training and (self.bn is None or not self.bn.training)
                and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
                and x.is_cuda and x.device == self.device and x.dtype == self.dtype
                and x.dim() == 4 and tuple(x.shape[1:]) == self.input_chw)

    def run(self, x):
        x = x.contiguous()
        y = torch.empty((x.shape[0],) + self.output_chw, device=x.device, dtype=x.dtype)
        if x.shape[0]:
            with torch.cuda.device(x.device):
                stream = torch.cuda.current_stream(x.device).cuda_stream
                self.runtime.launch(self.layer, x.data_ptr(), y.data_ptr(), x.shape[0], stream)
        return y


def _swapped_conv_forward(conv, x):
    swap = conv._convgen_swap
    if swap.applies(conv, x):
        y = swap.run(x)
        if swap.folds_bn:
            y._convgen_bn_folded = True  # the BatchNorm after it passes it through
        return y
    return type(conv).forward(conv, x)


def _folded_bn_forward(bn, x):
    if getattr(x, "_convgen_bn_folded", False):
        del x._convgen_bn_folded
        return x
    return type(bn).forward(bn, x)


def _install(match, swap):
    match.conv._convgen_swap = swap
    match.conv.forward = types.MethodType(_swapped_conv_forward, match.conv)
    if match.bn is not None:
        match.bn.forward = types.MethodType(_folded_bn_forward, match.bn)


def _uninstall(model):
    for module in model.modules():
        if "forward" in vars(module) and getattr(module.forward, "__func__", None) in (
                _swapped_conv_forward, _folded_bn_forward):
            del module.forward
        if hasattr(module, "_convgen_swap"):
            del module._convgen_swap


@contextlib.contextmanager
def disabled(model):
    """Runs the model with PyTorch's convolutions only, for as long as it lasts."""
    swaps = [m._convgen_swap for m in model.modules() if hasattr(m, "_convgen_swap")]
    states = [swap.active for swap in swaps]
    for swap in swaps:
        swap.active = False
    try:
        yield model
    finally:
        for swap, state in zip(swaps, states):
            swap.active = state


# ---------------------------------------------------------------- timing

def _cuda_ms(run, warmup=3, runs=15):
    """Median milliseconds of run() on the current stream, by CUDA events."""
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    samples = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def time_on_gpu(match, swap):
    """(convgen ms, PyTorch ms) at the match's input shape: convgen's kernels
    against what they replace, the conv and the BatchNorm folded into it."""
    x = torch.randn(match.input_shape, device=swap.device, dtype=match.dtype)
    conv, bn = match.conv, match.bn

    def pytorch():
        y = type(conv).forward(conv, x)
        return type(bn).forward(bn, y) if bn is not None else y

    with torch.no_grad(), torch.cuda.device(swap.device):
        return _cuda_ms(lambda: swap.run(x)), _cuda_ms(pytorch)


def _timing_key(match, device):
    properties = torch.cuda.get_device_properties(device)
    return TimingCache.key(
        device=properties.name, capability=f"{properties.major}.{properties.minor}",
        torch=torch.__version__, cudnn=torch.backends.cudnn.version(),
        tf32=bool(torch.backends.cudnn.allow_tf32), benchmark=bool(torch.backends.cudnn.benchmark),
        dtype=str(match.dtype), shape=list(match.input_shape),
        kernel=match.entry.get("cache_key") or match.entry.get("manifest_sha256"))


# ---------------------------------------------------------------- load, reload

def _device_for(model, device):
    """(the CUDA device the layers run on, or None; why none)."""
    parameter = next(model.parameters(), None)
    where = parameter.device if parameter is not None else torch.device("cpu")
    if device is not None:
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"convgen layers run on a CUDA device, not {device}")
    elif where.type == "cuda":
        device = where
    elif torch.cuda.is_available():
        return None, "kept: the model is on the CPU (convgen runs on a CUDA device)"
    elif os.environ.get("CONVGEN_CUDA_DRIVER"):
        return torch.device("cuda", 0), ""  # the host CUDA driver (tests): no torch CUDA
    else:
        return None, "kept: no CUDA device"
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available()
                              else 0)
    return device, ""


class _Session:
    """What load left on the model, for reload."""

    def __init__(self, generated_dir, example_input, policy, timer, cache, device, runtime):
        self.generated_dir, self.example_input = generated_dir, example_input
        self.policy, self.timer, self.cache = policy, timer, cache
        self.device, self.runtime = device, runtime
        self.no_device = ""
        self.table = SwapTable()

    def __deepcopy__(self, memo):
        return None  # a copy is not loaded: its swaps are inactive


def load(model, generated_dir, example_input, policy="auto", timer=None, cache=None,
         device=None):
    """Swaps the model's convolutions for the generated layers that match and,
    with policy "auto", are faster. Returns (model, table).

    example_input: the input the model runs at (a tensor on the model's device,
    or a shape for a float32 one), which fixes every layer's input shape.
    timer: called as timer(match, swap) to give (convgen ms, PyTorch ms)
    instead of timing on the GPU (tests). cache: a TimingCache or its path
    (default ~/.cache/convgen/torch-decisions.json), or False for none.
    device: where the kernels run; by default the model's device."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    parameter = next(model.parameters(), None)
    if not torch.is_tensor(example_input):
        example_input = torch.randn(*example_input, device=parameter.device if parameter is not None
                                    else "cpu")
    if cache is None or isinstance(cache, (str, os.PathLike)):
        cache = TimingCache(cache)
    unload(model)
    target, no_device = _device_for(model, device)
    session = _Session(str(generated_dir), example_input, policy, timer, cache or None, target,
                       None)
    session.no_device = no_device
    model.convgen_reload = types.MethodType(reload, model)
    model._convgen_session = session
    _decide(model, session)
    return model, session.table


def reload(model):
    """After the model was exported and generated again into the same folder:
    reloads the layers that changed (values alone where the code is the same)
    and matches and decides again. Returns the new table."""
    session = getattr(model, "_convgen_session", None)
    if session is None:
        raise ConvgenError("this model was not loaded with convgen.torch.load")
    _uninstall(model)
    if session.runtime is not None:
        session.runtime.reload()
    _decide(model, session)
    return session.table


def unload(model):
    """Gives the model its PyTorch convolutions back and frees the kernels
    (before torch.save(model): a loaded model does not pickle)."""
    _uninstall(model)
    session = vars(model).get("_convgen_session")
    if session is not None and session.runtime is not None:
        session.runtime.close()
    for attribute in ("_convgen_session", "convgen_reload"):
        if attribute in vars(model):
            delattr(model, attribute)
    return model


def _relies_on_others(match):
    """Whether the layer's code drops channels because of other layers."""
    channels = match.manifest.get("channels", {})
    return bool(channels.get("zero_inputs") or channels.get("unread_outputs"))


def _decide(model, session):
    """Matches, times and swaps, in eval mode (timing runs the BatchNorms,
    which in training mode would update their statistics)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            calls = _trace(model, session.example_input)
        _decide_traced(model, session, calls)
    finally:
        model.train(was_training)


def _decide_traced(model, session, calls):
    model_manifest, layers, twice = _generated_layers(session.generated_dir)
    seen, conv_calls = set(), []
    for call in calls:
        if isinstance(call.module, nn.Conv2d) and call.name not in seen:
            seen.add(call.name)
            conv_calls.append((call.name, call))
    rows, matches = _match(conv_calls, calls, layers, twice)
    session.table = SwapTable(rows)
    # A layer generated in its graph's context dropped channels because of
    # the weights of others: it is only right while they all still match.
    matched = {match.name for _, match in matches}
    unmatched = sorted(set(layers) - matched)
    if unmatched:
        kept = []
        for row, match in matches:
            if _relies_on_others(match):
                row.reason = (f"its code relies on zero or unread channels of other layers, and "
                              f"{len(unmatched)} generated layer(s) no longer match "
                              f"(e.g. {unmatched[0]}): export and generate again")
            else:
                kept.append((row, match))
        matches = kept
    if not matches:
        return
    if session.device is None:
        for row, _ in matches:
            row.reason = session.no_device
        return
    if session.policy == "never":
        for row, _ in matches:
            row.reason = "policy 'never'"
        return
    if session.runtime is None:
        if torch.cuda.is_available():
            torch.cuda.init()  # the runtime uses the primary context torch makes
            with torch.cuda.device(session.device):
                session.runtime = ModelRuntime(model_manifest, session.device.index)
        else:
            session.runtime = ModelRuntime(model_manifest, session.device.index)
    for row, match in matches:
        swap = _Swap(session.runtime, match, session.device)
        convgen_ms = torch_ms = None
        if session.policy == "auto":
            convgen_ms, torch_ms, row.timing = _timings(session, match, swap)
        row.convgen_ms, row.torch_ms = convgen_ms, torch_ms
        row.swapped, row.reason = choose(session.policy, convgen_ms, torch_ms)
        if row.timing == "" and session.policy == "auto":
            row.reason = "kept: no CUDA device to time on in PyTorch (pass a timer)"
        if row.swapped:
            _install(match, swap)
            unread = session.runtime.unread_channels(match.layer)
            if unread:
                row.reason += (f"; {len(unread)} output channels not computed (nothing in the "
                               "model reads them)")


def _timings(session, match, swap):
    """(convgen ms, PyTorch ms, "timed" | "cached" | "injected" | "")."""
    if session.timer is not None:
        convgen_ms, torch_ms = session.timer(match, swap)
        return convgen_ms, torch_ms, "injected"
    if not torch.cuda.is_available():
        return None, None, ""
    key = _timing_key(match, session.device)
    cached = session.cache.get(key) if session.cache else None
    if cached:
        return cached[0], cached[1], "cached"
    convgen_ms, torch_ms = time_on_gpu(match, swap)
    if session.cache:
        session.cache.put(key, convgen_ms, torch_ms)
    return convgen_ms, torch_ms, "timed"
