"""Export a PyTorch CNN's convolutions as convgen input: an .npz + a geometry sidecar
(and, with onnx=True, the whole network as ONNX carrying the same weights).

From Python (convgen.torch.export wraps it):

    from convgen.exporter import export
    export(model, torch.randn(1, 3, 224, 224), "resnet50.npz", prune=0.9)

From the shell (tools/export_pytorch.py), with a module (a dotted name or a .py
file) and a callable in it that returns the model:

    python3 tools/export_pytorch.py torchvision.models:resnet50 \
        --input-shape 1,3,224,224 --prune 0.9 -o resnet50-s90.npz [--onnx]

What it does:
- Runs the model once on the example input with forward hooks on every leaf
  module, and records each nn.Conv2d's input shape, stride, padding, dilation,
  groups and output shape.
- Folds a BatchNorm2d that directly consumes a conv's output into the conv's
  weight and bias, as inference does (eval mode, running statistics).
- Records a ReLU or ReLU6 that directly consumes the (folded) conv output as
  the layer's activation. A tensor modified in place in between (a residual
  `out += identity` before the ReLU) is detected and the ReLU is not fused.
- With --prune AMOUNT, prunes each conv's (folded) weight by magnitude with
  torch.nn.utils.prune.l1_unstructured.
- With --prune-filters AMOUNT, first prunes that fraction of each conv's
  filters by L2 norm (torch.nn.utils.prune.ln_structured, dim 0) and zeroes
  their bias, as removing the channel does (Torch-Pruning, NNI's speed-up);
  --prune then prunes that fraction of what is left. Zero filters make zero
  channels, which convgen carries across layers in an ONNX model.
- Writes NAME.weight (OIHW float32) and NAME.bias per conv to the .npz, or with
  --keep-mask the NAME.weight_orig + NAME.weight_mask pair that
  torch.nn.utils.prune leaves, and the sidecar (same stem, .json).
- With --onnx (export(..., onnx=True)), also writes STEM.onnx next to the .npz
  (same directory and stem) with torch.onnx.export: opset 13, eval mode, the
  batch of the example input fixed (no dynamic axes), constant folding on. It
  is the whole network, but its convolutions carry exactly the npz's weights:
  what is exported is a copy of the model in which each nn.Conv2d is a plain
  Conv2d holding the exported (folded, pruned) weight and bias, and each folded
  BatchNorm2d is nn.Identity. torch's own Conv+BatchNorm fusion pass is not run
  (the copy is exported in eval mode with TrainingMode.PRESERVE), so a
  BatchNorm left unfolded (--no-fold-bn) stays a BatchNormalization node and
  the conv before it keeps the npz's weight. With --keep-mask the ONNX holds
  the effective weight, orig * mask. A BatchNorm2d folded after one call and
  applied unfolded at another cannot be exported this way and is rejected.
- All files (.npz, .json and .onnx) are written atomically: to temporaries
  first, renamed only once all are complete, so a failure changes none.

Not detected: a conv output consumed both by a BatchNorm/ReLU and by
something else (the fused layer would then differ from what the other consumer
sees), and activations applied through torch.nn.functional rather than modules.
A conv called more than once with different input shapes is rejected. In the
ONNX, a functional activation is still there after its Conv (a reader may fuse
it where the sidecar says none), a conv called twice is two Conv nodes sharing
one weight, and convolutions computed with torch.nn.functional keep their own
weights (they are not in the .npz).

Errors are ExportError, with a one-line message for the user.
"""
import copy
import io
import json
import os
import tempfile
import warnings

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import prune as torch_prune

from .file_mode import new_file_mode


class ExportError(Exception):
    """Bad model or arguments; the message is one line for the user."""


_TRACED_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh)


def _first_line(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


class _Call:
    """One leaf-module call seen during the traced forward pass."""

    def __init__(self, name, module, inputs, input_versions):
        self.name = name
        self.module = module
        self.inputs = inputs
        self.input_versions = input_versions
        self.output = None
        self.output_version = None


def _trace(model, example_input):
    """Runs the model once; returns the leaf-module calls in execution order."""
    calls = []
    handles = []

    def pre_hook(name):
        def hook(module, inputs):
            tensors = tuple(t for t in inputs if torch.is_tensor(t))
            # Versions before the call: an in-place op between producer and
            # consumer shows up as a version bump.
            calls.append(_Call(name, module, tensors, tuple(t._version for t in tensors)))
        return hook

    def post_hook(module, inputs, output):
        call = next(c for c in reversed(calls) if c.module is module and c.output is None)
        call.output = output if torch.is_tensor(output) else None
        call.output_version = output._version if torch.is_tensor(output) else None

    for name, module in model.named_modules():
        # Leaves, plus the types the exporter reads even when they have
        # children (a Conv2d under torch.nn.utils.parametrize has some).
        if isinstance(module, _TRACED_TYPES) or not list(module.children()):
            handles.append(module.register_forward_pre_hook(pre_hook(name)))
            handles.append(module.register_forward_hook(post_hook))
    try:
        with torch.no_grad():
            model(example_input)
    except Exception as error:  # whatever the user's forward raises
        raise ExportError(f"the model failed on the example input: {_first_line(error)}") from error
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _consumer(calls, producer, kinds):
    """The call of a module of one of `kinds` that takes producer's output unchanged."""
    if producer.output is None:
        return None
    start = calls.index(producer) + 1
    for call in calls[start:]:
        if (isinstance(call.module, kinds) and len(call.inputs) == 1
                and call.inputs[0] is producer.output
                and call.input_versions[0] == producer.output_version):
            return call
    return None


def _symmetric_padding(conv, name):
    if conv.padding_mode != "zeros":
        raise ExportError(f"layer '{name}': padding_mode '{conv.padding_mode}' is not supported "
                          "(convgen pads with zeros)")
    if conv.padding == "valid":
        return [0, 0]
    if conv.padding == "same":
        # torch pads (total // 2) before and the rest after; symmetric only if even.
        pads = []
        for dilation, kernel in zip(conv.dilation, conv.kernel_size):
            total = dilation * (kernel - 1)
            if total % 2:
                raise ExportError(f"layer '{name}': padding='same' with an even kernel is "
                                  "asymmetric; convgen supports symmetric padding only")
            pads.append(total // 2)
        return pads
    return [int(p) for p in conv.padding]


def _fold_batchnorm(weight, bias, bn, name):
    """Returns (weight, bias) of conv followed by bn in eval mode, in float64."""
    if not bn.track_running_stats or bn.running_mean is None:
        raise ExportError(f"layer '{name}': BatchNorm without running statistics cannot be folded; "
                          "pass --no-fold-bn")
    scale = bn.running_var.detach().cpu().double().add(bn.eps).rsqrt()
    if bn.affine:
        scale = scale * bn.weight.detach().cpu().double()
    shift = -bn.running_mean.detach().cpu().double() * scale
    if bn.affine:
        shift = shift + bn.bias.detach().cpu().double()
    weight = weight.double() * scale.reshape(-1, 1, 1, 1)
    bias = (bias.double() if bias is not None else torch.zeros_like(shift)) * scale + shift
    return weight, bias


def fused_after(calls, call, fold_bn=True):
    """(the BatchNorm call folded into conv call `call`, or None; the name of
    the activation fused after it, or None), as the export fuses them."""
    bn_call = _consumer(calls, call, nn.BatchNorm2d) if fold_bn else None
    act_call = _consumer(calls, bn_call or call, (nn.ReLU, nn.ReLU6, nn.Hardtanh))
    return bn_call, _activation_name(act_call.module) if act_call is not None else None


def layer_tensors(conv, bn_call, name):
    """The weight (float32) and bias (float32, or None) the export writes for
    `conv`, with the BatchNorm of `bn_call` folded in when there is one."""
    weight = conv.weight.detach().cpu()
    bias = conv.bias.detach().cpu() if conv.bias is not None else None
    if bn_call is not None:
        weight, bias = _fold_batchnorm(weight, bias, bn_call.module, name)
    return weight.float(), bias.float() if bias is not None else None


def _activation_name(module):
    if isinstance(module, nn.ReLU6):
        return "relu6"
    if isinstance(module, nn.Hardtanh) and module.min_val == 0.0 and module.max_val == 6.0:
        return "relu6"
    if isinstance(module, nn.ReLU):
        return "relu"
    return None


def _prune_by_magnitude(weight, amount, filters=None):
    """Prunes with torch.nn.utils.prune: first, with `filters`, that fraction of
    the filters (output channels) of smallest L2 norm (ln_structured, n=2, dim=0);
    then, with `amount`, that fraction of the remaining entries of smallest |w|
    (l1_unstructured; torch applies a second pruning to what the first left).

    Returns (weight_orig, weight_mask, effective weight) as torch leaves them."""
    holder = nn.Module()
    holder.weight = nn.Parameter(weight.float().clone())
    if filters is not None:
        torch_prune.ln_structured(holder, "weight", amount=filters, n=2, dim=0)
    if amount is not None:
        torch_prune.l1_unstructured(holder, "weight", amount=amount)
    return (holder.weight_orig.detach().clone(), holder.weight_mask.detach().clone(),
            holder.weight.detach().clone())


def _write_files_atomically(files):
    """Writes {path: write(f)} so that a failure leaves none of them changed:
    every file goes to a temporary next to its destination first, and the
    renames happen only once all are complete."""
    staged = []
    try:
        for path, write in files.items():
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".tmp.")
            staged.append((temp, path))
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, new_file_mode())
        for temp, path in staged:
            os.replace(temp, path)
    except OSError as error:
        raise ExportError(f"{error.filename or ''}: cannot write: {error.strerror}") from error
    finally:
        for temp, _ in staged:
            if os.path.exists(temp):
                os.unlink(temp)


def export(model, example_input, npz_path, *, prune=None, prune_filters=None, fold_bn=True,
           keep_mask=False, compressed=False, model_name=None, sidecar_path=None, onnx=False):
    """Exports every nn.Conv2d of `model` to `npz_path` and its geometry sidecar,
    and with `onnx` the network to STEM.onnx next to `npz_path`, carrying the
    same weights.

    Returns the sidecar as a dict. Raises ExportError for models convgen cannot take.
    """
    if prune is not None and not 0.0 <= prune < 1.0:
        raise ExportError(f"--prune must be in [0, 1), got {prune}")
    if prune_filters is not None and not 0.0 <= prune_filters < 1.0:
        raise ExportError(f"--prune-filters must be in [0, 1), got {prune_filters}")
    if keep_mask and prune is None and prune_filters is None:
        raise ExportError("--keep-mask needs --prune or --prune-filters (there is no mask "
                          "otherwise)")
    if torch.is_inference_mode_enabled():
        raise ExportError("cannot export under torch.inference_mode(): in-place checks need "
                          "tensor version counters; call export() outside it")
    if example_input.dim() != 4:
        raise ExportError(f"the example input must be 4-D (N, C, H, W), got shape "
                          f"{tuple(example_input.shape)}")

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _export_traced(model, _trace(model, example_input), npz_path, prune=prune,
                                  prune_filters=prune_filters, fold_bn=fold_bn,
                                  keep_mask=keep_mask, compressed=compressed,
                                  model_name=model_name, sidecar_path=sidecar_path,
                                  onnx_input=example_input if onnx else None)
    finally:
        model.train(was_training)


def _export_traced(model, calls, npz_path, *, prune, fold_bn, keep_mask, compressed, model_name,
                   sidecar_path, onnx_input=None, prune_filters=None):

    arrays = {}
    layers = []
    seen = {}
    exported = []  # (conv module, name, weight, bias, padding) as written, for the ONNX
    folding_calls = set()  # the BatchNorm calls folded into a conv, by id
    for call in calls:
        conv = call.module
        if not isinstance(conv, nn.Conv2d):
            continue
        name = call.name
        input_shape = list(call.inputs[0].shape)
        bn_call, activation = fused_after(calls, call, fold_bn)
        fusion = (input_shape, bn_call.module if bn_call else None, activation)
        if bn_call is not None:
            folding_calls.add(id(bn_call))
        if name in seen:
            # One kernel per layer: every call must have the same geometry and
            # the same fused BatchNorm and activation.
            if seen[name] != fusion:
                raise ExportError(f"layer '{name}' is called more than once with different input "
                                  "shapes or a different following BatchNorm/activation; convgen "
                                  "needs one geometry per layer")
            continue
        seen[name] = fusion
        if len(input_shape) != 4:
            raise ExportError(f"layer '{name}': input must be 4-D (N, C, H, W), got {input_shape}")

        weight, bias = layer_tensors(conv, bn_call, name)
        key = f"{name}.weight"
        if prune is not None or prune_filters is not None:
            orig, mask, weight = _prune_by_magnitude(weight, prune, prune_filters)
            if prune_filters is not None and bias is not None:
                # A pruned filter's channel is removed, as channel pruning
                # (Torch-Pruning, NNI's speed-up) removes it with its BatchNorm
                # channel: its (folded) bias goes too, so the channel is zero.
                removed = mask.flatten(1).sum(dim=1) == 0
                bias = torch.where(removed, torch.zeros_like(bias), bias)
            if keep_mask:
                # What a state_dict holds before prune.remove(); convgen reads orig * mask.
                arrays[f"{key}_orig"] = orig.numpy()
                arrays[f"{key}_mask"] = mask.numpy()
        if not keep_mask:
            arrays[key] = np.ascontiguousarray(weight.numpy(), dtype=np.float32)

        layer = {"name": name, "weight": key}
        if bias is not None:
            arrays[f"{name}.bias"] = bias.float().numpy()
            layer["bias"] = f"{name}.bias"
        padding = _symmetric_padding(conv, name)
        exported.append((conv, name, weight, bias.float() if bias is not None else None, padding))
        layer.update({
            "input": input_shape,
            "stride": [int(s) for s in conv.stride],
            "padding": padding,
            "dilation": [int(d) for d in conv.dilation],
            "groups": int(conv.groups),
            "activation": activation,
            "output": list(call.output.shape),
        })
        layers.append(layer)

    if not layers:
        raise ExportError("the model ran no nn.Conv2d on the example input; nothing to export")

    sidecar = {"model": model_name or type(model).__name__, "layers": layers}
    sidecar_path = sidecar_path or os.path.splitext(npz_path)[0] + ".json"
    save = np.savez_compressed if compressed else np.savez
    files = {
        npz_path: lambda f: save(f, **arrays),
        sidecar_path: lambda f: f.write((json.dumps(sidecar, indent=1) + "\n").encode()),
    }
    if onnx_input is not None:
        onnx_file = onnx_path(npz_path)
        if os.path.abspath(onnx_file) in (os.path.abspath(npz_path), os.path.abspath(sidecar_path)):
            raise ExportError(f"the ONNX would overwrite {onnx_file}: name the .npz with another "
                              "extension (the ONNX goes next to it with .onnx)")
        # Exported before anything is written: a failure leaves no file behind.
        onnx_bytes = _onnx_bytes(model, onnx_input, calls, exported, folding_calls)
        files[onnx_file] = lambda f: f.write(onnx_bytes)
    _write_files_atomically(files)
    return sidecar


def onnx_path(npz_path):
    """Where export(..., onnx=True) writes the ONNX: next to the .npz, same stem."""
    return os.path.splitext(npz_path)[0] + ".onnx"


ONNX_OPSET = 13


def _plain_conv(conv, weight, bias, padding):
    """An nn.Conv2d with conv's geometry holding exactly `weight` and `bias`:
    no pruning hooks, parametrizations or subclass forward left to change them."""
    # Built on the meta device: no initialisation, so the global RNG is untouched.
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(conv.kernel_size),
                      stride=tuple(conv.stride), padding=tuple(padding),
                      dilation=tuple(conv.dilation), groups=conv.groups,
                      bias=bias is not None, device="meta")
    device = conv.weight.device
    plain.weight = nn.Parameter(weight.detach().float().clone().to(device), requires_grad=False)
    if bias is not None:
        plain.bias = nn.Parameter(bias.detach().float().clone().to(device), requires_grad=False)
    return plain.eval()


def _onnx_bytes(model, example_input, calls, exported, folding_calls):
    """The model as ONNX (opset 13), its convs carrying the exported weights."""
    try:
        from torch import onnx as torch_onnx
    except ImportError as error:
        raise ExportError(f"--onnx needs torch.onnx: {_first_line(error)}") from error

    folded = {id(call.module): call.module for call in calls if id(call) in folding_calls}
    for call in calls:
        if id(call.module) in folded and id(call) not in folding_calls:
            raise ExportError(f"BatchNorm '{call.name}' is folded into a conv at one call and "
                              "applied on its own at another; the ONNX cannot carry both "
                              "(export without --onnx, or with --no-fold-bn)")
    # deepcopy puts whatever the memo maps an object's id to in its place, so
    # seeding it swaps the modules wherever the model refers to them.
    memo = {id(conv): _plain_conv(conv, weight, bias, padding)
            for conv, _, weight, bias, padding in exported}
    memo.update({key: nn.Identity() for key in folded})
    try:
        carrier = copy.deepcopy(model, memo)
    except Exception as error:  # whatever a module's __deepcopy__ raises
        raise ExportError(f"cannot copy the model for the ONNX export: {_first_line(error)}") \
            from error
    carrier.eval()

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The exporter's tracer and constant-folding advice go to stderr otherwise.
            warnings.simplefilter("ignore")
            # PRESERVE (with the copy in eval mode) exports inference semantics
            # like EVAL but skips torch's Conv+BatchNorm fusion, which would
            # change an unfolded BatchNorm's conv weights.
            torch_onnx.export(carrier, (example_input,), buffer, export_params=True,
                              opset_version=ONNX_OPSET, training=torch_onnx.TrainingMode.PRESERVE,
                              do_constant_folding=True, input_names=["input"])
    except Exception as error:  # unsupported operators, tracing failures
        raise ExportError(f"the ONNX export failed: {_first_line(error)}") from error
    return buffer.getvalue()
