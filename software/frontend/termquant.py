"""Term quantization (Kung, McDanel, Zhang, SC 2020): integers as budgets of power-of-two terms.

**HESE encoding.** A value ``v`` with ``|v| < 2**bits`` is encoded from ``|v|``: scan bit
positions ``i = bits-1 .. 0`` (MSB to LSB) with the window ``(b[i+1], b[i], b[i-1])``, where
bits above the MSB and below bit 0 read as 0:

* ``010`` -> term ``+2**i``, and the next bit ``i-1`` is skipped;
* ``011`` -> term ``+2**(i+1)`` (top of a run of ones);
* ``110`` -> term ``-2**i`` (bottom of a run of ones);
* any other window -> no term.

A run of ones from bit ``t`` down to bit ``u`` becomes ``+2**(t+1) - 2**u``. Exponents come out
strictly decreasing, so terms are emitted largest first. A negative ``v`` is encoded as ``|v|``
with every term's sign flipped. Leading zeros emit nothing, so the encoding does not depend on
``bits`` beyond it being wide enough. The largest exponent is ``bits`` (e.g. 7 = +8 -1).

Term count: a run of one 1 gives one term, a longer run two, so a value never has more terms
than binary ones, and at most ``floor(2*(bits+1)/3)`` terms (reached by ``...11011011``: 8-bit
219 = +256 -64 +32 -8 +4 -1). Note this is *not* the ``ceil((bits+1)/2)`` bound of the
canonical signed-digit (NAF) form: the window rules above never merge two runs separated by a
single 0 (NAF writes 219 = +256 -32 -4 -1). The rules are kept exactly as specified because the
hardware encoder implements them.

**Budgets.** Weights: for each group of ``group`` consecutive values along the last (input)
dimension, repeat ``budget`` times: take the largest remaining term over the group, ties to the
lower index in the group; drop the rest. Because each value's terms are strictly decreasing,
every value keeps a prefix of its HESE terms. A last group shorter than ``group`` (when the
input dimension is not a multiple) gets the same budget. Activations: each value keeps its
first ``budget`` terms. Truncation can round a magnitude *up* (127 = +128 -1 keeps +128), so a
truncated value may reach ``2**bits`` in magnitude.

**Cost.** For ``y = W x`` over a batch, the term pairs are
``sum_{n,f,k} terms(W[f,k]) * terms(x[n,k])`` -- MACs x weight terms x data terms when budgets
are uniform.

Terms are ``(sign, exponent)`` pairs; in tensors (:class:`TermCodes`) a value's terms occupy
the last dimension of size ``max_terms(bits)``, largest first, unused slots have sign 0 and
exponent 0.
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import torch

from software.frontend.quant import _channel_view, qrange, quantize
from spec.checks import positive_int

__all__ = [
    "max_terms",
    "hese_terms",
    "TermCodes",
    "hese_encode",
    "truncate_per_value",
    "truncate_groups",
    "weight_terms",
    "activation_terms",
    "term_quantize_weights",
    "term_quantize_activations",
    "term_pairs",
    "TermFakeQuant",
    "term_fake_quant_weight",
    "term_fake_quant_activation",
]


def _check_bits(bits) -> int:
    bits = positive_int("bits", bits)
    if bits > 31:
        raise ValueError(f"bits must be <= 31, got {bits}")
    return bits


def max_terms(bits: int) -> int:
    """Most HESE terms of a value with ``|v| < 2**bits``: ``floor(2*(bits+1)/3)`` (tight)."""
    return 2 * (_check_bits(bits) + 1) // 3


def hese_terms(v: int, bits: int) -> list[tuple[int, int]]:
    """HESE terms ``[(sign, exponent), ...]`` of ``v``, largest first (the golden reference)."""
    bits = _check_bits(bits)
    v = operator.index(v)
    magnitude = abs(v)
    if magnitude >= 1 << bits:
        raise ValueError(f"hese_terms: |{v}| does not fit in {bits} bits")
    sign = -1 if v < 0 else 1

    def bit(i: int) -> int:
        return (magnitude >> i) & 1 if i >= 0 else 0

    terms = []
    i = bits - 1
    while i >= 0:
        window = (bit(i + 1), bit(i), bit(i - 1))
        if window == (0, 1, 0):
            terms.append((sign, i))
            i -= 2  # skip the next bit
            continue
        if window == (0, 1, 1):
            terms.append((sign, i + 1))
        elif window == (1, 1, 0):
            terms.append((-sign, i))
        i -= 1
    return terms


@dataclass(frozen=True)
class TermCodes:
    """Signed power-of-two terms of a tensor of integers.

    ``signs`` (int8, -1/0/+1) and ``exponents`` (int8) have shape ``values_shape + (T,)``;
    slot ``t`` holds the ``t``-th largest term, sign 0 marks an unused slot.
    """

    signs: torch.Tensor
    exponents: torch.Tensor

    def __post_init__(self):
        if self.signs.shape != self.exponents.shape or self.signs.ndim < 1:
            raise ValueError(
                f"TermCodes: signs {tuple(self.signs.shape)} and exponents {tuple(self.exponents.shape)} "
                "must have the same shape with a trailing term dimension"
            )

    def values(self) -> torch.Tensor:
        """The integers the terms sum to (int64)."""
        powers = torch.ones_like(self.exponents, dtype=torch.int64) << self.exponents.to(torch.int64)
        return (self.signs.to(torch.int64) * powers).sum(dim=-1)

    def counts(self) -> torch.Tensor:
        """Number of terms of each value (int64)."""
        return (self.signs != 0).sum(dim=-1)

    def mask(self, keep: torch.Tensor) -> "TermCodes":
        """Keep only the slots where ``keep`` is true."""
        return TermCodes(
            torch.where(keep, self.signs, torch.zeros_like(self.signs)),
            torch.where(keep, self.exponents, torch.zeros_like(self.exponents)),
        )


def _check_int_tensor(x, bits: int, what: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{what} must be an integer tensor, got {x.dtype}")
    x = x.to(torch.int64)
    if x.numel() and int(x.abs().max()) >= 1 << bits:
        raise ValueError(f"{what} has values with magnitude >= 2**{bits} (max |v| = {int(x.abs().max())})")
    return x


def _encode_magnitudes(magnitude: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bit-serial HESE scan over a tensor of magnitudes, vectorized across elements."""
    slots = max_terms(bits)
    signs = torch.zeros(magnitude.shape + (slots,), dtype=torch.int8)
    exponents = torch.zeros(magnitude.shape + (slots,), dtype=torch.int8)
    slot_index = torch.arange(slots)
    count = torch.zeros(magnitude.shape, dtype=torch.int64)
    skip = torch.zeros(magnitude.shape, dtype=torch.bool)
    for i in range(bits - 1, -1, -1):
        high = (magnitude >> (i + 1)) & 1
        mid = (magnitude >> i) & 1
        low = (magnitude >> (i - 1)) & 1 if i > 0 else torch.zeros_like(magnitude)
        active = ~skip & (mid == 1)
        isolated = active & (high == 0) & (low == 0)  # 010
        run_top = active & (high == 0) & (low == 1)  # 011
        run_bottom = active & (high == 1) & (low == 0)  # 110
        emit = isolated | run_top | run_bottom
        sign = torch.where(run_bottom, -1, 1).to(torch.int8)
        exponent = torch.where(run_top, i + 1, i).to(torch.int8)
        write = emit.unsqueeze(-1) & (slot_index == count.unsqueeze(-1))
        signs = torch.where(write, sign.unsqueeze(-1), signs)
        exponents = torch.where(write, exponent.unsqueeze(-1), exponents)
        count += emit.to(torch.int64)
        skip = isolated
    return signs, exponents


_TABLE_BITS = 16  # up to this width, encode by looking magnitudes up in a precomputed table


@functools.lru_cache(maxsize=None)
def _hese_table(bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _encode_magnitudes(torch.arange(1 << bits), bits)


def hese_encode(x, bits: int = 8) -> TermCodes:
    """Vectorized HESE encoding of an integer tensor with ``|x| < 2**bits`` (see module doc)."""
    bits = _check_bits(bits)
    x = _check_int_tensor(x, bits, "hese_encode input")
    magnitude = x.abs()
    if bits <= _TABLE_BITS:
        table_signs, table_exponents = _hese_table(bits)
        signs, exponents = table_signs[magnitude], table_exponents[magnitude]
    else:
        signs, exponents = _encode_magnitudes(magnitude, bits)
    signs = torch.where((x < 0).unsqueeze(-1), -signs, signs)
    return TermCodes(signs, exponents)


def truncate_per_value(codes: TermCodes, budget: int) -> TermCodes:
    """Keep the first (largest) ``budget`` terms of every value."""
    budget = positive_int("budget", budget)
    slot_index = torch.arange(codes.signs.shape[-1])
    return codes.mask((slot_index < budget).expand_as(codes.signs))


def truncate_groups(codes: TermCodes, group: int, budget: int) -> TermCodes:
    """Keep the ``budget`` largest terms in each group of ``group`` values along the last value dim.

    Equivalent to: repeat ``budget`` times, take the largest remaining term of the group, ties
    to the lower index in the group. Implemented as one sort per group by the key
    ``(-exponent, index)``, which is unique because a value's exponents are distinct.
    """
    group = positive_int("group", group)
    budget = positive_int("budget", budget)
    if codes.signs.ndim < 2:
        raise ValueError("truncate_groups needs values with at least one dimension to group along")
    length, slots = codes.signs.shape[-2:]
    padded = -(-length // group) * group
    pad = padded - length

    def grouped(t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, length, slots)
        t = torch.nn.functional.pad(t, (0, 0, 0, pad))  # zero values have no terms
        return t.reshape(t.shape[0], padded // group, group * slots)

    signs = grouped(codes.signs)
    exponents = grouped(codes.exponents).to(torch.int64)
    index_in_group = torch.arange(group).repeat_interleave(slots)
    # Exponents are <= 31, so (31 - e) * group + index orders by exponent desc, then index asc.
    key = (31 - exponents) * group + index_in_group
    key = torch.where(signs != 0, key, torch.iinfo(torch.int64).max)
    order = torch.argsort(key, dim=-1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1]).expand_as(order))
    keep = (rank < budget) & (signs != 0)
    keep = keep.reshape(-1, padded, slots)[:, :length, :].reshape(codes.signs.shape)
    return codes.mask(keep)


def weight_terms(w_int, group: int, budget: int, bits: int = 8) -> TermCodes:
    """HESE-encode integer weights and apply the group budget along the last (input) dimension.

    A Conv2d weight ``(out, in, kh, kw)`` is grouped along ``in*kh*kw`` in ``reshape(out, -1)``
    order.
    """
    codes = hese_encode(w_int, bits)
    if codes.signs.ndim > 3:  # conv weight: group along the flattened input axis
        shape = codes.signs.shape
        flat = TermCodes(codes.signs.reshape(shape[0], -1, shape[-1]), codes.exponents.reshape(shape[0], -1, shape[-1]))
        kept = truncate_groups(flat, group, budget)
        return TermCodes(kept.signs.reshape(shape), kept.exponents.reshape(shape))
    return truncate_groups(codes, group, budget)


def activation_terms(x_int, budget: int, bits: int = 8) -> TermCodes:
    """HESE-encode integer activations and keep the first ``budget`` terms of each value."""
    return truncate_per_value(hese_encode(x_int, bits), budget)


def term_quantize_weights(w_int, group: int, budget: int, bits: int = 8) -> torch.Tensor:
    """Integer weights after the group term budget (int64, same shape)."""
    return weight_terms(w_int, group, budget, bits).values()


def term_quantize_activations(x_int, budget: int, bits: int = 8) -> torch.Tensor:
    """Integer activations after the per-value term budget (int64, same shape)."""
    return activation_terms(x_int, budget, bits).values()


def term_pairs(weight_counts: torch.Tensor, data_counts: torch.Tensor) -> int:
    """Term pairs of ``y = W x`` over a batch: ``sum_{n,f,k} weight_counts[f,k] * data_counts[n,k]``.

    ``weight_counts`` is ``(F, K)`` terms per weight, ``data_counts`` is ``(N, K)`` terms per
    input value (or ``(K,)`` for one vector). With uniform counts this is MACs x w x d.
    """
    weight_counts = torch.as_tensor(weight_counts, dtype=torch.int64)
    data_counts = torch.as_tensor(data_counts, dtype=torch.int64)
    if data_counts.ndim == 1:
        data_counts = data_counts.unsqueeze(0)
    if weight_counts.ndim != 2 or data_counts.ndim != 2 or weight_counts.shape[1] != data_counts.shape[1]:
        raise ValueError(
            f"term_pairs: weight_counts (F, K) and data_counts (N, K) must share K, "
            f"got {tuple(weight_counts.shape)} and {tuple(data_counts.shape)}"
        )
    return int((weight_counts.sum(dim=0) * data_counts.sum(dim=0)).sum())


class TermFakeQuant(torch.autograd.Function):
    """Quantize, term-truncate, dequantize; straight-through gradient inside the clip range.

    ``group=None`` applies the per-value budget, otherwise the group budget along the input
    dimension (``x.reshape(x.shape[0], -1)``). The scale gets no gradient.
    """

    @staticmethod
    def forward(ctx, x, scale, bits, signed, group, budget):
        qmin, qmax = qrange(bits, signed)
        scale = torch.as_tensor(scale, dtype=x.dtype)
        scaled = x / _channel_view(scale, x.ndim)
        ctx.save_for_backward((scaled >= qmin) & (scaled <= qmax))
        q = quantize(x, scale, bits, signed)
        if group is None:
            q = term_quantize_activations(q, budget, bits)
        else:
            q = term_quantize_weights(q.reshape(q.shape[0], -1), group, budget, bits).reshape(q.shape)
        return q.to(x.dtype) * _channel_view(scale, x.ndim)

    @staticmethod
    def backward(ctx, grad_output):
        (inside,) = ctx.saved_tensors
        return grad_output * inside.to(grad_output.dtype), None, None, None, None, None


def term_fake_quant_weight(w: torch.Tensor, scale, bits: int, group: int, budget: int) -> torch.Tensor:
    """Differentiable term quantization of a weight (signed, group budget, STE)."""
    return TermFakeQuant.apply(w, scale, _check_bits(bits), True, positive_int("group", group),
                               positive_int("budget", budget))


def term_fake_quant_activation(x: torch.Tensor, scale, bits: int, budget: int, signed: bool = False) -> torch.Tensor:
    """Differentiable term quantization of activations (per-value budget, STE)."""
    return TermFakeQuant.apply(x, scale, _check_bits(bits), bool(signed), None, positive_int("budget", budget))
