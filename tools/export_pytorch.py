#!/usr/bin/env python3
"""Export a PyTorch CNN's convolutions as convgen input: an .npz + a geometry sidecar
(and, with --onnx, the whole network as ONNX carrying the same weights).

    python3 tools/export_pytorch.py torchvision.models:resnet50 \
        --input-shape 1,3,224,224 --prune 0.9 -o resnet50-s90.npz [--onnx]

MODEL is MODULE:CALLABLE, MODULE a dotted name or a .py file, CALLABLE returning
the nn.Module. The exporter itself is python/convgen/exporter.py (its docstring
says what it does); this is its command line. From Python, use
convgen.exporter.export, or convgen.torch.export. `from export_pytorch import
export` still works for scripts that put tools/ on sys.path.

Exit codes: 0 success, 2 bad input or usage.
"""
import argparse
import importlib
import importlib.util
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from convgen.exporter import ExportError, _first_line, export, onnx_path  # noqa: E402,F401


def _load_model(spec):
    """MODULE:CALLABLE, MODULE a dotted name or a path to a .py file."""
    if ":" not in spec:
        raise ExportError(f"model '{spec}' must be MODULE:CALLABLE, e.g. torchvision.models:resnet50")
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ExportError(f"model '{spec}' must be MODULE:CALLABLE, e.g. torchvision.models:resnet50")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise ExportError(f"{module_name}: no such file")
            loader = importlib.util.spec_from_file_location("convgen_user_model", module_name)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ExportError:
        raise
    except Exception as error:  # ImportError, SyntaxError, or whatever the module raises
        raise ExportError(f"cannot import '{module_name}': {_first_line(error)}") from error
    factory = getattr(module, attr, None)
    if factory is None:
        raise ExportError(f"'{module_name}' has no attribute '{attr}'")
    try:
        model = factory() if not isinstance(factory, nn.Module) else factory
    except Exception as error:
        raise ExportError(f"'{spec}' raised {_first_line(error)}") from error
    if not isinstance(model, nn.Module):
        raise ExportError(f"'{spec}' did not return a torch.nn.Module")
    return model


def _input_shape(text):
    try:
        shape = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not N,C,H,W") from None
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not four positive integers N,C,H,W")
    return shape


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Export a PyTorch CNN's convolutions as convgen input (.npz + geometry .json).")
    parser.add_argument("model", help="MODULE:CALLABLE returning the nn.Module "
                                      "(MODULE is a dotted name or a .py file)")
    parser.add_argument("--input-shape", type=_input_shape, required=True, metavar="N,C,H,W",
                        help="shape of the example input the geometry is recorded with")
    parser.add_argument("-o", "--output", required=True, help="the .npz to write; the sidecar "
                                                              "goes next to it with .json")
    parser.add_argument("--prune", type=float, metavar="AMOUNT",
                        help="prune each conv by magnitude to this fraction of zeros (e.g. 0.9)")
    parser.add_argument("--prune-filters", type=float, metavar="AMOUNT",
                        help="first prune this fraction of each conv's filters by L2 norm "
                             "(ln_structured), zeroing their bias too, as removing the channel "
                             "does; --prune then prunes the remaining weights")
    parser.add_argument("--keep-mask", action="store_true",
                        help="write NAME.weight_orig + NAME.weight_mask as torch.nn.utils.prune "
                             "leaves them, instead of NAME.weight")
    parser.add_argument("--no-fold-bn", action="store_true",
                        help="do not fold BatchNorm2d into the preceding conv")
    parser.add_argument("--compressed", action="store_true", help="use np.savez_compressed")
    parser.add_argument("--onnx", action="store_true",
                        help="also write the network as ONNX (opset 13) next to the .npz, same "
                             "stem, .onnx, its convs carrying the exported weights")
    parser.add_argument("--seed", type=int, default=0, help="seed for the example input and any "
                                                            "random initialisation (default 0)")
    parser.add_argument("--name", help="model name for the sidecar (default: the class name)")
    args = parser.parse_args(argv)

    try:
        torch.manual_seed(args.seed)
        model = _load_model(args.model)
        example = torch.randn(*args.input_shape)
        sidecar = export(model, example, args.output, prune=args.prune,
                         prune_filters=args.prune_filters, fold_bn=not args.no_fold_bn,
                         keep_mask=args.keep_mask,
                         compressed=args.compressed, model_name=args.name, onnx=args.onnx)
    except ExportError as error:
        print(f"export_pytorch: error: {error}", file=sys.stderr)
        return 2
    wrote = (f"{args.output}, its sidecar and {onnx_path(args.output)}" if args.onnx
             else f"{args.output} and its sidecar")
    print(f"export_pytorch: wrote {wrote}: {len(sidecar['layers'])} conv layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
