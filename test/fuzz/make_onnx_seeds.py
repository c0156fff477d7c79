#!/usr/bin/env python3
"""Writes the ONNX fuzz seeds (test/fuzz/corpus/onnx/): small valid models
that reach every branch of src/model/OnnxModel, and a few broken ones.

    /usr/bin/python3 test/fuzz/make_onnx_seeds.py

Needs python3-onnx and numpy. The seeds are committed; rerun only to change them.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "onnx")
rng = np.random.default_rng(7)


def weights(shape, sparsity=0.8, dtype=np.float32):
    w = rng.standard_normal(shape).astype(dtype)
    w[rng.random(shape) < sparsity] = 0
    return w


def model(nodes, inputs, outputs, initializers, opset=13):
    graph = helper.make_graph(nodes, "seed", inputs, outputs, initializers)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="convgen-seeds")
    m.ir_version = 8
    return m


def x(name="x", shape=(1, 4, 6, 6)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def y(name, rank=4):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * rank)


def save(name, m, check=True):
    if check:
        onnx.checker.check_model(m)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(m.SerializeToString())


def main():
    os.makedirs(OUT, exist_ok=True)
    w = numpy_helper.from_array(weights((8, 4, 3, 3)), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1])

    save("conv_relu.onnx", model([conv, helper.make_node("Relu", ["c"], ["r"], name="relu")],
                                 [x()], [y("r")], [w, b]))

    bn = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
          ((rng.random(8) + 0.5, "g"), (rng.standard_normal(8), "be"),
           (rng.standard_normal(8), "m"), (rng.random(8) + 0.5, "v"))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], name="bn"),
             helper.make_node("Clip", ["n", "lo", "hi"], ["r"], name="relu6")]
    clip = [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.0, "lo"), (6.0, "hi"))]
    save("conv_bn_relu6.onnx", model(nodes, [x()], [y("r")], [w] + bn + clip))

    dw = numpy_helper.from_array(weights((4, 1, 3, 3), dtype=np.float16), "dw")
    save("depthwise_f16_symbolic_batch.onnx",
         model([helper.make_node("Conv", ["x", "dw"], ["c"], group=4, auto_pad="SAME_UPPER")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
               [y("c")], [dw]))

    typed = helper.make_tensor("w", TensorProto.FLOAT, [8, 4, 1, 1],
                               weights((8, 4, 1, 1)).flatten().tolist())
    save("typed_1x1_dilated.onnx",
         model([helper.make_node("Conv", ["x", "w"], ["c"], name="", dilations=[2, 2])],
               [x()], [y("c")], [typed]))

    old = helper.make_node("Clip", ["c"], ["r"], min=0.0, max=6.0)
    save("opset9_clip_attributes.onnx",
         model([helper.make_node("Conv", ["x", "w"], ["c"]), old], [x()], [y("r")], [w], opset=9))

    # What convgen skips, in one graph: computed weights, 1-D, asymmetric pads.
    w1 = numpy_helper.from_array(weights((8, 4, 3)), "w1")
    save("skipped_convs.onnx",
         model([helper.make_node("Conv", ["x", "wx"], ["a"], name="computed"),
                helper.make_node("Conv", ["x1", "w1"], ["b1"], name="one_d"),
                helper.make_node("Conv", ["x", "w"], ["c"], name="lopsided", pads=[1, 0, 0, 1])],
               [x(), x("wx", (8, 4, 3, 3)), x("x1", (1, 4, 6))], [y("a"), y("b1", 3), y("c")], [w, w1]))

    save("opset99.onnx", model([conv], [x()], [y("c")], [w, b], opset=99), check=False)
    with open(os.path.join(OUT, "conv_relu.onnx"), "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, "truncated.onnx"), "wb") as f:
        f.write(data[: len(data) // 2])

    # Zero channels across layers (src/model/ZeroChannels): zero filters behind
    # a Relu, a pool and a Concat, a consumer with unread inputs, an Add.
    wa = weights((8, 4, 3, 3))
    wa[[1, 3]] = 0
    wc = weights((6, 16, 1, 1), sparsity=0.5)
    wc[:, [0, 9]] = 0
    save("zero_channels.onnx",
         model([helper.make_node("Conv", ["x", "wa"], ["a"], name="A", pads=[1, 1, 1, 1]),
                helper.make_node("Relu", ["a"], ["r"]),
                helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                helper.make_node("Concat", ["r", "p"], ["cat"], axis=1),
                helper.make_node("Conv", ["cat", "wc"], ["c"], name="C"),
                helper.make_node("Conv", ["cat", "wc"], ["d"], name="D"),
                helper.make_node("Add", ["c", "d"], ["s"])],
               [x()], [y("s")], [numpy_helper.from_array(wa, "wa"),
                                 numpy_helper.from_array(wc, "wc")]))


if __name__ == "__main__":
    main()
