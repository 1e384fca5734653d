"""Tiny ONNX graphs written node by node, so that their operators and FLOPs are known by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def conv_relu_conv_pool_gemm(path: Path, channels=(3, 4, 8), size=8, classes=10, seed=0) -> Path:
    """x -> Conv 3x3 (pad 1) -> ReLU -> Conv 3x3 (pad 1) -> GlobalAveragePool -> Flatten -> Gemm, batch axis N.

    Node names: conv1, relu1, conv2, gap, flat, fc.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c0, c1, c2 = channels
    rng = np.random.default_rng(seed)

    def init(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc"),
    ]
    inits = [init("w1", (c1, c0, 3, 3), (2 / (c0 * 9)) ** 0.5), init("b1", (c1,), 0.1),
             init("w2", (c2, c1, 3, 3), (2 / (c1 * 9)) ** 0.5), init("b2", (c2,), 0.1),
             init("wf", (classes, c2), (1 / c2) ** 0.5), init("bf", (classes,), 0.1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c0, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
