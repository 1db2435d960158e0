"""Quantization: rounding contract, scales, STE, integer export and requantization."""
from fractions import Fraction
import math

import pytest
import torch
from torch import nn

from software.frontend.pruning import magnitude_prune
from software.frontend.quant import (
    QuantizedTensor,
    compute_scale,
    dequantize,
    export_layer,
    fake_quant,
    fake_quant_tensor,
    power_of_two_exponent,
    qrange,
    quantize,
    quantize_bias,
    quantize_tensor,
    requant_shift,
    requant_shift_amount,
    round_half_up,
    round_scale_to_power_of_two,
)


def reference_round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def test_qrange_is_symmetric_when_signed():
    assert qrange(8) == (-127, 127)
    assert qrange(4, signed=True) == (-7, 7)
    assert qrange(8, signed=False) == (0, 255)
    with pytest.raises(ValueError, match="bits must be in 2..32"):
        qrange(1)
    with pytest.raises(ValueError, match="bits must be an integer"):
        qrange(8.0)


def test_round_half_up_ties_go_to_plus_infinity():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -2.4, 2.6])
    assert round_half_up(x).tolist() == [-2, -1, 0, 1, 2, 3, -2, 3]


def test_quantize_rounds_clamps_and_returns_int32():
    q = quantize(torch.tensor([0.25, -0.25, 0.74, 100.0, -100.0, 0.0]), 0.5, bits=8)
    assert q.dtype == torch.int32
    assert q.tolist() == [1, 0, 1, 127, -127, 0]
    assert quantize(torch.tensor([-1.0, 3.0, 500.0]), 1.0, bits=8, signed=False).tolist() == [0, 3, 255]


def test_quantize_per_channel_broadcasts_over_dim0():
    w = torch.ones(2, 3, 2, 2)
    q = quantize(w, torch.tensor([0.5, 0.25]), bits=8)
    assert bool((q[0] == 2).all()) and bool((q[1] == 4).all())
    assert torch.equal(dequantize(q, torch.tensor([0.5, 0.25])), w)


def test_compute_scale_per_tensor_and_channel():
    w = torch.tensor([[1.27, -0.5], [0.0, 0.0], [-2.54, 1.0]])
    assert float(compute_scale(w, 8)) == pytest.approx(2.54 / 127)
    per_channel = compute_scale(w, 8, per_channel=True)
    assert per_channel.tolist() == pytest.approx([0.01, 1.0, 0.02])  # the zero channel gets 1
    assert float(compute_scale(torch.tensor([3.0, 1.0]), 8, signed=False)) == pytest.approx(3 / 255)


def test_power_of_two_scales_round_up_exactly():
    raw = torch.tensor([0.3, 0.25, 1.0, 3.0, 1e-5, 2.0**-20 * 1.000001])
    rounded = round_scale_to_power_of_two(raw)
    assert rounded.tolist() == [0.5, 0.25, 1.0, 4.0, 2.0**-16, 2.0**-19]
    exponents = power_of_two_exponent(rounded)
    assert exponents.tolist() == [-1, -2, 0, 2, -16, -19]
    # The smallest power of two >= the scale, for scales across many magnitudes.
    rng = torch.Generator().manual_seed(0)
    many = (torch.rand(2000, generator=rng) + 0.01) * 10.0 ** torch.arange(-10, 10).repeat(100)
    rounded = round_scale_to_power_of_two(many)
    assert bool((rounded >= many).all()) and bool((rounded < 2 * many).all())
    assert torch.equal(2.0 ** power_of_two_exponent(rounded).double(), rounded.double())
    w = torch.randn(5, 7)
    scale = compute_scale(w, 8, per_channel=True, power_of_two=True)
    power_of_two_exponent(scale)  # raises if any scale is not a power of two
    assert bool((quantize(w, scale).abs() <= 127).all())
    with pytest.raises(ValueError, match="not a power of two"):
        power_of_two_exponent(torch.tensor([0.5, 0.3]))


def test_quantize_error_is_at_most_half_a_step():
    torch.manual_seed(0)
    x = torch.randn(1000)
    qt = quantize_tensor(x, 8, power_of_two=True)
    assert bool(((qt.dequantize() - x).abs() <= qt.scale / 2).all())


def test_fake_quant_forward_matches_quantize_dequantize():
    torch.manual_seed(1)
    x = torch.randn(4, 9)
    scale = compute_scale(x, 6, per_channel=True)
    assert torch.equal(fake_quant(x, scale, 6), dequantize(quantize(x, scale, 6), scale))


def test_fake_quant_straight_through_gradient():
    x = torch.tensor([-2.0, -1.27, -0.5, 0.0, 0.3, 1.27, 1.3, 5.0], requires_grad=True)
    y = fake_quant(x, 0.01, 8)  # representable range [-1.27, 1.27]
    y.backward(torch.arange(1.0, 9.0))
    assert x.grad.tolist() == [0, 2, 3, 4, 5, 6, 0, 0]


def test_fake_quant_per_channel_gradient_and_training_step():
    w = torch.tensor([[0.5, 3.0], [0.5, 3.0]], requires_grad=True)
    fake_quant(w, torch.tensor([0.01, 0.1]), 8).sum().backward()
    # Channel 0 clips at 1.27 (3.0 is outside); channel 1 reaches 12.7.
    assert w.grad.tolist() == [[1, 0], [1, 1]]
    layer = nn.Linear(3, 2)
    out = torch.nn.functional.linear(torch.ones(1, 3), fake_quant_tensor(layer.weight, 4, per_channel=True))
    out.sum().backward()
    assert layer.weight.grad is not None and bool((layer.weight.grad != 0).any())


def test_requant_shift_matches_exact_round_half_up_then_saturates():
    acc = torch.arange(-3000, 3000, dtype=torch.int32)
    for shift in range(0, 7):
        got = requant_shift(acc, shift, out_bits=8)
        expected = [max(-127, min(127, reference_round_half_up(Fraction(a, 2**shift)))) for a in acc.tolist()]
        assert got.tolist() == expected, f"shift {shift}"
    assert got.dtype == torch.int32


def test_requant_shift_negative_per_channel_unsigned_and_wide():
    acc = torch.tensor([[5, -5, 3], [5, -5, 3]])
    shifts = torch.tensor([[1], [-2]])
    assert requant_shift(acc, shifts, 8).tolist() == [[3, -2, 2], [20, -20, 12]]
    assert requant_shift(torch.tensor([-9, 9, 1000]), 1, 8, signed=False).tolist() == [0, 5, 255]
    big = torch.tensor([2**40 + 2**9, -(2**40)], dtype=torch.int64)
    assert requant_shift(big, 10, 32).tolist() == [2**30 + 1, -(2**30)]
    assert requant_shift(big, 10, 16).tolist() == [32767, -32767]
    with pytest.raises(ValueError, match="integer accumulator"):
        requant_shift(torch.tensor([1.5]), 1)
    with pytest.raises(ValueError, match="integer shift"):
        requant_shift(torch.tensor([1]), 1.0)


def test_requant_shift_amount():
    assert int(requant_shift_amount(2.0**-7, 2.0**-4, 2.0**-3)) == 8
    assert requant_shift_amount(torch.tensor([2.0**-7, 2.0**-5]), 2.0**-4, 2.0**-3).tolist() == [8, 6]
    with pytest.raises(ValueError, match="not a power of two"):
        requant_shift_amount(0.3, 1.0, 1.0)


def test_integer_linear_pipeline_matches_float_model():
    """Power-of-two export + integer matmul + requant_shift reproduces the float layer."""
    torch.manual_seed(2)
    layer = nn.Linear(32, 16)
    magnitude_prune(layer, 0.5)
    x = torch.rand(64, 32)
    in_scale = float(compute_scale(x, 8, signed=False, power_of_two=True))
    x_int = quantize(x, in_scale, 8, signed=False)
    exported = export_layer(layer, 8, per_channel=True, power_of_two=True, input_scale=in_scale)
    w = exported.weight
    assert w.values.dtype == torch.int32 and w.scale.shape == (16,)
    assert bool((w.values[layer.weight_mask == 0] == 0).all()), "pruned weights export as zeros"
    y_float = layer(x).detach()
    out_scale = compute_scale(y_float, 8, power_of_two=True)
    shift = requant_shift_amount(w.scale, in_scale, out_scale)  # per output channel
    acc = x_int.to(torch.int64) @ w.values.to(torch.int64).T + exported.bias.to(torch.int64)
    y_int = requant_shift(acc, shift, 8)
    # Bit-exact against the real-number definition floor(acc * s_w * s_x / s_y + 1/2).
    ratio = [Fraction(2) ** -int(s) for s in shift]
    expected = [
        [max(-127, min(127, reference_round_half_up(a * ratio[c]))) for c, a in enumerate(row)]
        for row in acc.tolist()
    ]
    assert y_int.tolist() == expected
    # And close to the float layer: within a few output steps.
    error = (dequantize(y_int, out_scale) - y_float).abs().max()
    assert float(error) <= 1.5 * float(out_scale), float(error / out_scale)


def test_quantize_bias_and_export_validation():
    bias = torch.tensor([0.5, -0.25])
    assert quantize_bias(bias, torch.tensor([2.0**-4, 2.0**-3]), 2.0**-2).tolist() == [32, -8]
    with pytest.raises(ValueError, match="bias has"):
        quantize_bias(bias, torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="supports nn.Linear and nn.Conv2d, got ReLU"):
        export_layer(nn.ReLU())
    conv = export_layer(nn.Conv2d(2, 4, 3), 4, per_channel=True)
    assert conv.weight.scale.shape == (4,) and conv.bias is None
    assert bool((conv.weight.values.abs() <= 7).all())
    with pytest.raises(ValueError, match="exceed the 4-bit range"):
        QuantizedTensor(torch.tensor([8], dtype=torch.int32), torch.tensor(1.0), 4)
    with pytest.raises(ValueError, match="must be int32"):
        QuantizedTensor(torch.tensor([1]), torch.tensor(1.0), 4)
