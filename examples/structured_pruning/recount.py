#!/usr/bin/env python3
"""Brute-force recount of what convgen's zero-channel propagation removes.

    python3 recount.py MODEL.onnx --convgen build/tools/convgen [--json OUT]

convgen proves, from the weights and the graph's rules, which input channels
of each layer are zero and which output channels nobody reads
(src/model/ZeroChannels). This script finds them by running the network
instead, with no rule of convgen's:

- it evaluates the ONNX graph in float64 with torch on random inputs, with
  each ReLU (and Clip) applied only to channels that are constant (the same
  value at every position of every run) and the identity elsewhere: so a
  channel is zero only where the weights and biases force it, not where a
  ReLU happens to be negative on the inputs tried;
- a layer's input channel is zero if it is exactly 0 in every run;
- a layer's output channel (the layer's result, after its fused activation)
  that is not zero is unread if adding noise to it leaves every graph output
  bit for bit the same.

Then it counts, per layer, the nonzero weights on those input channels or in
those filters, and compares the count with `convgen --list --json`'s
channels.removed_nonzeros. A channel convgen calls zero that a run shows is
not would be unsafe: that is an error too. Channels found zero only by
running the real network (a ReLU that is negative on every input tried)
are listed, not counted: nothing proves them.

Exit codes: 0 the counts match, 1 they do not (or a claim is unsafe),
2 cannot run (no torch or onnx, an op this evaluator lacks, bad arguments).
"""
import argparse
import json
import subprocess
import sys

try:
    import numpy as np
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper
except ImportError as error:
    print(f"recount: cannot run: {error}", file=sys.stderr)
    sys.exit(2)


class Unsupported(Exception):
    pass


def _attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(attrs):
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise Unsupported("asymmetric pads")
    return pads[0], pads[1]


def _constant_channels(t):
    """Per channel of an N, C, ... tensor: whether it holds one value throughout."""
    flat = t.transpose(0, 1).reshape(t.shape[1], -1)
    return (flat == flat[:, :1]).all(dim=1)


def _on_constant_channels(function, t):
    """`function` where a channel is constant, the identity elsewhere."""
    shape = [1, t.shape[1]] + [1] * (t.dim() - 2)
    return torch.where(_constant_channels(t).reshape(shape), function(t), t)


def _run_node(node, x, constants, structural):
    """One ONNX node on float64 tensors."""
    a = _attributes(node)
    op = node.op_type
    if structural and op in ("Relu", "Clip"):
        return _on_constant_channels(lambda t: _run_node(node, [t] + x[1:], constants, False),
                                     x[0])
    if op == "Conv":
        weight = constants[node.input[1]]
        bias = constants[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        return F.conv2d(x[0], weight, bias, stride=tuple(a.get("strides", [1, 1])),
                        padding=_pads(a), dilation=tuple(a.get("dilations", [1, 1])),
                        groups=a.get("group", 1))
    if op == "Relu":
        return torch.relu(x[0])
    if op == "Clip":
        low = constants[node.input[1]].item() if len(node.input) > 1 and node.input[1] else None
        high = constants[node.input[2]].item() if len(node.input) > 2 and node.input[2] else None
        return torch.clamp(x[0], low, high)
    if op in ("Add", "Sum"):
        out = x[0]
        for other in x[1:]:
            out = out + other
        return out
    if op == "Identity" or op == "Dropout":
        return x[0]
    if op == "Concat":
        return torch.cat(x, dim=a.get("axis", 1))
    if op == "GlobalAveragePool":
        return x[0].mean(dim=(2, 3), keepdim=True)
    if op == "MaxPool" or op == "AveragePool":
        kernel = tuple(a["kernel_shape"])
        stride = tuple(a.get("strides", [1, 1]))
        if op == "MaxPool":
            return F.max_pool2d(x[0], kernel, stride, _pads(a))
        return F.avg_pool2d(x[0], kernel, stride, _pads(a),
                            count_include_pad=bool(a.get("count_include_pad", 0)))
    if op == "BatchNormalization":
        gamma, beta, mean, var = (constants[name] for name in node.input[1:5])
        return F.batch_norm(x[0], mean, var, gamma, beta, False, 0.0, a.get("epsilon", 1e-5))
    if op == "Flatten":
        return torch.flatten(x[0], a.get("axis", 1))
    if op == "Gemm":
        weight = constants[node.input[1]]
        if a.get("transB", 0):
            weight = weight.t()
        out = a.get("alpha", 1.0) * x[0] @ weight
        if len(node.input) > 2:
            out = out + a.get("beta", 1.0) * constants[node.input[2]]
        return out
    raise Unsupported(f"op {op}")


def evaluate(model, constants, inputs, override=None, structural=True):
    """Every tensor of the graph; `override` (name, function) replaces one."""
    values = dict(inputs)
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        args = [values[name] if name in values else constants[name] for name in node.input
                if name]
        out = _run_node(node, args, constants, structural)
        values[node.output[0]] = out
        if override and node.output[0] == override[0]:
            values[node.output[0]] = override[1](out)
    return values


def recount(model_path, listing, runs=4, seed=0):
    model = onnx.load(model_path)
    constants = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float64))
                 for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = torch.from_numpy(
                numpy_helper.to_array(node.attribute[0].t).astype(np.float64))
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for value in model.graph.input:
        if value.name in constants:
            continue
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        shape[0] = runs
        inputs[value.name] = torch.randn(*shape, generator=generator, dtype=torch.float64)
    values = evaluate(model, constants, inputs)
    real = evaluate(model, constants, inputs, structural=False)
    outputs = [o.name for o in model.graph.output]
    convs = {(n.name or n.output[0]): n for n in model.graph.node if n.op_type == "Conv"}

    rows, problems = [], []
    for layer in listing["layers"]:
        name, result = layer["name"], layer["graph_output"]
        conv = convs[name]
        weight = constants[conv.input[1]].numpy()
        groups = _attributes(conv).get("group", 1)
        x = values[conv.input[0]]
        zero_in = [c for c in range(x.shape[1]) if not x[:, c].any()]
        dead = [c for c in range(x.shape[1]) if not real[conv.input[0]][:, c].any()]
        y = values[result]
        unread = []
        for k in range(y.shape[1]):
            if not y[:, k].any():
                continue  # zero: whether it is read does not change the count

            def perturb(t, k=k):
                t = t.clone()
                t[:, k] += 10.0 * torch.randn(t[:, k].shape, generator=generator,
                                              dtype=torch.float64)
                return t
            changed = evaluate(model, constants, inputs, (result, perturb))
            if all(torch.equal(changed[o], values[o]) for o in outputs):
                unread.append(k)
        out_channels, in_per_group = weight.shape[0], weight.shape[1]
        removed = 0
        for k in range(out_channels):
            group = k // (out_channels // groups)
            for c in range(in_per_group):
                if k in unread or group * in_per_group + c in zero_in:
                    removed += int(np.count_nonzero(weight[k, c]))
        facts = layer.get("channels", {})
        claimed = facts.get("removed_nonzeros", 0)
        unsafe = sorted(set(facts.get("zero_inputs", [])) - set(dead))
        if unsafe:
            problems.append(f"{name}: convgen calls input channels {unsafe} zero; a run says not")
        if sorted(facts.get("zero_inputs", [])) != zero_in:
            problems.append(f"{name}: convgen's zero inputs {facts.get('zero_inputs', [])}, the "
                            f"recount's {zero_in}")
        unprovable = sorted(set(dead) - set(zero_in))
        rows.append({"layer": name, "convgen": claimed, "recount": removed,
                     "zero_inputs": zero_in, "unread_nonzero_outputs": unread,
                     "zero_only_by_running": unprovable})
        if removed != claimed:
            problems.append(f"{name}: convgen removes {claimed} nonzeros, the recount {removed}")
    return rows, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the ONNX model")
    parser.add_argument("--convgen", required=True, help="the convgen tool")
    parser.add_argument("--runs", type=int, default=4, help="random inputs (default 4)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    listed = subprocess.run([args.convgen, "--weights", args.model, "--list", "--json"],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        print(f"recount: convgen --list failed: {listed.stderr.strip()}", file=sys.stderr)
        return 2
    try:
        rows, problems = recount(args.model, json.loads(listed.stdout), args.runs)
    except Unsupported as error:
        print(f"recount: cannot evaluate the graph: {error}", file=sys.stderr)
        return 2
    width = max(len(r["layer"]) for r in rows)
    print(f"{'layer':<{width}}  {'convgen':>8}  {'recount':>8}  zero only by running")
    for r in rows:
        print(f"{r['layer']:<{width}}  {r['convgen']:>8}  {r['recount']:>8}  "
              f"{r['zero_only_by_running'] or '-'}")
    total = sum(r["convgen"] for r in rows), sum(r["recount"] for r in rows)
    print(f"{'total':<{width}}  {total[0]:>8}  {total[1]:>8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "problems": problems}, f, indent=1)
    sys.stdout.flush()
    for problem in problems:
        print(f"recount: {problem}", file=sys.stderr)
    print("recount: " + ("MATCH" if not problems else "MISMATCH"), flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
