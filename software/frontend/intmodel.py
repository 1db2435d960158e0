"""The integer model: a pruned PyTorch model as integer layers packed for the systolic array.

Every nn.Linear / nn.Conv2d becomes an :class:`IntLayer` computing, for integer inputs ``x``::

    acc = W_int x            on the array (exact: acc_width bits, wraps like the hardware)
    hidden layer:  y = requant_shift(acc + bias, shift, act_width, unsigned)
    output layer:  logits = (acc + bias) << shift

Scales are powers of two, so requantization is a rounding right shift (``software.frontend.quant``'s one
rule) and saturating to the *unsigned* activation range ``[0, 2**act_width - 1]`` is the ReLU.
Activations are therefore unsigned throughout: the model's input must be non-negative (digits
pixels are) and every hidden layer must be followed by nn.ReLU. The array for this model is
generated with ``--no-act-signed`` (8-bit activations 0..255, signed 8-bit weights -127..127).

Weights are quantized per output channel (scale ``2**e_w[f]``), biases become int addends at scale
``2**(e_w[f] + e_x)``, activation scales are calibrated (max over the calibration set, rounded up
to a power of two). The output layer keeps its per-channel scales apart from each other only by
powers of two, so ``shift`` left-aligns every channel to the finest one and the integer logits
share one scale (``2**output_exponent``): their argmax is the prediction.

A k x k convolution is lowered with im2col (``K = in_channels * kh * kw`` in ``weight.reshape``
order); its output positions are extra input vectors of the same layer.

The host (software/) does everything except ``W_int x``: quantizing the input, bias, shift, ReLU,
reshapes and im2col. :meth:`IntModel.run_with` takes the ``W_int x`` of each layer from a
function, so ``sim/`` can substitute the RTL for it; :meth:`IntModel.run_golden` uses the plain
integer matrix product (``software.golden.array.reference_layer``).

Term quantization (optional, :class:`TermBudget`): weights keep ``weight_terms`` HESE terms per
group of ``group`` consecutive weights along the input dimension (applied once, at export), and
every layer's input activations keep ``data_terms`` terms per value (applied on the host before
the array). A truncated value that rounds up past the format's range (e.g. 127 = +128 - 1 with
one term) saturates to it, because the array's operands are plain integers.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from software.packing.colcomb import ColumnCombining, group_columns, pack
from spec import ArrayConfig
from spec.checks import signed_width_for
from software.golden.array import reference_layer
from software.frontend.quant import (
    compute_scale,
    QuantizedTensor,
    power_of_two_exponent,
    qrange,
    quantize,
    quantize_bias,
    quantize_tensor,
    requant_shift,
    requant_shift_amount,
)
from software.frontend.termquant import hese_encode, term_pairs, term_quantize_activations, term_quantize_weights

__all__ = [
    "ExportError",
    "ConvGeometry",
    "Reshape",
    "IntLayer",
    "TermBudget",
    "IntModel",
    "model_layers",
    "plan_model",
    "export_model",
    "im2col",
    "golden_matmul",
]

COMPUTE = (nn.Linear, nn.Conv2d)
RESHAPES = (nn.Flatten, nn.Unflatten)
NO_OPS = (nn.Identity, nn.Dropout)   # identities at inference
BIAS_BITS = 32


class ExportError(ValueError):
    """A model that cannot become an integer model for the array. One line, naming the layer."""


def describe(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}->{module.out_features}"
    if isinstance(module, nn.Conv2d):
        return f"Conv2d {module.in_channels}->{module.out_channels} k={tuple(module.kernel_size)}"
    return type(module).__name__


# ----------------------------------------------------------------------------------------------
# Structure


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    in_channels: int
    in_h: int
    in_w: int
    kernel: tuple
    stride: tuple
    padding: tuple

    @property
    def out_h(self):
        return (self.in_h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_w(self):
        return (self.in_w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1

    @property
    def positions(self):
        return self.out_h * self.out_w

    def as_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d):
        return cls(in_channels=int(d["in_channels"]), in_h=int(d["in_h"]), in_w=int(d["in_w"]),
                   kernel=tuple(map(int, d["kernel"])), stride=tuple(map(int, d["stride"])),
                   padding=tuple(map(int, d["padding"])))


@dataclasses.dataclass(frozen=True)
class Reshape:
    """Reshape every sample to ``shape`` (nn.Flatten / nn.Unflatten)."""

    name: str
    shape: tuple


def model_layers(model: nn.Module) -> list:
    """``(name, module)`` leaves of a (nested) nn.Sequential, in execution order."""
    if isinstance(model, nn.Sequential):
        leaves = []
        for name, child in model.named_children():
            for sub, leaf in model_layers(child):
                leaves.append((f"{name}.{sub}" if sub else name, leaf))
        return leaves
    if isinstance(model, COMPUTE + RESHAPES + NO_OPS + (nn.ReLU,)) or not list(model.children()):
        return [("", model)]
    raise ExportError(f"model {type(model).__name__} is not an nn.Sequential: only sequential models "
                      "(nested nn.Sequential allowed) can be exported")


def _pair(value, name, layer):
    if isinstance(value, str):
        if value == "valid":
            return (0, 0)
        raise ExportError(f"layer '{layer}' (Conv2d): {name}={value!r} is not supported; give it as integers")
    value = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    return tuple(int(v) for v in value)


def plan_model(model: nn.Module, input_shape) -> list:
    """Check that ``model`` maps onto the array and trace its shapes.

    Returns a list of ``(name, module, kind, in_shape, out_shape)`` with kind "compute" (its
    ``relu`` follows), "reshape", "relu" or "noop"; shapes are per sample. Raises ExportError
    naming the first offending layer.
    """
    layers = model_layers(model)
    steps, shape = [], tuple(input_shape)
    for name, module in layers:
        name = name or type(module).__name__
        if isinstance(module, COMPUTE):
            kind = "compute"
        elif isinstance(module, RESHAPES):
            kind = "reshape"
        elif isinstance(module, nn.ReLU):
            kind = "relu"
        elif isinstance(module, NO_OPS):
            kind = "noop"
        else:
            raise ExportError(f"layer '{name}' ({describe(module)}) is not supported: the array runs "
                              "nn.Linear and nn.Conv2d with nn.ReLU, nn.Flatten, nn.Unflatten between them")
        if isinstance(module, nn.Linear) and len(shape) != 1:
            raise ExportError(f"layer '{name}' ({describe(module)}) gets a {tuple(shape)} input per sample; "
                              "put nn.Flatten before it")
        if isinstance(module, nn.Conv2d):
            if len(shape) != 3:
                raise ExportError(f"layer '{name}' ({describe(module)}) needs a (C, H, W) input per sample, "
                                  f"gets {tuple(shape)}")
            if module.groups != 1 or tuple(module.dilation) != (1, 1) or module.padding_mode != "zeros":
                raise ExportError(f"layer '{name}' ({describe(module)}): groups, dilation and non-zero "
                                  "padding modes are not supported")
            _pair(module.padding, "padding", name)
        try:
            with torch.no_grad():
                out = module.eval()(torch.zeros((1,) + shape))
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"layer '{name}' ({describe(module)}) does not take a {tuple(shape)} input: "
                              f"{first}") from None
        out_shape = tuple(out.shape[1:])
        steps.append((name, module, kind, shape, out_shape))
        shape = out_shape
    computes = [i for i, s in enumerate(steps) if s[2] == "compute"]
    if not computes:
        raise ExportError("model has no nn.Linear or nn.Conv2d layer")
    for i, (name, module, kind, _, _) in enumerate(steps):
        if kind == "relu" and (i < computes[0] or i > computes[-1]):
            where = "before the first" if i < computes[0] else "after the output"
            raise ExportError(f"layer '{name}' (ReLU) {where} Linear/Conv2d layer is not supported: "
                              "the integer model's output is signed logits")
    for a, b in zip(computes, computes[1:]):
        if not any(steps[j][2] == "relu" for j in range(a + 1, b)):
            name, module = steps[a][:2]
            raise ExportError(f"layer '{name}' ({describe(module)}) is not followed by nn.ReLU: the array's "
                              "activations are unsigned, so every hidden layer needs a ReLU")
    return steps


# ----------------------------------------------------------------------------------------------
# Integer layers


@dataclasses.dataclass(frozen=True)
class TermBudget:
    """Term quantization: ``weight_terms`` terms per ``group`` weights, ``data_terms`` per activation."""

    group: int
    weight_terms: int
    data_terms: int

    def __post_init__(self):
        for field in ("group", "weight_terms", "data_terms"):
            if int(getattr(self, field)) != getattr(self, field) or getattr(self, field) < 1:
                raise ValueError(f"term budget: {field} must be a positive integer, not {getattr(self, field)!r}")

    def as_dict(self):
        return dataclasses.asdict(self)


class PackedMatrix:
    """What a layer with a `packing` (a ColumnCombining) derives from it: its shape, its groups
    and the integer weights it computes (IntLayer here, intgraph.ArrayLayer)."""

    @property
    def in_features(self):
        return self.packing.in_features

    @property
    def out_features(self):
        return self.packing.packed.shape[0]

    @property
    def groups(self):
        return len(self.packing.groups)

    @property
    def weight_matrix(self):
        """The F x K integer weights the packed form computes."""
        return self.packing.unpack()


@dataclasses.dataclass(frozen=True)
class IntLayer(PackedMatrix):
    """One Linear / Conv2d layer in integers. See the module docstring for what it computes.

    packing         the F x K integer weights packed for the array (groups, packed, select).
    bias            (F,) int64 accumulator addend.
    shift           (F,) int64: hidden layer, the right shift of requant_shift; output layer, the
                    left shift aligning each channel to the finest weight scale.
    hidden          True: requantize + ReLU to the next layer's activations; False: logits.
    input_exponent  the input activations are real values x_int * 2**input_exponent.
    output_exponent outputs (next activations or aligned logits) are y_int * 2**output_exponent.
    conv            im2col geometry, None for nn.Linear.
    """

    name: str
    packing: ColumnCombining
    bias: np.ndarray
    shift: np.ndarray
    hidden: bool
    input_exponent: int
    output_exponent: int
    conv: ConvGeometry | None = None

    def vectors(self, x):
        """The array's input vectors for a batch of this layer's inputs: im2col for a convolution."""
        n = x.shape[0]
        return im2col(x, self.conv) if self.conv is not None else x.reshape(n, -1)

    def finish(self, acc, n, act_bits):
        """Bias, requantization or logit alignment of the accumulators (M x F), per-sample layout."""
        total = np.asarray(acc, dtype=np.int64) + self.bias[None, :]
        if self.hidden:
            y = requant_shift(torch.from_numpy(total), torch.from_numpy(self.shift), act_bits,
                              signed=False).numpy().astype(np.int64)
        else:
            y = total << self.shift[None, :]
        if self.conv is not None:
            y = y.reshape(n, self.conv.out_h, self.conv.out_w, -1).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(y)


def im2col(x, conv: ConvGeometry):
    """(n, C, H, W) -> (n * out_h * out_w, C * kh * kw), columns in ``weight.reshape(F, -1)`` order."""
    x = np.asarray(x, dtype=np.int64)
    (ph, pw), (sh, sw), (kh, kw) = conv.padding, conv.stride, conv.kernel
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # n, C, H', W', kh, kw
    windows = windows[:, :, ::sh, ::sw][:, :, :conv.out_h, :conv.out_w]
    n = x.shape[0]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * conv.positions, -1)


def golden_matmul(config):
    """The layer function of the golden model: the exact product, wrapped like the array's accumulator."""
    def matmul(index, layer, vectors):
        return reference_layer(layer.weight_matrix, vectors, config.acc_width)
    return matmul


class IntegerRunner:
    """What an integer model (the chain IntModel here, intgraph.GraphModel) derives from its
    `config`, `term_budget`, `layers` and `run_with(layer_fn, x_int, *, trace=None)`: the golden
    run, predictions, each layer's array inputs and the term pairs."""

    @property
    def act_bits(self):
        return self.config.act_width

    @property
    def weight_bits(self):
        return self.config.weight_width

    def golden_fn(self):
        return golden_matmul(self.config)

    def _data_terms(self, x):
        """The array's input vectors truncated to the data term budget, if any."""
        if self.term_budget is None:
            return x
        lo, hi = qrange(self.act_bits, signed=False)
        kept = term_quantize_activations(torch.from_numpy(x), self.term_budget.data_terms, self.act_bits)
        return np.clip(kept.numpy(), lo, hi)

    def run_golden(self, x_int):
        return self.run_with(self.golden_fn(), x_int)

    def predict(self, x_int, layer_fn=None):
        y = self.run_with(layer_fn or self.golden_fn(), x_int)
        return y.reshape(y.shape[0], -1).argmax(axis=1)

    def layer_inputs(self, x_int):
        """The array input vectors of every layer (after data term quantization, if any)."""
        trace = []
        self.run_with(self.golden_fn(), x_int, trace=trace)
        return trace

    def term_pairs(self, x_int):
        """Term pairs (DESIGN.md §3) of running ``x_int``: HESE terms of weights x of data, summed."""
        total = 0
        for layer, vectors in zip(self.layers, self.layer_inputs(x_int)):
            w_counts = hese_encode(torch.from_numpy(layer.weight_matrix), self.weight_bits).counts()
            d_counts = hese_encode(torch.from_numpy(vectors), self.act_bits).counts()
            total += term_pairs(w_counts, d_counts)
        return total


@dataclasses.dataclass(frozen=True)
class IntModel(IntegerRunner):
    """An integer model packed for ``config`` (a ``--no-act-signed`` array)."""

    config: ArrayConfig
    input_shape: tuple
    input_exponent: int
    steps: tuple                 # IntLayer and Reshape, in order
    term_budget: TermBudget | None = None

    @property
    def layers(self):
        return [s for s in self.steps if isinstance(s, IntLayer)]

    def quantize_input(self, x):
        """Float inputs (n, *input_shape) -> unsigned integers at scale 2**input_exponent."""
        x = torch.as_tensor(x, dtype=torch.float32).reshape((-1,) + tuple(self.input_shape))
        q = quantize(x, 2.0 ** self.input_exponent, self.act_bits, signed=False)
        return q.numpy().astype(np.int64)

    def run_with(self, layer_fn, x_int, *, trace=None):
        """Integer logits (n x classes) with ``layer_fn(index, layer, vectors) -> acc`` doing W_int x.

        ``vectors`` is the (M x K) int64 input of the array for that layer; ``acc`` must be M x F.
        ``trace``, if a list, receives each layer's input vectors.
        """
        x = np.asarray(x_int, dtype=np.int64)
        n = x.shape[0]
        lo, hi = qrange(self.act_bits, signed=False)
        if x.shape[1:] != tuple(self.input_shape):
            raise ValueError(f"inputs must be n x {'x'.join(map(str, self.input_shape))}, not "
                             f"{'x'.join(map(str, x.shape))}")
        if x.size and (x.min() < lo or x.max() > hi):
            raise ValueError(f"integer inputs must be in [{lo}, {hi}]")
        index = 0
        for step in self.steps:
            if isinstance(step, Reshape):
                x = x.reshape((n,) + tuple(step.shape))
                continue
            vectors = self._data_terms(step.vectors(x))
            if trace is not None:
                trace.append(vectors)
            acc = np.asarray(layer_fn(index, step, vectors), dtype=np.int64)
            if acc.shape != (vectors.shape[0], step.out_features):
                raise ValueError(f"layer '{step.name}': the matmul returned {acc.shape}, expected "
                                 f"{(vectors.shape[0], step.out_features)}")
            x = step.finish(acc, n, self.act_bits)
            index += 1
        return x.reshape(n, -1)



# ----------------------------------------------------------------------------------------------
# Export


def _effective_weight(module):
    if hasattr(module, "weight_mask"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


MAX_SHIFT = 30


def _quantize_weight(module, bits, s_x, s_y):
    """Per-channel power-of-two weight quantization, with each channel's scale floored so that the
    integer arithmetic stays in range: a channel of negligible weights (a dead ReLU unit after weight
    decay, say) would otherwise get a tiny scale, a shift beyond requant_shift's range and a bias
    beyond int32. The floors: requantization shift (hidden) or logit alignment shift (output) at
    most MAX_SHIFT, and the bias, at scale s_w * s_x, inside int32. A floored channel's weights
    quantize more coarsely, which costs at most 2**-MAX_SHIFT of an output step per product.
    """
    effective = _effective_weight(module)
    weight = quantize_tensor(effective, bits, per_channel=True, power_of_two=True)
    e_w = power_of_two_exponent(weight.scale)
    e_x = int(power_of_two_exponent(s_x))
    if s_y is not None:
        floor = torch.full_like(e_w, int(power_of_two_exponent(s_y)) - e_x - MAX_SHIFT)
    else:
        floor = torch.full_like(e_w, int(e_w.max()) - MAX_SHIFT)
    if module.bias is not None:
        magnitude = module.bias.detach().abs().to(torch.float64)
        # |bias| / 2**(e_w + e_x) < 2**(BIAS_BITS - 1) - 1
        needed = torch.where(magnitude > 0, torch.ceil(torch.log2(magnitude.clamp(min=1e-300))).to(torch.int64)
                             - (BIAS_BITS - 2) - e_x, torch.full_like(e_w, -(1 << 20)))
        floor = torch.maximum(floor, needed)
    if bool((e_w >= floor).all()):
        return weight
    scale = torch.ldexp(torch.ones_like(weight.scale), torch.maximum(e_w, floor).to(torch.int32))
    return QuantizedTensor(quantize(effective.to(torch.float32), scale, bits, signed=True), scale, bits, True)


def check_array_config(config: ArrayConfig):
    if getattr(config, "mac", "int") != "int":
        raise ExportError("the integer model needs an array with integer multiply-accumulate (mac int)")
    if config.act_signed:
        raise ExportError("the integer model needs an array with unsigned activations (--no-act-signed): "
                          "its activations come out of ReLUs")
    if not config.weight_signed:
        raise ExportError("the integer model needs an array with signed weights (--weight-signed)")


def export_model(model: nn.Module, config: ArrayConfig, calibration, *, groups=None,
                 term_budget: TermBudget | None = None) -> IntModel:
    """Quantize and pack ``model`` (a trained, possibly pruned nn.Sequential) for the array ``config``.

    calibration  float inputs (n, *input_shape) for the activation scales (e.g. the training set).
    groups       {layer name: column grouping}, e.g. from joint optimization; a layer not listed is
                 packed losslessly (``group_columns`` with gamma 0: only columns that share no
                 nonzero row are combined). Every layer must pack losslessly by its grouping.
    """
    check_array_config(config)
    calibration = torch.as_tensor(calibration, dtype=torch.float32)
    input_shape = tuple(calibration.shape[1:])
    plan = plan_model(model, input_shape)
    act_bits, weight_bits = config.act_width, config.weight_width
    if float(calibration.min()) < 0:
        raise ExportError("the model's inputs must be non-negative: the array's activations are unsigned")
    computes = [i for i, s in enumerate(plan) if s[2] == "compute"]
    groups = dict(groups or {})

    # Activation scales: the tensor entering every compute layer, from the float model.
    was_training = model.training
    model.eval()
    scales, x = [], calibration
    with torch.no_grad():
        for name, module, kind, _, _ in plan:
            if kind == "compute":
                scales.append(compute_scale(x, act_bits, signed=False, power_of_two=True))
            x = module(x)
    model.train(was_training)

    steps, index = [], 0
    for i, (name, module, kind, in_shape, out_shape) in enumerate(plan):
        if kind == "reshape":
            steps.append(Reshape(name, out_shape))
            continue
        if kind != "compute":
            continue
        hidden = i != computes[-1]
        s_x = scales[index]
        s_y = scales[index + 1] if hidden else None
        weight = _quantize_weight(module, weight_bits, s_x, s_y)
        w_int = weight.values.reshape(weight.values.shape[0], -1).numpy().astype(np.int64)
        if term_budget is not None:
            w_int = term_quantize_weights(torch.from_numpy(w_int), term_budget.group, term_budget.weight_terms,
                                          weight_bits).numpy()
            w_int = np.clip(w_int, *qrange(weight_bits, signed=True))
        F, K = w_int.shape
        grouping = groups.pop(name, None)
        if grouping is None:
            grouping = group_columns(w_int != 0, config.alpha, 0.0)
        try:
            packing = pack(w_int, grouping, config.alpha)
        except ValueError as e:
            raise ExportError(f"layer '{name}' ({describe(module)}): {e}") from None
        if not np.array_equal(packing.unpack(), w_int):
            raise ExportError(f"layer '{name}' ({describe(module)}): its weights do not pack losslessly by the "
                              "given column grouping (two weights of a row in one group)")
        # The accumulator must hold any sum exactly, or the host's requantization would see a wrap.
        a_lo, a_hi = qrange(act_bits, signed=False)
        worst = int(np.abs(w_int).sum(axis=1).max(initial=0)) * a_hi
        if signed_width_for(-worst, worst) > config.acc_width:
            raise ExportError(f"layer '{name}' ({describe(module)}): {K} inputs can overflow the "
                              f"{config.acc_width}-bit accumulator")
        e_w = power_of_two_exponent(weight.scale)
        e_x = int(power_of_two_exponent(s_x))
        if module.bias is not None:
            bias = quantize_bias(module.bias, weight.scale, float(s_x), BIAS_BITS).numpy().astype(np.int64)
        else:
            bias = np.zeros(F, dtype=np.int64)
        if hidden:
            shift = requant_shift_amount(weight.scale, s_x, s_y).numpy().astype(np.int64)
            e_out = int(power_of_two_exponent(s_y))
        else:
            shift = (e_w - e_w.min()).numpy().astype(np.int64)
            e_out = int(e_w.min()) + e_x
        conv = None
        if isinstance(module, nn.Conv2d):
            conv = ConvGeometry(in_channels=module.in_channels, in_h=in_shape[1], in_w=in_shape[2],
                                kernel=tuple(module.kernel_size), stride=tuple(module.stride),
                                padding=_pair(module.padding, "padding", name))
        steps.append(IntLayer(name=name, packing=packing, bias=bias, shift=shift, hidden=hidden,
                              input_exponent=e_x, output_exponent=e_out, conv=conv))
        index += 1
    if groups:
        raise ExportError(f"column groupings given for unknown layer(s): {', '.join(sorted(groups))}")
    input_exponent = int(power_of_two_exponent(scales[0]))
    return IntModel(config=config, input_shape=input_shape, input_exponent=input_exponent, steps=tuple(steps),
                    term_budget=term_budget)
