"""The integer encoder layer (software/distill/encoder_int.py): its primitives against the project's
quantization contract and float references, and a small random layer end to end against the float
layer. Fast: software only (the run through Verilator is tests/sim/test_encoder_rtl.py)."""

import math

import numpy as np
import pytest
import torch

from software.distill import encoder_int as ei
from software.frontend.quant import compute_scale, fake_quant_tensor, power_of_two_exponent, requant_shift
from software.golden.attention import golden_head
from spec.attention import AttentionConfig
from tests.software.distill.tiny_layer import hidden_states, tiny_layer

ATTENTION = AttentionConfig(head_dim=16, max_len=16)


@pytest.fixture(scope="module")
def tiny():
    layer, groups = tiny_layer()
    calibration = [hidden_states(8, 32, seed) for seed in range(1, 9)]
    return layer, groups, ei.from_float(layer, calibration, ATTENTION, groups)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_requant_is_the_projects_shift_rule(bits):
    rng = np.random.default_rng(bits)
    x = rng.integers(-1 << 24, 1 << 24, size=2000)
    shift = rng.integers(-6, 20, size=2000)
    # Ties included: values exactly halfway after the shift.
    x[:100] = (2 * rng.integers(-1000, 1000, size=100) + 1) << 3
    shift[:100] = 4
    expected = requant_shift(torch.from_numpy(x), torch.from_numpy(shift), bits).numpy()
    assert np.array_equal(ei.requant(x, shift, bits), expected)


def test_quantize_rounds_half_up_and_saturates_symmetrically():
    assert ei.quantize([2.5, -2.5, 0.49, -0.5, 1000.0, -1000.0], 0, 8).tolist() == [3, -2, 0, 0, 127, -127]
    assert ei.quantize([0.75], -2, 8).tolist() == [3]


def test_exponent_is_compute_scales_power_of_two():
    rng = np.random.default_rng(0)
    for value in list(rng.uniform(1e-4, 1e3, size=200)) + [127.0, 63.5, 254.0, 1.0]:
        for bits in (8, 12, 16):
            expected = int(power_of_two_exponent(compute_scale(torch.tensor([value]), bits, power_of_two=True)))
            assert ei.exponent_for(value, bits) == expected, (value, bits)
    assert ei.exponent_for(0.0, 8) == 0


def test_layer_norm_is_within_a_few_lsb_of_float():
    rng = np.random.default_rng(1)
    gamma, beta = rng.uniform(0.2, 3.0, size=48), rng.normal(0, 0.5, size=48)
    x = rng.normal(0, 2.0, size=(20, 48)) + rng.normal(0, 3.0, size=(20, 1))
    x[0] = 0.0                                          # a constant row: only beta is left
    in_exp, out_exp = -9, -11
    ln = ei.IntLayerNorm.from_float(gamma, beta, 1e-12, in_exp, out_exp)
    h = ei.quantize(x, in_exp, ei.WIDE_BITS)
    got = np.ldexp(ln(h).astype(np.float64), out_exp)
    want = torch.nn.functional.layer_norm(torch.from_numpy(np.ldexp(h.astype(np.float64), in_exp)), (48,),
                                          torch.from_numpy(gamma), torch.from_numpy(beta), 1e-12).numpy()
    error = np.abs(got - want) / 2.0 ** out_exp
    assert error.max() <= 4, error.max()                # in output LSBs
    assert np.allclose(got[0], beta, atol=2.0 ** out_exp)


def test_gelu_table_rounds_gelu_of_each_input():
    table = ei.GeluTable.build(-6, -3)
    pre = np.arange(-ei.qmax(ei.GELU_BITS), ei.qmax(ei.GELU_BITS) + 1)
    out = table(pre)
    x = pre * 2.0 ** -6
    want = 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x])) / 2.0 ** -3
    assert np.abs(out - np.clip(want, -127, 127)).max() <= 0.5 + 1e-9
    assert (out[want >= 127] == 127).all() and (want >= 127).any()          # saturates
    assert out[pre == 0] == 0 and out.min() >= -1            # GELU's minimum is about -0.17
    with pytest.raises(ValueError):
        table(np.array([ei.qmax(ei.GELU_BITS) + 1]))


def test_weights_are_the_students_quantization_aware_int8(tiny):
    layer, _, integer = tiny
    for name, module in (("intermediate", layer.intermediate["dense"]), ("query", layer.attention["self"]["query"])):
        w = ei.effective_weight(module)
        lin = integer.linears[name]
        assert np.abs(lin.weight).max() <= 127
        dequantized = np.ldexp(lin.weight.astype(np.float64), lin.weight_exp[:, None])
        assert np.array_equal(dequantized, fake_quant_tensor(w, 8, per_channel=True, power_of_two=True).double().numpy())
    # The column-combined matrices keep their zeros.
    assert np.array_equal(integer.linears["output"].weight == 0, ei.effective_weight(layer.output["dense"]).numpy() == 0)


def test_golden_layer_follows_the_float_layer_stage_by_stage(tiny):
    layer, _, integer = tiny
    x = hidden_states(7, 32, 100)
    t = integer.run(integer.quantize_input(x.numpy()))
    f = {k: v.numpy() for k, v in ei.float_stages(layer, x).items()}
    e = integer.exps
    cos = lambda a, b: float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos(np.ldexp(t["v"].astype(float), e["v"]), f["v"]) > 0.999
    assert cos(np.ldexp(t["ctx"].astype(float), e["v"]), f["ctx"]) > 0.995
    assert cos(np.ldexp(t["h1"].astype(float), e["h1"]), f["h1"]) > 0.999
    assert cos(np.ldexp(t["pre"].astype(float), e["pre"]), f["pre"]) > 0.995
    close = ei.Closeness.of(integer.output_float(t["h2"]), f["out"])
    assert close.cosine > 0.995 and close.min_token_cosine > 0.99 and close.mean_abs < 0.05
    # The products are the integer matrix products, the attention the unit's golden model.
    assert np.array_equal(t["intermediate_acc"], t["x1"] @ integer.linears["intermediate"].weight.T)
    head = integer.attention.split(t["q"], t["k"], t["v"])[1]
    assert np.array_equal(t["ctx"][:, 16:], golden_head(ATTENTION, *head).out)


class OffByOne(ei.GoldenBackend):
    """The golden backend with one matrix's products off by one: what a faulty array would return."""

    def __init__(self, stage):
        self.stage = stage

    def matmul(self, linear, x):
        return super().matmul(linear, x) + (linear.name == self.stage)


@pytest.mark.parametrize("stage", ["value", "intermediate"])
def test_a_backends_results_flow_into_every_later_stage(tiny, stage):
    _, _, integer = tiny
    h0 = integer.quantize_input(hidden_states(7, 32, 100).numpy())
    golden, faulty = integer.run(h0), integer.run(h0, OffByOne(stage))
    differ = [name for name in golden if not np.array_equal(golden[name], faulty[name])]
    assert f"{stage}_acc" in differ and "h2" in differ
    assert "h0" not in differ and "query_acc" not in differ


def test_calibration_sets_the_scales_and_the_layer_saturates_beyond(tiny):
    layer, groups, integer = tiny
    doubled = ei.from_float(layer, [2 * hidden_states(8, 32, seed) for seed in range(1, 9)], ATTENTION, groups)
    assert doubled.exps["in"] == integer.exps["in"] + 1
    assert doubled.exps["x0"] == integer.exps["x0"] + 1
    h0 = integer.quantize_input(100 * hidden_states(3, 32, 7).numpy())
    assert np.abs(h0).max() == ei.qmax(ei.WIDE_BITS)


def test_attention_heads_must_match_the_unit():
    layer, groups = tiny_layer()
    with pytest.raises(ValueError, match="heads of 32"):
        ei.from_float(layer, [hidden_states(4, 32, 1)], AttentionConfig(head_dim=32, max_len=16), groups)


def test_layer_norm_is_its_docstring_formula_in_exact_fractions():
    """IntLayerNorm's spec evaluated with Python fractions (round = floor(x + 1/2)), row by row."""
    from fractions import Fraction
    rng = np.random.default_rng(2)
    H, in_exp, out_exp = 12, -8, -10
    ln = ei.IntLayerNorm.from_float(rng.uniform(0.5, 2, H), rng.normal(0, 0.3, H), 1e-5, in_exp, out_exp)
    h = rng.integers(-3000, 3000, size=(30, H))
    N, G = ei.LN_FRACTION_BITS, ei.LN_GUARD_BITS
    shift = out_exp - (ln.gamma_exp - N)
    rnd = lambda x: math.floor(x + Fraction(1, 2))
    for row, got in zip(h, ln(h)):
        mu = rnd(Fraction(int(row.sum()), H))
        c = [int(v) - mu for v in row]
        r = max(1, math.isqrt(math.floor(Fraction(sum(v * v for v in c) * 4 ** G, H)) + ln.eps))
        z = [rnd(Fraction(v * 2 ** (N + G), r)) for v in c]
        want = [max(-32767, min(32767, rnd(Fraction(int(g) * v + int(b), 2 ** shift))))
                for g, v, b in zip(ln.gamma, z, ln.beta)]
        assert got.tolist() == want
