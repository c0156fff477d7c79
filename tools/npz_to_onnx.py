#!/usr/bin/env python3
"""Convert a convgen .npz + geometry sidecar into an ONNX *carrier* model.

    python3 tools/npz_to_onnx.py MODEL.npz [--geometry SIDECAR.json] -o OUT.onnx

The result is a carrier, not the original network: each sidecar layer becomes
an independent Conv with its own graph input, and nothing connects one layer
to the next (no skip connections, pooling, upsampling or anything else the
network does between its convolutions). It holds exactly what convgen reads
from the .npz + sidecar, in a form ONNX readers take, so that
`convgen --weights OUT.onnx` sees the same layers as `convgen --weights MODEL.npz`.

For each layer of the sidecar, in its order (opset 13):
- a graph input `LAYER.input`, float32, of the sidecar's input shape;
- a Conv node named exactly LAYER with strides, pads [ph, pw, ph, pw],
  dilations, group and kernel_shape, reading the initializers
  `LAYER.weight` (float32 OIHW: the npz's weight, or for the pair
  `KEY_orig` + `KEY_mask` that torch.nn.utils.prune leaves, orig where the
  mask is 1 and 0 where it is 0, as convgen reads it) and `LAYER.bias` if the
  sidecar names a bias;
- after it, a Relu node (`LAYER.relu`) for activation "relu", or a Clip node
  (`LAYER.relu6`) with the initializers `LAYER.clip_min` = 0 and
  `LAYER.clip_max` = 6 for "relu6";
- the layer's last value, `LAYER.output`, is a graph output (the Conv's
  output is `LAYER.conv` when an activation follows).

The sidecar defaults to the .npz's path with .json. The model is checked with
onnx.checker before it is written; the file is written atomically.

Exit codes: 0 success, 2 bad input or usage.
"""
import argparse
import json
import os
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from convgen.file_mode import new_file_mode  # noqa: E402

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover - depends on the machine
    onnx = None

OPSET = 13
LAYER_FIELDS = {"name", "weight", "bias", "input", "stride", "padding", "dilation", "groups",
                "activation", "output"}
ACTIVATIONS = (None, "relu", "relu6")


class ConvertError(Exception):
    """Bad input; the message is one line for the user."""


def _first_line(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _reject_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ConvertError(f"duplicate key '{key}'")
    return dict(pairs)


def load_sidecar(path):
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f, object_pairs_hook=_reject_duplicate_keys)
    except OSError as error:
        raise ConvertError(f"{path}: cannot read: {error.strerror}") from error
    except ConvertError as error:
        raise ConvertError(f"{path}: malformed JSON: {error}") from error
    except ValueError as error:  # JSONDecodeError, and bad UTF-8
        raise ConvertError(f"{path}: malformed JSON: {str(error).splitlines()[0]}") from error
    if not isinstance(document, dict) or not isinstance(document.get("layers"), list):
        raise ConvertError(f"{path}: geometry sidecar must be a JSON object with a "
                           "\"layers\" array")
    if not document["layers"]:
        raise ConvertError(f"{path}: layers: is empty: the sidecar describes no convolution layer")
    unknown = set(document) - {"model", "layers"}
    if unknown:
        raise ConvertError(f"{path}: {sorted(unknown)[0]}: unknown field")
    return document


def _integers(layer, field, count, minimum, where):
    value = layer.get(field)
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                       for v in value)):
        raise ConvertError(f"{where}: {field}: must be an array of {count} integers >= {minimum}, "
                           f"got {json.dumps(value)[:40]}")
    return value


def _check_layer(layer, index, path):
    where = f"{path}: layers[{index}]"
    if not isinstance(layer, dict):
        raise ConvertError(f"{where}: must be an object")
    name = layer.get("name")
    if not isinstance(name, str) or not name:
        raise ConvertError(f"{where}: name: must be a non-empty string")
    where = f"{path}: layer '{name}'"
    unknown = set(layer) - LAYER_FIELDS
    if unknown:
        raise ConvertError(f"{where}: {sorted(unknown)[0]}: unknown field")
    missing = sorted(LAYER_FIELDS - {"bias", "output"} - set(layer))
    if missing:
        raise ConvertError(f"{where}: {missing[0]}: missing required field")
    for field in ("weight", "bias"):
        value = layer.get(field)
        if field in layer and not (value is None and field == "bias") and (
                not isinstance(value, str) or not value):
            raise ConvertError(f"{where}: {field}: must be a non-empty string")
    _integers(layer, "input", 4, 1, where)
    _integers(layer, "stride", 2, 1, where)
    _integers(layer, "padding", 2, 0, where)
    _integers(layer, "dilation", 2, 1, where)
    groups = layer["groups"]
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ConvertError(f"{where}: groups: must be a positive integer")
    if layer["activation"] not in ACTIVATIONS:
        raise ConvertError(f"{where}: activation: must be null, \"relu\" or \"relu6\", "
                           f"got {json.dumps(layer['activation'])[:40]}")
    if layer.get("output") is not None:
        _integers(layer, "output", 4, 1, where)
    return where


class _Arrays:
    """The .npz's arrays, read on demand (an .npz is a zip of .npy files)."""

    def __init__(self, path):
        self.path = path
        try:
            self.npz = np.load(path, allow_pickle=False)
        except OSError as error:
            raise ConvertError(f"{path}: cannot read: {error.strerror or _first_line(error)}") \
                from error
        except (ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ConvertError(f"{path}: not an .npz: {_first_line(error)}") from error
        if not hasattr(self.npz, "files"):
            raise ConvertError(f"{path}: is a single .npy array, not an .npz archive")

    def read(self, key, where):
        try:
            array = self.npz[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # pickled, corrupt
            raise ConvertError(f"{self.path}: {key}: {_first_line(error)}") from error
        if array.dtype not in (np.float32, np.float16):
            raise ConvertError(f"{self.path}: {key}: has dtype {array.dtype.str}; weights and "
                               f"biases must be <f4 or <f2 ({where})")
        return array.astype(np.float32)

    def float_tensor(self, key, where):
        """The array `key`, or orig where mask is 1 for the torch.nn.utils.prune pair."""
        if key in self.npz.files:
            return self.read(key, where)
        orig_key, mask_key = key + "_orig", key + "_mask"
        if orig_key not in self.npz.files or mask_key not in self.npz.files:
            raise ConvertError(f"{self.path}: {key}: array not found in the .npz (nor the "
                               f"'{orig_key}' + '{mask_key}' pair that torch.nn.utils.prune "
                               f"leaves) ({where})")
        orig = self.read(orig_key, where)
        mask = self.read(mask_key, where)
        if orig.shape != mask.shape:
            raise ConvertError(f"{self.path}: {mask_key}: shape {list(mask.shape)} differs from "
                               f"'{orig_key}' shape {list(orig.shape)}")
        if not np.all((mask == 0) | (mask == 1)):
            raise ConvertError(f"{self.path}: {mask_key}: a pruning mask holds only 0 and 1")
        # orig * mask, except that a masked weight is exactly zero even where orig is inf/NaN.
        return np.where(mask == 0, np.float32(0), orig).astype(np.float32)


def _output_shape(layer, weight):
    n, _, h, w = layer["input"]
    out = [n, int(weight.shape[0])]
    for size, k, s, p, d in zip((h, w), weight.shape[2:], layer["stride"], layer["padding"],
                                layer["dilation"]):
        out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return out


def _layer_nodes(layer, arrays, where, tensor_names, node_names):
    """The graph input, nodes, initializers and graph output of one layer."""
    name = layer["name"]
    weight = arrays.float_tensor(layer["weight"], where)
    if weight.ndim != 4 or min(weight.shape) < 1:
        raise ConvertError(f"{where}: weight '{layer['weight']}' has shape {list(weight.shape)}; "
                           "a Conv2d weight is 4-D [O, C/groups, kh, kw]")
    channels, groups = layer["input"][1], layer["groups"]
    if channels % groups or weight.shape[0] % groups or weight.shape[1] * groups != channels:
        raise ConvertError(f"{where}: input has {channels} channels and groups={groups}, which "
                           f"the weight's shape {list(weight.shape)} does not fit")
    if not np.all(np.isfinite(weight)):
        raise ConvertError(f"{where}: weight '{layer['weight']}' holds NaN or Inf")
    output = _output_shape(layer, weight)
    if min(output[2:]) < 1:
        raise ConvertError(f"{where}: the kernel does not fit the padded input")
    if layer.get("output") is not None and layer["output"] != output:
        raise ConvertError(f"{where}: output: {layer['output']} disagrees with the shape the "
                           f"geometry implies, {output}")

    tensor = lambda suffix: f"{name}.{suffix}"  # noqa: E731
    initializers = [numpy_helper.from_array(np.ascontiguousarray(weight), tensor("weight"))]
    conv_inputs = [tensor("input"), tensor("weight")]
    if layer.get("bias") is not None:
        bias = arrays.float_tensor(layer["bias"], where)
        if bias.shape != (weight.shape[0],):
            raise ConvertError(f"{where}: bias '{layer['bias']}' has shape {list(bias.shape)}; "
                               f"expected [{weight.shape[0]}]")
        if not np.all(np.isfinite(bias)):
            raise ConvertError(f"{where}: bias '{layer['bias']}' holds NaN or Inf")
        initializers.append(numpy_helper.from_array(bias, tensor("bias")))
        conv_inputs.append(tensor("bias"))

    activation = layer["activation"]
    conv_output = tensor("conv") if activation else tensor("output")
    ph, pw = layer["padding"]
    nodes = [helper.make_node("Conv", conv_inputs, [conv_output], name=name,
                              kernel_shape=list(weight.shape[2:]), strides=layer["stride"],
                              pads=[ph, pw, ph, pw], dilations=layer["dilation"], group=groups)]
    if activation == "relu":
        nodes.append(helper.make_node("Relu", [conv_output], [tensor("output")],
                                      name=tensor("relu")))
    elif activation == "relu6":
        initializers += [numpy_helper.from_array(np.array(0.0, np.float32), tensor("clip_min")),
                         numpy_helper.from_array(np.array(6.0, np.float32), tensor("clip_max"))]
        nodes.append(helper.make_node("Clip", [conv_output, tensor("clip_min"), tensor("clip_max")],
                                      [tensor("output")], name=tensor("relu6")))

    for value in [tensor("input"), tensor("output")] + [tensor("conv")] * bool(activation) + \
            [i.name for i in initializers]:
        if value in tensor_names:
            raise ConvertError(f"{where}: the tensor name '{value}' is taken by another layer")
        tensor_names.add(value)
    for node in nodes:
        if node.name in node_names:
            raise ConvertError(f"{where}: the node name '{node.name}' is taken by another layer")
        node_names.add(node.name)
    graph_input = helper.make_tensor_value_info(tensor("input"), TensorProto.FLOAT, layer["input"])
    graph_output = helper.make_tensor_value_info(tensor("output"), TensorProto.FLOAT, output)
    return graph_input, nodes, initializers, graph_output


def convert(npz_path, sidecar_path=None):
    """The carrier ModelProto for an .npz and its sidecar, checked with onnx.checker."""
    if onnx is None:
        raise ConvertError("needs the onnx Python package (Debian: python3-onnx)")
    sidecar_path = sidecar_path or os.path.splitext(npz_path)[0] + ".json"
    arrays = _Arrays(npz_path)
    sidecar = load_sidecar(sidecar_path)
    inputs, nodes, initializers, outputs = [], [], [], []
    layer_names, tensor_names, node_names = set(), set(), set()
    for index, layer in enumerate(sidecar["layers"]):
        where = _check_layer(layer, index, sidecar_path)
        if layer["name"] in layer_names:
            raise ConvertError(f"{where}: name: duplicate layer name")
        layer_names.add(layer["name"])
        graph_input, layer_nodes, layer_initializers, graph_output = \
            _layer_nodes(layer, arrays, where, tensor_names, node_names)
        inputs.append(graph_input)
        nodes += layer_nodes
        initializers += layer_initializers
        outputs.append(graph_output)

    model_name = sidecar.get("model") or os.path.splitext(os.path.basename(npz_path))[0]
    graph = helper.make_graph(
        nodes, str(model_name), inputs, outputs, initializer=initializers,
        doc_string="convgen carrier: each layer is an independent Conv with its own input, "
                   "not the original network's graph")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="convgen npz_to_onnx",
                              doc_string=f"Carrier for {os.path.basename(npz_path)} + "
                                         f"{os.path.basename(sidecar_path)}: every layer an "
                                         "independent Conv, not the network's graph")
    helper.set_model_props(model, {"convgen.carrier": "1",
                                   "convgen.source": os.path.basename(npz_path)})
    try:
        onnx.checker.check_model(model, full_check=True)  # full: shape inference too
    except Exception as error:  # onnx.checker.ValidationError and friends
        raise ConvertError(f"the carrier fails onnx.checker: {_first_line(error)}") from error
    return model


def write_atomically(path, data):
    """Writes `data` to a temporary next to `path`, then renames it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    temp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".tmp.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, new_file_mode())
        os.replace(temp, path)
    except OSError as error:
        raise ConvertError(f"{path}: cannot write: {error.strerror or _first_line(error)}") \
            from error
    finally:
        if temp and os.path.exists(temp):
            os.unlink(temp)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a convgen .npz + geometry sidecar into an ONNX carrier model "
                    "(each layer an independent Conv with its own input; not the network's graph).")
    parser.add_argument("npz", metavar="MODEL.npz", help="the convgen weights")
    parser.add_argument("--geometry", metavar="SIDECAR",
                        help="geometry sidecar JSON (default: the .npz's path with .json)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx",
                        help="the ONNX file to write")
    args = parser.parse_args(argv)
    try:
        model = convert(args.npz, args.geometry)
        write_atomically(args.output, model.SerializeToString())
    except ConvertError as error:
        print(f"npz_to_onnx: error: {error}", file=sys.stderr)
        return 2
    print(f"npz_to_onnx: wrote {args.output}: {len(model.graph.input)} layers, "
          f"each an independent Conv (a carrier, not the network's graph)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
