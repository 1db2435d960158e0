"""The float layer graph every model becomes before integer export: one small vocabulary of ops.

Both ways a model arrives -- ``torch.export`` of an nn.Module (software.frontend.capture) and an ONNX
file (software.frontend.onnx_import) -- produce a :class:`Graph` of :class:`Node` s in topological
order, and :func:`normalize` then makes the two agree: identities dropped, BatchNorm folded into
the convolution or linear layer before it, ReLU / clamp fused into the op before it, and every
node renamed canonically (``conv2d``, ``conv2d_1``, ``add``, ...: the names torch.export itself
uses), so the same network gives the same graph from either source.

Ops (shapes are per sample; the batch is dimension 0 and never touched):

    input                         the model's one input
    linear    weight F x K, bias  y = x W^T + b over the last dimension (on the array)
    conv      weight, bias; stride, padding, dilation, groups      (on the array, im2col per group)
    batchnorm weight, bias, mean, var; eps                          (folded away by normalize)
    relu, clamp(lo, hi)                                            (fused into the op before, if alone)
    add       two inputs                                            (residual add)
    maxpool / avgpool    kernel, stride, padding, dilation / count_include_pad
    adaptive_avgpool     output size
    flatten(start, end), reshape(shape), permute(dims)             (dims count the batch dimension)
    identity                                                        (dropped by normalize)
    host      target (a torch op's qualified name), args, kwargs   (runs on the host, sample by sample)

``linear``, ``conv`` and ``add`` carry ``act``: None, or ``[lo, hi]`` (a fused ReLU is ``[0, None]``).

A host op runs one sample at a time: torch.export bakes the example's batch size (1) into shapes.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

ARRAY_OPS = ("linear", "conv")
ACT_OPS = ("linear", "conv", "add")


class GraphError(ValueError):
    """A model that cannot become a layer graph. One line, naming the node."""


@dataclasses.dataclass
class Node:
    name: str
    op: str
    inputs: list
    attrs: dict = dataclasses.field(default_factory=dict)
    params: dict = dataclasses.field(default_factory=dict)     # name -> float32 tensor
    source: str = ""        # the module path / ONNX node it came from (pruning groups, messages)

    def describe(self):
        where = f" ({self.source})" if self.source and self.source != self.name else ""
        if self.op == "host":
            return f"'{self.name}'{where} [{self.attrs['target']}]"
        return f"'{self.name}'{where} [{self.op}]"


@dataclasses.dataclass
class Graph:
    nodes: list
    output: str

    def node(self, name) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def input(self) -> Node:
        return self.nodes[0]

    def consumers(self, name):
        return [n for n in self.nodes if name in n.inputs]

    @property
    def array_nodes(self):
        return [n for n in self.nodes if n.op in ARRAY_OPS]

    @property
    def host_nodes(self):
        return [n for n in self.nodes if n.op == "host"]


# ----------------------------------------------------------------------------------------------
# Host op arguments: node references and tensors inside JSON-able structures


def encode_ref(name):
    return {"node": name}


def encode_param(key):
    return {"param": key}


def decode_args(value, env, params):
    """Host op arguments with ``{"node": n}`` replaced by ``env[n]`` and ``{"param": k}`` by ``params[k]``."""
    if isinstance(value, dict):
        if set(value) == {"node"}:
            return env[value["node"]]
        if set(value) == {"param"}:
            return params[value["param"]]
        if set(value) == {"dtype"}:
            return getattr(torch, value["dtype"])
        if set(value) == {"device"}:
            return torch.device("cpu")
        return {k: decode_args(v, env, params) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [decode_args(v, env, params) for v in value]
    return value


def rename_args(value, mapping):
    if isinstance(value, dict):
        if set(value) == {"node"}:
            return {"node": mapping.get(value["node"], value["node"])}
        return {k: rename_args(v, mapping) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rename_args(v, mapping) for v in value]
    return value


def resolve_target(target: str):
    """``torch.ops.<namespace>.<op>.<overload>`` from its qualified name; GraphError if it is not registered."""
    parts = target.split(".")
    if len(parts) != 3:
        raise GraphError(f"host op {target!r} is not a torch op name (namespace.op.overload)")
    try:
        return getattr(getattr(getattr(torch.ops, parts[0]), parts[1]), parts[2])
    except (AttributeError, RuntimeError):
        raise GraphError(f"host op {target} is not registered in this torch (import the module that defines "
                         "it)") from None


# ----------------------------------------------------------------------------------------------
# The float interpreter (calibration, shape inference, the float reference)


def apply_act(y, act):
    if act is None:
        return y
    lo, hi = act
    return torch.clamp(y, min=lo, max=hi)


def run_host(node: Node, env, fn=None):
    """A host op over the batch, one sample at a time (shapes in its arguments are the example's)."""
    fn = fn or resolve_target(node.attrs["target"])
    refs = node.inputs
    n = env[refs[0]].shape[0]
    outs = []
    for i in range(n):
        local = {r: env[r][i:i + 1] for r in refs}
        args = decode_args(node.attrs["args"], local, node.params)
        kwargs = decode_args(node.attrs.get("kwargs", {}), local, node.params)
        out = fn(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise GraphError(f"node {node.describe()} does not return one float tensor: it cannot run in the "
                             "integer model")
        outs.append(out)
    return torch.cat(outs) if outs else torch.zeros(0)


def sample_shape(node: Node, shape):
    """The per-sample output shape of a shape op."""
    full = (1,) + tuple(shape)
    x = torch.empty(full)
    return tuple(shape_op(node, x).shape[1:])


def shape_op(node: Node, x):
    a = node.attrs
    if node.op == "flatten":
        return torch.flatten(x, a["start"], a["end"])
    if node.op == "reshape":
        return x.reshape((x.shape[0],) + tuple(a["shape"]))
    if node.op == "permute":
        return x.permute(*a["dims"])
    raise AssertionError(node.op)


def run_node(node: Node, xs):
    """One node in float32 on a batch; ``xs`` are its input tensors."""
    a, p = node.attrs, node.params
    op = node.op
    if op == "linear":
        return apply_act(F.linear(xs[0], p["weight"], p.get("bias")), a.get("act"))
    if op == "conv":
        return apply_act(F.conv2d(xs[0], p["weight"], p.get("bias"), a["stride"], a["padding"], a["dilation"],
                                  a["groups"]), a.get("act"))
    if op == "batchnorm":
        return F.batch_norm(xs[0], p["mean"], p["var"], p.get("weight"), p.get("bias"), False, 0.0, a["eps"])
    if op == "relu":
        return torch.relu(xs[0])
    if op == "clamp":
        return torch.clamp(xs[0], min=a["lo"], max=a["hi"])
    if op == "add":
        return apply_act(xs[0] + xs[1], a.get("act"))
    if op == "maxpool":
        return F.max_pool2d(xs[0], a["kernel"], a["stride"], a["padding"], a["dilation"])
    if op == "avgpool":
        return F.avg_pool2d(xs[0], a["kernel"], a["stride"], a["padding"], count_include_pad=a["count_include_pad"])
    if op == "adaptive_avgpool":
        return F.adaptive_avg_pool2d(xs[0], a["size"])
    if op in ("flatten", "reshape", "permute"):
        return shape_op(node, xs[0])
    if op == "identity":
        return xs[0]
    raise GraphError(f"node {node.describe()}: no float implementation of op {op!r}")


@torch.no_grad()
def run_float(graph: Graph, x, *, observe=None):
    """The graph's float output for the batch ``x``; ``observe(node, tensor)`` sees every node's output."""
    env = {graph.input.name: torch.as_tensor(x, dtype=torch.float32)}
    if observe:
        observe(graph.input, env[graph.input.name])
    for node in graph.nodes[1:]:
        xs = [env[i] for i in node.inputs]
        y = run_host(node, env) if node.op == "host" else run_node(node, xs)
        env[node.name] = y
        if observe:
            observe(node, y)
    return env[graph.output]


def infer_shapes(graph: Graph, input_shape):
    """Per-sample output shape of every node, by running one zero sample; GraphError naming the node that fails."""
    shapes = {}
    env = {graph.input.name: torch.zeros((1,) + tuple(input_shape))}
    shapes[graph.input.name] = tuple(input_shape)
    with torch.no_grad():
        for node in graph.nodes[1:]:
            try:
                y = run_host(node, env) if node.op == "host" else run_node(node, [env[i] for i in node.inputs])
            except (RuntimeError, ValueError, IndexError, TypeError) as e:
                if isinstance(e, GraphError):
                    raise
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise GraphError(f"node {node.describe()} does not take its input "
                                 f"{[shapes.get(i) for i in node.inputs]}: {first}") from None
            env[node.name] = y
            shapes[node.name] = tuple(y.shape[1:])
    return shapes


# ----------------------------------------------------------------------------------------------
# Normalization


def _rewire(graph: Graph, old, new):
    for n in graph.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
        if n.op == "host":
            n.attrs["args"] = rename_args(n.attrs["args"], {old: new})
            n.attrs["kwargs"] = rename_args(n.attrs.get("kwargs", {}), {old: new})
    if graph.output == old:
        graph.output = new


def _drop(graph: Graph, node: Node):
    _rewire(graph, node.name, node.inputs[0])
    graph.nodes.remove(node)


def fold_batchnorm(conv: Node, bn: Node):
    """BatchNorm after conv/linear folded into its weights: w' = w * g / sqrt(v + eps), b' = (b - m) g / sqrt(v + eps) + beta.
    Computed in float64 and rounded once, so every source of the same network folds to the same numbers."""
    p = bn.params
    var, mean = p["var"].double(), p["mean"].double()
    gamma = p["weight"].double() if "weight" in p else torch.ones_like(var)
    beta = p["bias"].double() if "bias" in p else torch.zeros_like(var)
    factor = gamma / torch.sqrt(var + bn.attrs["eps"])
    w = conv.params["weight"].double()
    bias = conv.params["bias"].double() if "bias" in conv.params else torch.zeros_like(mean)
    conv.params["weight"] = (w * factor.reshape((-1,) + (1,) * (w.ndim - 1))).float()
    conv.params["bias"] = ((bias - mean) * factor + beta).float()


def normalize(graph: Graph) -> Graph:
    """Drop identities, fold BatchNorm, fuse activations, rename canonically (see the module docstring)."""
    for node in [n for n in graph.nodes if n.op == "identity"]:
        _drop(graph, node)
    for node in list(graph.nodes):
        if node.op != "batchnorm":
            continue
        producer = graph.node(node.inputs[0])
        if producer.op in ARRAY_OPS and len(graph.consumers(producer.name)) == 1 and "act" not in producer.attrs \
                and producer.name != graph.output:
            fold_batchnorm(producer, node)
            _drop(graph, node)
        else:   # a BatchNorm with nothing to fold into runs on the host
            node.op, node.attrs = "host", {
                "target": "aten.batch_norm.default",
                "args": [encode_ref(node.inputs[0]), encode_param("weight"), encode_param("bias"),
                         encode_param("mean"), encode_param("var"), False, 0.0, node.attrs["eps"], False]}
            node.params.setdefault("weight", torch.ones_like(node.params["var"]))
            node.params.setdefault("bias", torch.zeros_like(node.params["var"]))
    for node in list(graph.nodes):
        if node.op not in ("relu", "clamp"):
            continue
        lo, hi = (0.0, None) if node.op == "relu" else (node.attrs["lo"], node.attrs["hi"])
        producer = graph.node(node.inputs[0])
        if producer.op in ACT_OPS and producer.attrs.get("act") is None and lo is not None and lo >= 0 \
                and len(graph.consumers(producer.name)) == 1 and producer.name != graph.output:
            producer.attrs["act"] = [float(lo), None if hi is None else float(hi)]
            _drop(graph, node)
    return rename(graph)


def canonical_name(node: Node):
    if node.op == "input":
        return "x"
    if node.op == "host":
        return node.attrs["target"].split(".")[1]
    return {"conv": "conv2d"}.get(node.op, node.op)


def rename(graph: Graph) -> Graph:
    """Names from the op and its order (``conv2d``, ``conv2d_1``, ...), the same whatever the source called them."""
    counts, mapping = {}, {}
    for node in graph.nodes:
        base = canonical_name(node)
        k = counts.get(base, 0)
        counts[base] = k + 1
        mapping[node.name] = base if k == 0 else f"{base}_{k}"
    for node in graph.nodes:
        node.name = mapping[node.name]
        node.inputs = [mapping[i] for i in node.inputs]
        if node.op == "host":
            node.attrs["args"] = rename_args(node.attrs["args"], mapping)
            node.attrs["kwargs"] = rename_args(node.attrs.get("kwargs", {}), mapping)
    graph.output = mapping[graph.output]
    return graph


def check_finite(graph: Graph):
    for node in graph.nodes:
        for key, t in node.params.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise GraphError(f"node {node.describe()}: {key} holds NaN or inf")


def conv_out(size, kernel, stride, padding, dilation):
    return math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1
