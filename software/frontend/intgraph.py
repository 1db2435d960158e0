"""The integer layer graph: a float graph (software.frontend.graph) quantized and packed for the array.

Every tensor of the graph is integers ``v`` standing for ``v * 2**exponent``, either unsigned
(``[0, 2**b - 1]``, after a ReLU) or signed (sign and b-bit magnitude, ``[-(2**b - 1), 2**b - 1]``),
with ``b`` the array's activation width. Nodes (:class:`IntNode`, ``op``):

    input     float inputs quantized at the calibrated exponent
    matmul    Linear / Conv2d: ``acc = W_int x`` on the array, one packed matrix (:class:`ArrayLayer`) per
              convolution group; ``x`` is im2col'ed for a convolution. A signed input runs twice, its
              positive and its negative part (the array's activations are unsigned), and the host subtracts.
              Then ``acc + bias`` is requantized by a rounding right shift per output channel to the
              calibrated exponent (saturating: a fused ReLU is the unsigned range, ReLU6 a clamp), or,
              for the graph's output, left-aligned exactly to the finest channel scale (logits)
    add       both operands shifted to the calibrated exponent of the sum (rounding), added, saturated
    maxpool / avgpool / adaptive_avgpool     integer max / rounded mean over windows, exponent kept
    clamp     integer bounds at the tensor's exponent
    flatten / reshape / permute              shapes only
    host      a torch op the array cannot run: inputs dequantized, the op in float32, the result
              quantized at its calibrated exponent (sample by sample; see graph.py)

Weights are int per output channel at power-of-two scales (``intmodel._quantize_weight``), biases
int32 at the accumulator's scale. Exponents come from the float graph on calibration data (max |x|
rounded up to a power of two). ``run_with(layer_fn, x)`` hands every ``W_int x`` to ``layer_fn``,
so sim/ (RTL), the board host and the golden product (``software.golden.array.reference_layer``)
run the same graph; nothing here knows where the model came from.
"""
from __future__ import annotations

import dataclasses
import math
import types

import numpy as np
import torch
from tqdm.auto import tqdm

from software.packing.colcomb import ColumnCombining, group_columns, pack
from spec import ArrayConfig
from spec.checks import signed_width_for

from .graph import Graph, GraphError, resolve_target, decode_args, run_float, infer_shapes
from .intmodel import (BIAS_BITS, ConvGeometry, ExportError, IntegerRunner, PackedMatrix, TermBudget,
                       _quantize_weight, check_array_config, im2col)
from .quant import compute_scale, power_of_two_exponent, qrange, quantize, quantize_bias, requant_shift
from .termquant import term_quantize_weights

ARRAY = "matmul"
SHAPE_OPS = ("flatten", "reshape", "permute")
POOL_OPS = ("maxpool", "avgpool", "adaptive_avgpool")


@dataclasses.dataclass(frozen=True)
class ArrayLayer(PackedMatrix):
    """One matrix the array multiplies by: a Linear, a Conv2d, or one group of a grouped Conv2d."""

    name: str
    packing: ColumnCombining


@dataclasses.dataclass(frozen=True)
class IntNode:
    name: str
    op: str
    inputs: tuple
    exponent: int               # the output is v * 2**exponent
    signed: bool                # output range: unsigned [0, 2**b - 1] or signed +-(2**b - 1); logits: unbounded
    attrs: dict = dataclasses.field(default_factory=dict)
    arrays: dict = dataclasses.field(default_factory=dict)     # bias, shift (matmul); host op constants
    parts: tuple = ()           # ArrayLayer per convolution group (matmul)

    @property
    def logits(self):
        return self.op == ARRAY and self.attrs.get("mode") == "logits"


def _round_div(total, count):
    """Round half up of total / count for integer arrays (count > 0)."""
    return np.floor_divide(2 * total + count, 2 * count)


def _windows(x, kernel, stride, padding, dilation, fill):
    """(n, C, H, W) -> (n, C, oh, ow, kh*kw) windows, padding filled with ``fill``."""
    (ph, pw), (sh, sw), (kh, kw), (dh, dw) = padding, stride, kernel, dilation
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))[..., ::dh, ::dw]
    win = win[:, :, ::sh, ::sw]
    return win.reshape(win.shape[:4] + (-1,))


def _adaptive_bounds(size, out):
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


@dataclasses.dataclass(frozen=True)
class GraphModel(IntegerRunner):
    """An integer layer graph for ``config`` (a ``--no-act-signed`` array): see the module docstring."""

    config: ArrayConfig
    input_shape: tuple
    nodes: tuple                # IntNode, topological; nodes[0] is the input
    output: str
    term_budget: TermBudget | None = None

    # -- what the tools ask
    @property
    def input(self) -> IntNode:
        return self.nodes[0]

    @property
    def input_exponent(self):
        return self.input.exponent

    @property
    def layers(self):
        """Every matrix on the array, in execution order."""
        return [part for node in self.nodes if node.op == ARRAY for part in node.parts]

    @property
    def host_ops(self):
        return [n for n in self.nodes if n.op == "host"]

    def node(self, name) -> IntNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def output_exponent(self):
        return self.node(self.output).exponent

    def _range(self, signed):
        top = (1 << self.act_bits) - 1
        return (-top if signed else 0), top

    def quantize_input(self, x):
        """Float inputs (n, *input_shape) -> integers at the input's exponent (signed if calibration saw negatives)."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32).reshape((-1,) + tuple(self.input_shape))
        scale = 2.0 ** self.input_exponent
        if self.input.signed:
            q = quantize(x, scale, self.act_bits + 1, signed=True).clamp(min=-((1 << self.act_bits) - 1))
        else:
            q = quantize(x, scale, self.act_bits, signed=False)
        return q.numpy().astype(np.int64)

    def dequantize_output(self, y):
        return np.asarray(y, dtype=np.float64) * 2.0 ** self.output_exponent

    # -- running
    def _requant(self, total, shift, signed):
        lo, hi = self._range(signed)
        bits = self.act_bits + 1 if signed else self.act_bits
        y = requant_shift(torch.from_numpy(np.ascontiguousarray(total)), torch.from_numpy(np.asarray(shift)),
                          bits, signed=signed).numpy().astype(np.int64)
        return np.clip(y, lo, hi)

    def _bounds(self, y, node):
        lo, hi = node.attrs.get("lo"), node.attrs.get("hi")
        if lo is not None or hi is not None:
            y = np.clip(y, lo, hi)
        return y

    def _matmul(self, node, x, layer_fn, index, trace):
        a = node.attrs
        n = x.shape[0]
        outs = []
        for j, part in enumerate(node.parts):
            if a["kind"] == "conv":
                cg = a["in_shape"][0] // len(node.parts)
                geometry = ConvGeometry(in_channels=cg, in_h=a["in_shape"][1], in_w=a["in_shape"][2],
                                        kernel=tuple(a["kernel"]), stride=tuple(a["stride"]),
                                        padding=tuple(a["padding"]))
                vectors = _im2col(x[:, j * cg:(j + 1) * cg], geometry, tuple(a["dilation"]))
            else:
                vectors = x.reshape(-1, x.shape[-1])
            m = vectors.shape[0]
            if a["split"]:      # signed input: its positive and negative parts, each unsigned
                vectors = np.concatenate([np.maximum(vectors, 0), np.maximum(-vectors, 0)])
            vectors = self._data_terms(vectors)
            if trace is not None:
                trace.append(vectors)
            acc = np.asarray(layer_fn(index + j, part, vectors), dtype=np.int64)
            if acc.shape != (vectors.shape[0], part.out_features):
                raise ValueError(f"layer '{part.name}': the matmul returned {acc.shape}, expected "
                                 f"{(vectors.shape[0], part.out_features)}")
            outs.append(acc[:m] - acc[m:] if a["split"] else acc)
        acc = np.concatenate(outs, axis=1)
        total = acc + node.arrays["bias"][None, :]
        if node.logits:
            y = total << node.arrays["shift"][None, :]
        else:
            y = self._bounds(self._requant(total, node.arrays["shift"][None, :], node.signed), node)
        if a["kind"] == "conv":
            oh, ow = a["out_hw"]
            return np.ascontiguousarray(y.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2))
        return y.reshape(x.shape[:-1] + (y.shape[-1],))

    def _add(self, node, xs):
        shifted = []
        for v, s in zip(xs, node.attrs["shifts"]):
            s = int(s)      # requant_shift's rule: round half up, by an arithmetic shift
            shifted.append((v + (np.int64(1) << (s - 1))) >> s if s > 0 else v.astype(np.int64) << -s)
        lo, hi = self._range(node.signed)
        return self._bounds(np.clip(shifted[0] + shifted[1], lo, hi), node)

    def _pool(self, node, x):
        a = node.attrs
        if node.op == "maxpool":
            return _windows(x, a["kernel"], a["stride"], a["padding"], a["dilation"], np.iinfo(np.int64).min).max(-1)
        if node.op == "avgpool":
            win = _windows(x, a["kernel"], a["stride"], a["padding"], (1, 1), 0)
            if a["count_include_pad"]:
                count = np.int64(win.shape[-1])
            else:
                ones = np.ones((1, 1) + x.shape[2:], dtype=np.int64)
                count = _windows(ones, a["kernel"], a["stride"], a["padding"], (1, 1), 0).sum(-1)
            return _round_div(win.sum(-1), count)
        oh, ow = a["size"]
        out = np.empty(x.shape[:2] + (oh, ow), dtype=np.int64)
        for i, (h0, h1) in enumerate(_adaptive_bounds(x.shape[2], oh)):
            for j, (w0, w1) in enumerate(_adaptive_bounds(x.shape[3], ow)):
                out[:, :, i, j] = _round_div(x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)), (h1 - h0) * (w1 - w0))
        return out

    def _host(self, node, env):
        fn = resolve_target(node.attrs["target"])
        floats = {i: torch.from_numpy(env[i].astype(np.float64) * 2.0 ** self.node(i).exponent).float()
                  for i in node.inputs}
        params = {k: torch.from_numpy(v) for k, v in node.arrays.items()}
        n = next(iter(floats.values())).shape[0]
        outs = []
        with torch.no_grad():
            for s in range(n):
                local = {k: v[s:s + 1] for k, v in floats.items()}
                outs.append(fn(*decode_args(node.attrs["args"], local, params),
                               **decode_args(node.attrs.get("kwargs", {}), local, params)))
        y = torch.cat(outs)
        if node.signed:
            q = quantize(y, 2.0 ** node.exponent, self.act_bits + 1, signed=True).clamp(min=-((1 << self.act_bits) - 1))
        else:
            q = quantize(y, 2.0 ** node.exponent, self.act_bits, signed=False)
        return q.numpy().astype(np.int64)

    def run_with(self, layer_fn, x_int, *, trace=None, env=None):
        """The output integers of the graph for integer inputs, with ``layer_fn(index, layer, vectors) -> acc``
        doing every ``W_int x`` (``vectors`` M x K unsigned int64, ``acc`` M x F). ``trace``, if a list,
        receives every array layer's input vectors; ``env``, if a dict, every node's output."""
        x = np.asarray(x_int, dtype=np.int64)
        if x.shape[1:] != tuple(self.input_shape):
            raise ValueError(f"inputs must be n x {'x'.join(map(str, self.input_shape))}, not "
                             f"{'x'.join(map(str, x.shape))}")
        lo, hi = self._range(self.input.signed)
        if x.size and (x.min() < lo or x.max() > hi):
            raise ValueError(f"integer inputs must be in [{lo}, {hi}]")
        env = {} if env is None else env
        env[self.input.name] = x
        index = 0
        for node in self.nodes[1:]:
            xs = [env[i] for i in node.inputs]
            if node.op == ARRAY:
                y = self._matmul(node, xs[0], layer_fn, index, trace)
                index += len(node.parts)
            elif node.op == "add":
                y = self._add(node, xs)
            elif node.op in POOL_OPS:
                y = self._pool(node, xs[0])
            elif node.op == "clamp":
                y = self._bounds(xs[0], node)
            elif node.op in SHAPE_OPS:
                y = _shape(node, xs[0])
            elif node.op == "host":
                y = self._host(node, env)
            else:
                raise ValueError(f"node '{node.name}': unknown op {node.op!r}")
            env[node.name] = y
        return env[self.output]

    def macs(self, x_int):
        """Dense multiply-accumulates of the matrices over ``x_int`` (a signed input's two passes counted once)."""
        splits = [node.attrs["split"] for node in self.nodes if node.op == ARRAY for _ in node.parts]
        return sum(layer.out_features * layer.in_features * (len(vectors) // 2 if split else len(vectors))
                   for layer, vectors, split in zip(self.layers, self.layer_inputs(x_int), splits))



def _im2col(x, geometry, dilation):
    if tuple(dilation) == (1, 1):
        return im2col(x, geometry)
    (ph, pw), (sh, sw), (kh, kw) = geometry.padding, geometry.stride, geometry.kernel
    win = _windows(np.asarray(x, dtype=np.int64), (kh, kw), (sh, sw), (ph, pw), dilation, 0)   # n, C, oh, ow, k
    n, c, oh, ow, k = win.shape
    return win.transpose(0, 2, 3, 1, 4).reshape(n * oh * ow, c * k)


def _shape(node, x):
    a = node.attrs
    if node.op == "flatten":
        start, end = a["start"], a["end"] % x.ndim
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])
    if node.op == "reshape":
        return x.reshape((x.shape[0],) + tuple(a["shape"]))
    return np.ascontiguousarray(x.transpose(a["dims"]))


# ----------------------------------------------------------------------------------------------
# Export: calibration, quantization, packing


def calibrate(graph: Graph, calibration, *, batch=256, progress=False):
    """Per node: (max |y|, min y) of its float output over the calibration inputs."""
    stats = {}

    def observe(node, y):
        hi, lo = float(y.abs().max()) if y.numel() else 0.0, float(y.min()) if y.numel() else 0.0
        old = stats.get(node.name, (0.0, 0.0))
        stats[node.name] = (max(old[0], hi), min(old[1], lo))

    x = torch.as_tensor(np.asarray(calibration), dtype=torch.float32)
    starts = range(0, len(x), batch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)    # small tensors: intra-op threads on shared cores cost 30x here
    try:
        for s in tqdm(starts, desc="calibration", unit="batch", disable=not progress, leave=False):
            run_float(graph, x[s:s + batch], observe=observe)
    finally:
        torch.set_num_threads(threads)
    return stats


def _exponent(max_abs, bits):
    return int(power_of_two_exponent(compute_scale(torch.tensor([max_abs]), bits, signed=False, power_of_two=True)))


def _act_bounds(act, exponent):
    """Integer bounds of a fused clamp at the output exponent (lo >= 0: the unsigned range already holds 0)."""
    if act is None:
        return {}
    lo, hi = act
    out = {}
    if lo is not None and lo > 0:
        out["lo"] = int(math.ceil(lo / 2.0 ** exponent))
    if hi is not None:
        out["hi"] = int(math.floor(hi / 2.0 ** exponent))
    return out


def export_graph(graph: Graph, config: ArrayConfig, calibration, *, groups=None, term_budget=None,
                 progress=False) -> GraphModel:
    """Quantize and pack the float ``graph`` for the array ``config``.

    calibration  float inputs (n, *input_shape) for the exponents of every tensor.
    groups       {source (module path): column grouping} from joint optimization; a layer not listed is
                 packed losslessly (gamma 0). Every layer must pack losslessly by its grouping.
    """
    check_array_config(config)
    calibration = np.asarray(calibration, dtype=np.float32)
    input_shape = tuple(calibration.shape[1:])
    shapes = infer_shapes(graph, input_shape)
    stats = calibrate(graph, calibration, progress=progress)
    bits = config.act_width
    groups = dict(groups or {})
    nodes, info = [], {}        # info: name -> (exponent, signed)

    def finish(node, exponent, signed, **kw):
        nodes.append(IntNode(name=node.name, op=kw.pop("op", node.op), inputs=tuple(node.inputs), exponent=exponent,
                             signed=signed, **kw))
        info[node.name] = (exponent, signed)

    for node in graph.nodes:
        max_abs, min_y = stats[node.name]
        e_y = _exponent(max_abs, bits)
        act = node.attrs.get("act")
        if node.op == "input":
            finish(node, e_y, min_y < 0)
        elif node.op in ("linear", "conv"):
            exponent, signed, parts = _export_matmul(node, graph, config, info, shapes, e_y, act, groups, term_budget)
            finish(node, exponent, signed, op=ARRAY, **parts)
        elif node.op == "add":
            signed = act is None or act[0] is None or act[0] < 0
            shifts = [e_y - info[i][0] for i in node.inputs]
            if any(s < -40 or s > 62 for s in shifts):
                raise ExportError(f"node {node.describe()}: operand scales 2**{[info[i][0] for i in node.inputs]} "
                                  "are too far apart to add")
            finish(node, e_y, signed, attrs={"shifts": shifts, **_act_bounds(act, e_y)})
        elif node.op in POOL_OPS or node.op in ("flatten", "reshape", "permute"):
            attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in node.attrs.items()}
            finish(node, *info[node.inputs[0]], attrs=attrs)
        elif node.op in ("relu", "clamp"):
            e, signed = info[node.inputs[0]]
            lo, hi = (0.0, None) if node.op == "relu" else (node.attrs["lo"], node.attrs["hi"])
            attrs = {}
            if lo is not None:
                attrs["lo"] = int(math.ceil(lo / 2.0 ** e))
            if hi is not None:
                attrs["hi"] = int(math.floor(hi / 2.0 ** e))
            finish(node, e, signed and (lo is None or lo < 0), op="clamp", attrs=attrs)
        elif node.op == "host":
            arrays = {k: v.numpy() for k, v in node.params.items()}
            finish(node, e_y, min_y < 0, attrs=dict(node.attrs), arrays=arrays)
        else:
            raise GraphError(f"node {node.describe()} cannot run in the integer model")
    if groups:
        raise ExportError(f"column groupings given for unknown layer(s): {', '.join(sorted(groups))}")
    return GraphModel(config=config, input_shape=input_shape, nodes=tuple(nodes), output=graph.output,
                      term_budget=term_budget)


def _export_matmul(node, graph, config, info, shapes, e_y, act, groups, term_budget):
    bits, wbits = config.act_width, config.weight_width
    e_x, split = info[node.inputs[0]]
    s_x = 2.0 ** e_x
    logits = node.name == graph.output and act is None
    s_y = None if logits else 2.0 ** e_y
    weight, bias = node.params["weight"], node.params.get("bias")
    q = _quantize_weight(types.SimpleNamespace(weight=weight, bias=bias), wbits, torch.tensor(s_x),
                         None if s_y is None else torch.tensor(s_y))
    w_int = q.values.reshape(q.values.shape[0], -1).numpy().astype(np.int64)
    if term_budget is not None:
        w_int = term_quantize_weights(torch.from_numpy(w_int), term_budget.group, term_budget.weight_terms,
                                      wbits).numpy()
        w_int = np.clip(w_int, *qrange(wbits, signed=True))
    F, K = w_int.shape
    n_groups = node.attrs.get("groups", 1) if node.op == "conv" else 1
    grouping = groups.pop(node.source, None)
    parts = []
    a_hi = (1 << bits) - 1
    for j in range(n_groups):
        rows = w_int[j * F // n_groups:(j + 1) * F // n_groups]
        cols = grouping if grouping is not None else group_columns(rows != 0, config.alpha, 0.0)
        try:
            packing = pack(rows, cols, config.alpha)
        except ValueError as e:
            raise ExportError(f"node {node.describe()}: {e}") from None
        if not np.array_equal(packing.unpack(), rows):
            raise ExportError(f"node {node.describe()}: its weights do not pack losslessly by the given column "
                              "grouping (two weights of a row in one group)")
        worst = int(np.abs(rows).sum(axis=1).max(initial=0)) * a_hi
        if signed_width_for(-worst, worst) > config.acc_width:
            raise ExportError(f"node {node.describe()}: {K} inputs can overflow the {config.acc_width}-bit accumulator")
        parts.append(ArrayLayer(name=node.name if n_groups == 1 else f"{node.name}.g{j}", packing=packing))
    e_w = power_of_two_exponent(q.scale)
    if bias is not None:
        b_int = quantize_bias(bias, q.scale, s_x, BIAS_BITS).numpy().astype(np.int64)
    else:
        b_int = np.zeros(F, dtype=np.int64)
    if logits:
        shift = (e_w - e_w.min()).numpy().astype(np.int64)
        exponent, signed = int(e_w.min()) + e_x, True
    else:
        shift = (e_y - e_w - e_x).numpy().astype(np.int64)
        exponent = e_y
        signed = act is None or act[0] is None or act[0] < 0
    attrs = {"kind": node.op, "split": bool(split), "mode": "logits" if logits else "act",
             **({} if logits else _act_bounds(act, e_y))}
    if node.op == "conv":
        in_shape = shapes[node.inputs[0]]
        out_shape = shapes[node.name]
        attrs.update(in_shape=list(in_shape), out_hw=list(out_shape[1:]), kernel=list(node.params["weight"].shape[2:]),
                     stride=list(node.attrs["stride"]), padding=list(node.attrs["padding"]),
                     dilation=list(node.attrs["dilation"]))
    return exponent, signed, {"attrs": attrs, "arrays": {"bias": b_int, "shift": shift}, "parts": tuple(parts)}
