"""Symmetric fixed-point quantization: scales, fake quantization for training, integer export.

Every float-to-integer conversion in sparsegen goes through :func:`round_half_up` and
:func:`qrange`, and every integer rescale through :func:`requant_shift`, so the integer
model, the golden models and the hardware agree bit for bit.

Rounding and range rules (the contract):

* **Range.** A signed ``b``-bit value lies in ``[-(2**(b-1) - 1), 2**(b-1) - 1]``: the
  range is *symmetric*, ``-2**(b-1)`` is never produced. Symmetry keeps ``-x`` representable,
  keeps the magnitude of every value within ``b - 1`` bits (term quantization encodes
  magnitudes) and makes the quantizer odd up to the rounding tie rule. An unsigned ``b``-bit
  value lies in ``[0, 2**b - 1]``.
* **Float to integer.** ``q = clamp(floor(x / scale + 0.5), qmin, qmax)``, evaluated in the
  tensor's floating dtype exactly as written (true division by the scale, then ``+ 0.5``, then
  ``torch.floor``). Ties round *up* (towards +inf): 2.5 -> 3, -2.5 -> -2. With power-of-two
  scales the division is exact.
* **Integer rescale.** ``requant_shift(acc, s, b)`` for ``s > 0`` is
  ``(acc + 2**(s-1)) >> s`` with an arithmetic (flooring) shift, which equals
  ``floor(acc / 2**s + 0.5)`` -- the same round-half-up rule as above -- then saturation to
  the ``b``-bit range. ``s == 0`` is the identity and ``s < 0`` a left shift, both followed by
  saturation.
* **Scales.** ``scale = max|x| / qmax`` per tensor or per output channel (dim 0); an all-zero
  tensor or channel gets scale 1. With ``power_of_two=True`` the scale is rounded *up* to the
  next power of two (so nothing new clips) and requantization between layers is a shift.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "qrange",
    "round_half_up",
    "compute_scale",
    "round_scale_to_power_of_two",
    "power_of_two_exponent",
    "quantize",
    "dequantize",
    "fake_quant",
    "FakeQuant",
    "fake_quant_tensor",
    "QuantizedTensor",
    "quantize_tensor",
    "IntegerLayer",
    "export_layer",
    "quantize_bias",
    "requant_shift",
    "requant_shift_amount",
]


def _check_bits(bits, name: str = "bits") -> int:
    try:
        bits = operator.index(bits)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {bits!r}") from None
    if not 2 <= bits <= 32:
        raise ValueError(f"{name} must be in 2..32, got {bits}")
    return bits


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of a ``bits``-bit value (symmetric when signed)."""
    bits = _check_bits(bits)
    if signed:
        qmax = (1 << (bits - 1)) - 1
        return -qmax, qmax
    return 0, (1 << bits) - 1


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 0.5)`` in ``x``'s dtype: the one rounding rule of float-to-integer paths."""
    return torch.floor(x + 0.5)


def _channel_view(scale: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-output-channel scale ``(C,)`` to broadcast over a ``ndim``-D tensor."""
    if scale.ndim == 0 or ndim == 0:
        return scale
    return scale.reshape((-1,) + (1,) * (ndim - 1))


def round_scale_to_power_of_two(scale: torch.Tensor) -> torch.Tensor:
    """Round positive scales up to the next power of two (exact: uses frexp, not log2)."""
    scale = torch.as_tensor(scale, dtype=torch.float32)
    if bool((scale <= 0).any()):
        raise ValueError("scale must be positive to round it to a power of two")
    mantissa, exponent = torch.frexp(scale)  # scale = mantissa * 2**exponent, mantissa in [0.5, 1)
    # An exact power of two has mantissa 0.5 and stays; anything else rounds up to 2**exponent.
    exponent = torch.where(mantissa == 0.5, exponent - 1, exponent)
    return torch.ldexp(torch.ones_like(scale), exponent)


def power_of_two_exponent(scale) -> torch.Tensor:
    """Integer ``e`` with ``scale == 2**e`` (elementwise); ValueError if a scale is not a power of two."""
    scale = torch.as_tensor(scale, dtype=torch.float32)
    if bool((scale <= 0).any()):
        raise ValueError("scale must be positive")
    mantissa, exponent = torch.frexp(scale)
    if bool((mantissa != 0.5).any()):
        raise ValueError(f"scale is not a power of two: {scale.flatten()[mantissa.flatten() != 0.5][:4].tolist()}")
    return (exponent - 1).to(torch.int64)


def compute_scale(
    x: torch.Tensor,
    bits: int = 8,
    *,
    per_channel: bool = False,
    power_of_two: bool = False,
    signed: bool = True,
) -> torch.Tensor:
    """Scale mapping ``max|x|`` to ``qmax``: a 0-d tensor, or ``(C,)`` per output channel (dim 0)."""
    _, qmax = qrange(bits, signed)
    x = x.detach().to(torch.float32)
    if per_channel:
        if x.ndim < 1:
            raise ValueError("per_channel scale needs a tensor with an output-channel dimension (dim 0)")
        max_abs = x.abs().reshape(x.shape[0], -1).amax(dim=1)
    else:
        max_abs = x.abs().amax() if x.numel() else torch.tensor(0.0)
    scale = max_abs / qmax
    # An all-zero tensor/channel quantizes to zeros under any scale; 1 avoids dividing by zero.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if power_of_two:
        scale = round_scale_to_power_of_two(scale)
    return scale


def quantize(x: torch.Tensor, scale, bits: int = 8, signed: bool = True) -> torch.Tensor:
    """Float -> int32: ``clamp(floor(x / scale + 0.5), qmin, qmax)``; a 1-D scale is per dim-0 channel."""
    qmin, qmax = qrange(bits, signed)
    scale = torch.as_tensor(scale, dtype=x.dtype if x.is_floating_point() else torch.float32)
    scaled = x / _channel_view(scale, x.ndim)
    return round_half_up(scaled).clamp(qmin, qmax).to(torch.int32)


def dequantize(q: torch.Tensor, scale) -> torch.Tensor:
    """Int -> float32: ``q * scale`` (a 1-D scale is per dim-0 channel)."""
    scale = torch.as_tensor(scale, dtype=torch.float32)
    return q.to(torch.float32) * _channel_view(scale, q.ndim)


class FakeQuant(torch.autograd.Function):
    """Quantize-dequantize with a straight-through estimator.

    Forward: ``clamp(floor(x / s + 0.5), qmin, qmax) * s``. Backward: the gradient passes
    unchanged where ``qmin * s <= x <= qmax * s`` and is zero where ``x`` was clipped (the
    clipped output does not depend on ``x``). The scale gets no gradient.
    """

    @staticmethod
    def forward(ctx, x, scale, bits, signed):
        qmin, qmax = qrange(bits, signed)
        scale = _channel_view(torch.as_tensor(scale, dtype=x.dtype), x.ndim)
        scaled = x / scale
        ctx.save_for_backward((scaled >= qmin) & (scaled <= qmax))
        return round_half_up(scaled).clamp(qmin, qmax) * scale

    @staticmethod
    def backward(ctx, grad_output):
        (inside,) = ctx.saved_tensors
        return grad_output * inside.to(grad_output.dtype), None, None, None


def fake_quant(x: torch.Tensor, scale, bits: int = 8, signed: bool = True) -> torch.Tensor:
    """Differentiable quantize-dequantize (STE); see :class:`FakeQuant`."""
    return FakeQuant.apply(x, scale, _check_bits(bits), bool(signed))


def fake_quant_tensor(
    x: torch.Tensor,
    bits: int = 8,
    *,
    per_channel: bool = False,
    power_of_two: bool = False,
    signed: bool = True,
) -> torch.Tensor:
    """Fake-quantize ``x`` with a scale computed from its current (detached) values."""
    scale = compute_scale(x, bits, per_channel=per_channel, power_of_two=power_of_two, signed=signed)
    return fake_quant(x, scale.to(x.dtype), bits, signed)


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer values (int32) with their scale: ``real ~= values * scale``.

    ``scale`` is 0-d (per tensor) or ``(C,)`` (per output channel, dim 0).
    """

    values: torch.Tensor
    scale: torch.Tensor
    bits: int
    signed: bool = True

    def __post_init__(self):
        if self.values.dtype != torch.int32:
            raise ValueError(f"QuantizedTensor.values must be int32, got {self.values.dtype}")
        qmin, qmax = qrange(self.bits, self.signed)
        if self.values.numel() and (int(self.values.min()) < qmin or int(self.values.max()) > qmax):
            raise ValueError(f"QuantizedTensor.values exceed the {self.bits}-bit range [{qmin}, {qmax}]")
        if self.scale.ndim not in (0, 1):
            raise ValueError(f"QuantizedTensor.scale must be 0-d or 1-d, got shape {tuple(self.scale.shape)}")

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim == 1

    @property
    def exponents(self) -> torch.Tensor:
        """``e`` with ``scale == 2**e`` (power-of-two scales only)."""
        return power_of_two_exponent(self.scale)

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.values, self.scale)


def quantize_tensor(
    x: torch.Tensor,
    bits: int = 8,
    *,
    per_channel: bool = False,
    power_of_two: bool = False,
    signed: bool = True,
) -> QuantizedTensor:
    """Quantize ``x`` with its own max-abs scale and return integers plus scale."""
    x = x.detach()
    scale = compute_scale(x, bits, per_channel=per_channel, power_of_two=power_of_two, signed=signed)
    return QuantizedTensor(quantize(x.to(torch.float32), scale, bits, signed), scale, bits, signed)


def quantize_bias(bias: torch.Tensor, weight_scale, input_scale, bits: int = 32) -> torch.Tensor:
    """Bias as an int32 accumulator addend at scale ``weight_scale * input_scale`` (per channel)."""
    scale = torch.as_tensor(weight_scale, dtype=torch.float32) * float(input_scale)
    if scale.ndim == 0:
        scale = scale.expand(bias.shape[0])
    if scale.shape != bias.shape:
        raise ValueError(f"bias has {tuple(bias.shape)} entries but weight_scale has {tuple(scale.shape)}")
    # Division in float64 so a 32-bit accumulator value is represented exactly before rounding.
    q = torch.floor(bias.detach().to(torch.float64) / scale.to(torch.float64) + 0.5)
    qmin, qmax = qrange(bits, True)
    return q.clamp(qmin, qmax).to(torch.int32)


@dataclass(frozen=True)
class IntegerLayer:
    """Integer form of a Linear/Conv2d layer: ``acc = W_int @ x_int + bias_int`` (bias optional)."""

    weight: QuantizedTensor
    bias: torch.Tensor | None
    input_scale: float | None


def export_layer(
    module: nn.Module,
    weight_bits: int = 8,
    *,
    per_channel: bool = True,
    power_of_two: bool = False,
    input_scale: float | None = None,
    bias_bits: int = 32,
) -> IntegerLayer:
    """Export a (possibly pruned) nn.Linear / nn.Conv2d to integer weights and an int32 bias.

    The effective weight (after any pruning mask) is quantized, so pruned weights export as 0.
    The bias needs the input scale (bias is added at scale ``weight_scale * input_scale``); without
    ``input_scale`` it is not exported.
    """
    if not isinstance(module, (nn.Linear, nn.Conv2d)):
        raise ValueError(f"export_layer supports nn.Linear and nn.Conv2d, got {type(module).__name__}")
    effective = module.weight
    if hasattr(module, "weight_mask"):  # pruned: `weight` is only refreshed by a forward pass
        effective = module.weight_orig * module.weight_mask
    weight = quantize_tensor(effective, weight_bits, per_channel=per_channel, power_of_two=power_of_two, signed=True)
    bias = None
    if module.bias is not None and input_scale is not None:
        bias = quantize_bias(module.bias, weight.scale, input_scale, bias_bits)
    return IntegerLayer(weight, bias, input_scale)


def requant_shift(acc, shift, out_bits: int = 8, signed: bool = True) -> torch.Tensor:
    """Rescale integer accumulators by ``2**-shift`` with round-half-up, then saturate.

    ``shift`` is an int or an integer tensor broadcastable against ``acc`` (e.g. per output
    channel, shape ``(C, 1)`` for ``acc`` of shape ``(C, N)``). For ``shift > 0`` the result
    is ``(acc + 2**(shift-1)) >> shift`` (arithmetic shift, i.e. floor), for ``shift == 0``
    ``acc``, for ``shift < 0`` ``acc << -shift``; then clamp to :func:`qrange`. Computed in
    int64; returns int32.
    """
    acc = torch.as_tensor(acc)
    if acc.is_floating_point() or acc.dtype == torch.bool:
        raise ValueError(f"requant_shift needs an integer accumulator, got {acc.dtype}")
    shift = torch.as_tensor(shift)
    if shift.is_floating_point() or shift.dtype == torch.bool:
        raise ValueError(f"requant_shift needs an integer shift, got {shift.dtype}")
    if bool((shift.abs() > 62).any()):
        raise ValueError("requant_shift: |shift| must be <= 62")
    acc = acc.to(torch.int64)
    shift = shift.to(torch.int64)
    right = shift.clamp(min=0)
    left = (-shift).clamp(min=0)
    # Half of the divisor, 0 when there is no right shift (shift <= 0).
    half = torch.where(right > 0, torch.ones_like(right) << (right - 1).clamp(min=0), torch.zeros_like(right))
    shifted = ((acc + half) >> right) << left
    qmin, qmax = qrange(out_bits, signed)
    return shifted.clamp(qmin, qmax).to(torch.int32)


def requant_shift_amount(weight_scale, input_scale, output_scale) -> torch.Tensor:
    """Shift for :func:`requant_shift` when all scales are powers of two.

    ``y_real = acc * s_w * s_x`` and ``y_int = y_real / s_y = acc * 2**(e_w + e_x - e_y)``, so the
    right shift is ``e_y - e_w - e_x`` (per channel if ``weight_scale`` is per channel).
    """
    e_w = power_of_two_exponent(weight_scale)
    e_x = power_of_two_exponent(input_scale)
    e_y = power_of_two_exponent(output_scale)
    return e_y - e_w - e_x
