"""An ONNX file (the FINN / hls4ml interchange) into the same float layer graph as graph capture.

Parsed with the ``onnx`` package; nothing in the file runs. Supported operators, mapped onto the
ops of software.frontend.graph: Conv, Gemm, MatMul (by a constant), BatchNormalization, Relu,
Clip, Add, MaxPool, AveragePool, GlobalAveragePool, Flatten (axis 1), Reshape (constant shape
keeping the batch), Transpose (keeping the batch), Identity, Dropout; Constant and Identity of
constants are folded. Any other operator is refused with one line naming the node.
:func:`software.frontend.graph.normalize` then folds BatchNorm, fuses activations and renames, so
a network exported from PyTorch with BatchNorm kept (``training=TrainingMode.PRESERVE``) gives
the graph that capturing the PyTorch module gives.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .graph import Graph, GraphError, Node, check_finite, normalize

SUPPORTED = ("Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "Add", "MaxPool", "AveragePool",
             "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Identity", "Dropout", "Constant")


def _symmetric(pads, where):
    pads = list(pads or [0, 0, 0, 0])
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise GraphError(f"ONNX node {where}: asymmetric pads {pads} are not supported")
    return [int(pads[0]), int(pads[1])]


def import_onnx(path) -> Graph:
    """The normalized float graph of the ONNX model at ``path``; GraphError (one line) if it cannot be one."""
    import onnx
    from onnx import helper, numpy_helper

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise GraphError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(path)
    except Exception as e:      # noqa: BLE001 - protobuf's DecodeError and friends
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GraphError(f"{path}: not a readable ONNX file ({first})") from None
    g = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise GraphError(f"{path}: the model has {len(inputs)} inputs and {len(g.output)} outputs; the array path "
                         "takes one of each")
    nodes = [Node(name="input", op="input", inputs=[], source="input")]
    names = {inputs[0].name: "input"}

    def const(name, where):
        if name not in consts:
            raise GraphError(f"ONNX node {where}: input {name!r} must be a constant")
        return torch.from_numpy(np.array(consts[name], dtype=np.float32))

    def ref(name, where):
        if name not in names:
            raise GraphError(f"ONNX node {where}: input {name!r} is not a tensor of the graph")
        return names[name]

    for index, n in enumerate(g.node):
        op = n.op_type
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        where = f"'{n.name or n.output[0]}' ({op})"
        if op == "Constant":
            if "value" not in attrs:
                raise GraphError(f"ONNX node {where}: only tensor constants are supported")
            consts[n.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        if op in ("Identity", "Dropout") and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
            continue
        if op not in SUPPORTED:
            raise GraphError(f"ONNX node {where} is outside the supported set ({', '.join(SUPPORTED)})")
        name = f"onnx{index}"
        node = Node(name=name, op="", inputs=[], source=n.name)
        if op == "Conv":
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise GraphError(f"ONNX node {where}: auto_pad is not supported; export with explicit pads")
            w = const(n.input[1], where)
            node.op, node.inputs = "conv", [ref(n.input[0], where)]
            node.params["weight"] = w
            if len(n.input) > 2 and n.input[2]:
                node.params["bias"] = const(n.input[2], where)
            node.attrs = {"stride": list(attrs.get("strides", [1, 1])), "padding": _symmetric(attrs.get("pads"), where),
                          "dilation": list(attrs.get("dilations", [1, 1])), "groups": int(attrs.get("group", 1))}
            node.source = n.input[1].rsplit(".", 1)[0]
        elif op in ("Gemm", "MatMul"):
            if op == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0
                                 or attrs.get("beta", 1.0) != 1.0):
                raise GraphError(f"ONNX node {where}: only Gemm with alpha = beta = 1 and no transA is supported")
            w = const(n.input[1], where)
            if op == "MatMul" or not attrs.get("transB", 0):
                w = w.T.contiguous()
            node.op, node.inputs = "linear", [ref(n.input[0], where)]
            node.params["weight"] = w
            if op == "Gemm" and len(n.input) > 2 and n.input[2]:
                node.params["bias"] = const(n.input[2], where)
            node.source = n.input[1].rsplit(".", 1)[0]
        elif op == "BatchNormalization":
            if attrs.get("training_mode", 0):
                raise GraphError(f"ONNX node {where}: training-mode BatchNormalization is not supported")
            node.op, node.inputs = "batchnorm", [ref(n.input[0], where)]
            node.params = {k: const(v, where) for k, v in zip(("weight", "bias", "mean", "var"), n.input[1:5])}
            node.attrs = {"eps": float(attrs.get("epsilon", 1e-5))}
        elif op == "Relu":
            node.op, node.inputs = "relu", [ref(n.input[0], where)]
        elif op == "Clip":
            bounds = [float(const(i, where)) if i else None for i in list(n.input[1:3]) + [""] * (3 - len(n.input))]
            lo = bounds[0] if bounds[0] is not None else attrs.get("min")
            hi = bounds[1] if bounds[1] is not None else attrs.get("max")
            node.op, node.inputs, node.attrs = "clamp", [ref(n.input[0], where)], {"lo": lo, "hi": hi}
        elif op == "Add":
            node.op, node.inputs = "add", [ref(n.input[0], where), ref(n.input[1], where)]
        elif op in ("MaxPool", "AveragePool"):
            if attrs.get("ceil_mode", 0) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise GraphError(f"ONNX node {where}: ceil_mode and auto_pad are not supported")
            kernel = list(attrs["kernel_shape"])
            node.inputs = [ref(n.input[0], where)]
            node.attrs = {"kernel": kernel, "stride": list(attrs.get("strides", kernel)),
                          "padding": _symmetric(attrs.get("pads"), where)}
            if op == "MaxPool":
                node.op = "maxpool"
                node.attrs["dilation"] = list(attrs.get("dilations", [1, 1]))
            else:
                node.op = "avgpool"
                node.attrs["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
        elif op == "GlobalAveragePool":
            node.op, node.inputs, node.attrs = "adaptive_avgpool", [ref(n.input[0], where)], {"size": [1, 1]}
        elif op == "Flatten":
            if attrs.get("axis", 1) != 1:
                raise GraphError(f"ONNX node {where}: only Flatten with axis 1 keeps the batch")
            node.op, node.inputs, node.attrs = "flatten", [ref(n.input[0], where)], {"start": 1, "end": -1}
        elif op == "Reshape":
            shape = [int(d) for d in np.asarray(consts.get(n.input[1], [])).reshape(-1)] if n.input[1] in consts else []
            if not shape or shape[0] not in (1, -1, 0) or 0 in shape[1:] or (shape[0] == -1 and -1 in shape[1:]):
                raise GraphError(f"ONNX node {where}: only a constant shape that keeps the batch is supported")
            node.op, node.inputs, node.attrs = "reshape", [ref(n.input[0], where)], {"shape": shape[1:]}
        elif op == "Transpose":
            perm = [int(p) for p in attrs.get("perm", [])]
            if not perm or perm[0] != 0:
                raise GraphError(f"ONNX node {where}: only a permutation that keeps the batch is supported")
            node.op, node.inputs, node.attrs = "permute", [ref(n.input[0], where)], {"dims": perm}
        elif op in ("Identity", "Dropout"):
            node.op, node.inputs = "identity", [ref(n.input[0], where)]
        nodes.append(node)
        names[n.output[0]] = name
    graph = Graph(nodes=nodes, output=ref(g.output[0].name, "output"))
    check_finite(graph)
    return normalize(graph)
