"""Graph capture of any nn.Module with ``torch.export``: the module becomes a float layer graph
(software.frontend.graph), with no per-model code.

``torch.export.export(model, (example,))`` traces the module into ATen ops; parameters, buffers and
lifted constants are placeholders named in the graph signature. This module walks that graph:

- ops with constant inputs only (a pruning mask applied to a weight, a parametrization) are
  evaluated once, here, and become constants;
- conv2d / convolution, linear, batch_norm, relu / relu6 / hardtanh / clamp, add of two tensors,
  max / avg / adaptive avg pooling, mean over H and W, flatten / view / reshape / permute /
  transpose that keep the batch dimension, and dropout / clone / contiguous / alias become graph
  ops (see graph.py);
- any other ATen (or registered custom) op becomes a ``host`` node run by its qualified name;
- anything that is not a torch op at all (a Python callable, control flow, a second input) is
  refused with one line naming the node.
"""
from __future__ import annotations

import numbers
import threading

import torch
from torch import nn

from .graph import Graph, GraphError, Node, check_finite, encode_param, encode_ref, infer_shapes, normalize

# torch.export keeps global tracing state: two captures in threads of one process (a sweep's workers)
# must not overlap.
EXPORT_LOCK = threading.Lock()

IDENTITIES = {"dropout.default", "dropout_.default", "clone.default", "contiguous.default", "alias.default",
              "detach.default", "lift_fresh_copy.default", "feature_dropout.default"}


def _pair(v):
    return [int(v[0]), int(v[1 if len(v) > 1 else 0])] if isinstance(v, (list, tuple)) else [int(v), int(v)]


def _qualname(target) -> str:
    schema = target._schema
    namespace, name = schema.name.split("::")
    return f"{namespace}.{name}.{schema.overload_name or 'default'}"


def _module_path(fx_node) -> str:
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("L['self']", "")


def _rank(fx_node):
    val = fx_node.meta.get("val")
    return val.dim() if isinstance(val, torch.Tensor) else None


class _Capture:
    def __init__(self, ep):
        self.ep = ep
        self.consts = {}         # fx name -> tensor
        self.sources = {}        # fx name -> state_dict key (parameters, buffers)
        self.nodes = []
        self.names = {}          # fx name -> graph node name (after identities: the tensor it aliases)

    def const_or_none(self, arg):
        if isinstance(arg, torch.fx.Node) and arg.name in self.consts:
            return self.consts[arg.name]
        return None

    def tensor_ref(self, arg, where):
        if isinstance(arg, torch.fx.Node) and arg.name in self.names:
            return self.names[arg.name]
        raise GraphError(f"node '{where}': input {arg} is not a tensor of the graph")

    def add(self, fx_node, op, inputs, attrs=None, params=None, source=""):
        node = Node(name=fx_node.name, op=op, inputs=inputs, attrs=attrs or {}, params=params or {},
                    source=source or _module_path(fx_node))
        self.nodes.append(node)
        self.names[fx_node.name] = node.name
        return node

    def weight_source(self, arg, fx_node):
        key = self.sources.get(arg.name) if isinstance(arg, torch.fx.Node) else None
        return key.rsplit(".", 1)[0] if key and "." in key else (key or _module_path(fx_node))

    def run(self) -> Graph:
        ep = self.ep
        user = []
        for spec in ep.graph_signature.input_specs:
            kind = spec.kind.name
            if kind == "USER_INPUT":
                user.append(spec.arg.name)
                continue
            value = ep.state_dict.get(spec.target) if spec.target in ep.state_dict else ep.constants.get(spec.target)
            if not isinstance(value, torch.Tensor):
                raise GraphError(f"placeholder '{spec.arg.name}' ({spec.target}) is not a tensor")
            self.consts[spec.arg.name] = value.detach()
            self.sources[spec.arg.name] = spec.target
        if len(user) != 1:
            raise GraphError(f"the model takes {len(user)} tensor inputs; the array path takes exactly one")
        output = None
        for fx_node in ep.graph.nodes:
            if fx_node.op == "placeholder":
                if fx_node.name == user[0]:
                    self.add(fx_node, "input", [], source="input")
                continue
            if fx_node.op == "output":
                outs = fx_node.args[0]
                if len(outs) != 1:
                    raise GraphError(f"the model returns {len(outs)} values; give a module that returns one tensor")
                if outs[0].name in self.consts:
                    raise GraphError("the model's output does not depend on its input")
                output = self.tensor_ref(outs[0], "output")
                continue
            if fx_node.op != "call_function":
                raise GraphError(f"node '{fx_node.name}' ({fx_node.op}) cannot run: not a torch op")
            self.call(fx_node)
        return Graph(nodes=self.nodes, output=output)

    def fold_constant(self, fx_node):
        """Evaluate a node whose tensor inputs are all constants; True if it was."""
        tensors = [a for a in fx_node.all_input_nodes]
        if not tensors or any(t.name not in self.consts for t in tensors):
            return False
        env = {t.name: self.consts[t.name] for t in tensors}
        args = torch.fx.node.map_arg(fx_node.args, lambda n: env[n.name])
        kwargs = torch.fx.node.map_arg(fx_node.kwargs, lambda n: env[n.name])
        with torch.no_grad():
            self.consts[fx_node.name] = fx_node.target(*args, **kwargs)
        return True

    def call(self, fx_node):
        target = fx_node.target
        if not isinstance(target, torch._ops.OpOverload):
            if getattr(target, "__name__", "") == "getitem" and fx_node.args[1] == 0 \
                    and fx_node.args[0].name in self.names:
                self.names[fx_node.name] = self.names[fx_node.args[0].name]     # (out, indices)[0], (bn,)[0]
                return
            if not isinstance(target, torch._ops.HigherOrderOperator) and self.fold_constant(fx_node):
                return
            raise GraphError(f"node '{fx_node.name}' ({getattr(target, '__name__', target)}) cannot run on the "
                             "array or the host: it is not a torch op")
        if self.fold_constant(fx_node):
            return
        name = _qualname(target)
        short = name.split(".", 1)[1] if name.startswith("aten.") else None
        args = list(fx_node.args) + [None] * 12
        kw = fx_node.kwargs
        x = args[0]
        if short in IDENTITIES:
            self.names[fx_node.name] = self.tensor_ref(x, fx_node.name)
            return
        handler = getattr(self, "op_" + short.split(".")[0], None) if short else None
        if handler is not None and handler(fx_node, args, kw) is not False:
            return
        self.host(fx_node, name)

    # -- array ops
    def op_conv2d(self, fx_node, args, kw):
        x, w, b = args[0], self.const_or_none(args[1]), self.const_or_none(args[2]) if args[2] is not None else None
        if w is None or (args[2] is not None and b is None) or w.dim() != 4:
            return False
        stride, padding, dilation = _pair(args[3] or 1), args[4] if args[4] is not None else 0, _pair(args[5] or 1)
        groups = int(args[6] or 1)
        if isinstance(padding, str):
            if padding == "valid":
                padding = [0, 0]
            else:   # "same": symmetric only
                total = [dilation[i] * (w.shape[2 + i] - 1) for i in range(2)]
                if any(t % 2 for t in total):
                    raise GraphError(f"node '{fx_node.name}': padding='same' with an even kernel pads unevenly")
                padding = [t // 2 for t in total]
        return self.conv(fx_node, x, w, b, stride, _pair(padding), dilation, groups, args[1])

    def op_convolution(self, fx_node, args, kw):
        x, w, b = args[0], self.const_or_none(args[1]), self.const_or_none(args[2]) if args[2] is not None else None
        if w is None or args[6] or w.dim() != 4:    # transposed
            return False
        return self.conv(fx_node, x, w, b, _pair(args[3]), _pair(args[4]), _pair(args[5]), int(args[8]), args[1])

    def conv(self, fx_node, x, w, b, stride, padding, dilation, groups, warg):
        params = {"weight": w.float()}
        if b is not None:
            params["bias"] = b.float()
        self.add(fx_node, "conv", [self.tensor_ref(x, fx_node.name)],
                 {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}, params,
                 source=self.weight_source(warg, fx_node))

    def op_linear(self, fx_node, args, kw):
        w = self.const_or_none(args[1])
        b = self.const_or_none(args[2]) if args[2] is not None else None
        if w is None or w.dim() != 2 or (args[2] is not None and b is None):
            return False
        params = {"weight": w.float()}
        if b is not None:
            params["bias"] = b.float()
        self.add(fx_node, "linear", [self.tensor_ref(args[0], fx_node.name)], {}, params,
                 source=self.weight_source(args[1], fx_node))

    def batchnorm(self, fx_node, x, w, b, mean, var, eps):
        consts = [self.const_or_none(a) if a is not None else None for a in (w, b, mean, var)]
        if consts[2] is None or consts[3] is None:
            return False
        params = {k: v.float() for k, v in zip(("weight", "bias", "mean", "var"), consts) if v is not None}
        self.add(fx_node, "batchnorm", [self.tensor_ref(x, fx_node.name)], {"eps": float(eps)}, params)

    def op_batch_norm(self, fx_node, args, kw):
        if args[5]:     # training
            return False
        return self.batchnorm(fx_node, args[0], args[1], args[2], args[3], args[4], args[7])

    def op__native_batch_norm_legit_no_training(self, fx_node, args, kw):
        return self.batchnorm(fx_node, args[0], args[1], args[2], args[3], args[4], args[6])

    # -- post-processing ops
    def op_relu(self, fx_node, args, kw):
        self.add(fx_node, "relu", [self.tensor_ref(args[0], fx_node.name)])

    op_relu_ = op_relu

    def clamp(self, fx_node, x, lo, hi):
        if not all(v is None or isinstance(v, numbers.Number) for v in (lo, hi)):
            return False
        self.add(fx_node, "clamp", [self.tensor_ref(x, fx_node.name)],
                 {"lo": None if lo is None else float(lo), "hi": None if hi is None else float(hi)})

    def op_hardtanh(self, fx_node, args, kw):
        return self.clamp(fx_node, args[0], -1.0 if args[1] is None else args[1], 1.0 if args[2] is None else args[2])

    op_hardtanh_ = op_hardtanh

    def op_relu6(self, fx_node, args, kw):
        return self.clamp(fx_node, args[0], 0.0, 6.0)

    def op_clamp(self, fx_node, args, kw):
        return self.clamp(fx_node, args[0], kw.get("min", args[1]), kw.get("max", args[2]))

    def op_add(self, fx_node, args, kw):
        a, b = args[0], args[1]
        alpha = kw.get("alpha", args[2] if args[2] is not None else 1)
        if alpha != 1 or not all(isinstance(t, torch.fx.Node) and t.name in self.names for t in (a, b)):
            return False
        self.add(fx_node, "add", [self.names[a.name], self.names[b.name]])

    op_add_ = op_add

    def op_max_pool2d(self, fx_node, args, kw):
        kernel = _pair(args[1])
        stride = _pair(args[2]) if args[2] else kernel
        if args[5]:      # ceil_mode
            return False
        self.add(fx_node, "maxpool", [self.tensor_ref(args[0], fx_node.name)],
                 {"kernel": kernel, "stride": stride, "padding": _pair(args[3] or 0), "dilation": _pair(args[4] or 1)})

    op_max_pool2d_with_indices = op_max_pool2d

    def op_avg_pool2d(self, fx_node, args, kw):
        kernel = _pair(args[1])
        stride = _pair(args[2]) if args[2] else kernel
        if args[4] or args[6] is not None:     # ceil_mode, divisor_override
            return False
        self.add(fx_node, "avgpool", [self.tensor_ref(args[0], fx_node.name)],
                 {"kernel": kernel, "stride": stride, "padding": _pair(args[3] or 0),
                  "count_include_pad": bool(True if args[5] is None else args[5])})

    def op_adaptive_avg_pool2d(self, fx_node, args, kw):
        self.add(fx_node, "adaptive_avgpool", [self.tensor_ref(args[0], fx_node.name)], {"size": _pair(args[1])})

    op__adaptive_avg_pool2d = op_adaptive_avg_pool2d

    def op_mean(self, fx_node, args, kw):
        rank = _rank(args[0])
        dims = args[1]
        if rank != 4 or not isinstance(dims, (list, tuple)) or sorted(d % 4 for d in dims) != [2, 3] \
                or kw.get("dtype") is not None:
            return False
        keep = bool(kw.get("keepdim", args[2]))
        pool = self.add(fx_node, "adaptive_avgpool", [self.tensor_ref(args[0], fx_node.name)], {"size": [1, 1]})
        if not keep:
            pool.name = fx_node.name + "_pool"
            self.names[fx_node.name + "_pool"] = pool.name
            self.nodes.append(Node(name=fx_node.name, op="flatten", inputs=[pool.name], attrs={"start": 1, "end": -1},
                                   source=pool.source))
            self.names[fx_node.name] = fx_node.name

    # -- shapes
    def op_flatten(self, fx_node, args, kw):
        rank = _rank(args[0])
        start = args[1] if args[1] is not None else 0
        end = args[2] if args[2] is not None else -1
        if rank is None or start % max(rank, 1) == 0:
            return False
        end = int(end % rank)
        self.add(fx_node, "flatten", [self.tensor_ref(args[0], fx_node.name)],
                 {"start": int(start % rank), "end": -1 if end == rank - 1 else end})

    def op_view(self, fx_node, args, kw):
        shape = list(args[1])
        if not shape or not all(isinstance(d, int) for d in shape) or shape[0] not in (1, -1) \
                or (shape[0] == -1 and -1 in shape[1:]):
            return False
        self.add(fx_node, "reshape", [self.tensor_ref(args[0], fx_node.name)], {"shape": shape[1:]})

    op_reshape = op_view

    def op_unflatten(self, fx_node, args, kw):
        val = fx_node.meta.get("val")
        rank = _rank(args[0])
        if not isinstance(val, torch.Tensor) or not rank or int(args[1]) % rank == 0:
            return False
        self.add(fx_node, "reshape", [self.tensor_ref(args[0], fx_node.name)], {"shape": [int(d) for d in val.shape[1:]]})
    op__unsafe_view = op_view

    def op_permute(self, fx_node, args, kw):
        rank = _rank(args[0])
        dims = [int(d) % rank for d in args[1]] if rank else None
        if not dims or dims[0] != 0:
            return False
        self.add(fx_node, "permute", [self.tensor_ref(args[0], fx_node.name)], {"dims": dims})

    def op_transpose(self, fx_node, args, kw):
        rank = _rank(args[0])
        if not rank:
            return False
        a, b = int(args[1]) % rank, int(args[2]) % rank
        if 0 in (a, b):
            return False
        dims = list(range(rank))
        dims[a], dims[b] = dims[b], dims[a]
        self.add(fx_node, "permute", [self.tensor_ref(args[0], fx_node.name)], {"dims": dims})

    # -- everything else: the host
    def host(self, fx_node, target_name):
        params, inputs = {}, []

        def encode(a):
            if isinstance(a, torch.fx.Node):
                if a.name in self.consts:
                    key = f"c{len(params)}"
                    value = self.consts[a.name]
                    params[key] = value.float() if value.is_floating_point() else value
                    return encode_param(key)
                ref = self.tensor_ref(a, fx_node.name)
                if ref not in inputs:
                    inputs.append(ref)
                return encode_ref(ref)
            if isinstance(a, (list, tuple)):
                return [encode(v) for v in a]
            if isinstance(a, torch.dtype):
                return {"dtype": str(a).replace("torch.", "")}
            if isinstance(a, torch.device):
                return {"device": "cpu"}
            if a is None or isinstance(a, (bool, int, float, str)):
                return a
            if isinstance(a, torch.memory_format) or isinstance(a, torch.layout):
                return None
            raise GraphError(f"node '{fx_node.name}' ({target_name}): argument {a!r} cannot be stored")

        args = encode(list(fx_node.args))
        kwargs = {k: encode(v) for k, v in fx_node.kwargs.items()}
        if not inputs:
            raise GraphError(f"node '{fx_node.name}' ({target_name}) cannot run: it takes no tensor of the graph")
        self.add(fx_node, "host", inputs, {"target": target_name, "args": args, "kwargs": kwargs}, params)


def _check_runs(model, example):
    """Run the module once so that a shape that does not fit is reported naming the submodule it reached."""
    entered, hooks = [], []
    names = {m: n for n, m in model.named_modules()}
    for module in model.modules():
        hooks.append(module.register_forward_pre_hook(lambda m, args: entered.append(m)))
        hooks.append(module.register_forward_hook(lambda m, args, out: entered.pop() and None))  # returns None: output kept
    try:
        with torch.no_grad():
            model(example)
    except Exception as e:      # noqa: BLE001 - whatever the model raises, in one line
        module = entered[-1] if entered else model
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GraphError(f"module '{names.get(module) or type(model).__name__}' ({type(module).__name__}) does not take "
                         f"the {tuple(example.shape[1:])} input per sample: {first}") from None
    finally:
        for h in hooks:
            h.remove()


def capture(model: nn.Module, input_shape) -> Graph:
    """The normalized float graph of ``model`` for per-sample inputs of ``input_shape``.

    GraphError (one line, naming the node) if torch.export fails or a node cannot run."""
    from .pruning import make_permanent
    import copy
    with torch.no_grad():   # a pruned weight set outside no_grad is a non-leaf tensor, which deepcopy refuses
        for m in model.modules():
            if hasattr(m, "weight_mask") and hasattr(m, "weight_orig"):
                m.weight = m.weight_orig * m.weight_mask
    model = copy.deepcopy(model).float().eval()
    if any(hasattr(m, "weight_mask") for m in model.modules()):
        make_permanent(model)
    example = torch.zeros((1,) + tuple(input_shape))
    _check_runs(model, example)
    try:
        with EXPORT_LOCK:
            ep = torch.export.export(model, (example,), strict=False)
    except Exception as e:      # noqa: BLE001 - torch.export raises many kinds; reported in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GraphError(f"torch.export could not capture {type(model).__name__} with a {tuple(input_shape)} "
                         f"input: {first}") from None
    graph = _Capture(ep).run()
    check_finite(graph)
    graph = normalize(graph)
    infer_shapes(graph, input_shape)
    return graph
