"""TQ multipliers and the term-quantized array in Amaranth's simulator, against the golden models
in software/ (software/golden/tq.py for the multiplier, software/golden/array.py for the array)."""

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
import torch
from amaranth.back import rtlil

from amaranth.sim import Simulator

from hdl.tq import TermPairProduct, TQMultiplier
from spec.tq import FORMS, TQConfig
from software.golden import tq
from software.packing.colcomb import combine
from spec import ArrayConfig
from software.golden.cycles import layer_cycles
from software.golden.array import ArrayModel, reference_layer, truncate_activations
from software.packing.schedule import schedule_layer
from software.frontend.termquant import hese_terms, weight_terms
from tests.hdl.streams import run_stream
from tests.hdl.test_systolic import simulate

SETTINGS = [
    # width, signed activations, signed weights, weight terms, data terms
    (8, True, True, 2, 3),
    (8, False, True, 1, 1),
    (8, True, True, 5, 5),         # every slot of a signed 8-bit value
    (6, True, False, 4, 2),
    (4, False, True, 2, 3),
]


def setting_id(s):
    width, signed, weight_signed, wt, dt = s
    return f"w{width}{'s' if signed else 'u'}{'s' if weight_signed else 'u'}_t{wt}x{dt}"


def random_operands(config, rng, n):
    """Random weights with every budget from 0 to weight_terms, random activations, and extremes."""
    w_lo, w_hi = config.weight_range
    a_lo, a_hi = config.act_range
    operands = []
    for _ in range(n):
        budget = rng.randint(0, config.weight_terms)
        operands.append((tq.weight_terms_of(config, rng.randint(w_lo, w_hi), budget), rng.randint(a_lo, a_hi)))
    # Extremes: most negative x most negative, values that round up when truncated (2**k - 1), zeros.
    specials_w = sorted({w_lo, w_hi, 0, 1, w_hi // 2 + 1})
    specials_a = sorted({a_lo, a_hi, 0, 1, -1 if a_lo < 0 else 2})
    for w in specials_w:
        for x in specials_a:
            for budget in (1, config.weight_terms):
                operands.append((tq.weight_terms_of(config, w, budget), x))
    return operands


def make(config):
    return TQMultiplier(config)


@pytest.mark.parametrize("stall", [0.0, 0.4])
@pytest.mark.parametrize("setting", SETTINGS, ids=setting_id)
@pytest.mark.parametrize("form", FORMS)
def test_multiplier_matches_golden(form, setting, stall):
    width, signed, weight_signed, wt, dt = setting
    config = TQConfig(width=width, signed=signed, weight_signed=weight_signed, weight_terms=wt,
                         data_terms=dt, form=form)
    operands = random_operands(config, random.Random(width * 7 + wt), 120)
    dut = make(config)
    assert dut.product_width == config.product_width and dut.latency == config.latency
    words = [tq.operand_beat(config, w, x) for w, x in operands]
    products, cycles = run_stream(dut, dut.operands, words, dut.products, len(operands), stall=stall, seed=5)
    assert products == [tq.product(config, w, x) for w, x in operands]
    if stall == 0.0:
        assert cycles == tq.stream_cycles(config, operands)


def test_serial_cycles_are_term_pairs():
    """Hand-counted: 6 pairs, no pairs (still one clock), one pair; plus 3 register stages."""
    config = TQConfig(width=8, signed=True, weight_terms=2, data_terms=3, form="serial")
    operands = [
        ([(1, 6), (-1, 2)], 0b0101_0101),   # 85 has 4 terms, 3 kept: 2 x 3 pairs
        ([], 77),                           # zero pairs
        ([(1, 0)], 1),                      # one pair
        ([(-1, 7)], 0),                     # the activation has no terms: zero pairs
    ]
    assert [tq.term_pairs(config, w, x) for w, x in operands] == [6, 0, 1, 0]
    dut = make(config)
    products, cycles = run_stream(dut, dut.operands, [tq.operand_beat(config, w, x) for w, x in operands],
                                  dut.products, len(operands))
    assert products == [(64 - 4) * (64 + 16 + 4), 0, 1, 0]
    assert cycles == 6 + 1 + 1 + 1 + 3 == tq.stream_cycles(config, operands)


def test_pair_product_with_unequal_exponent_fields():
    """The combinational datapath shared with the array's cells, with a 4-bit signed weight (exponents
    up to 3) and a 16-bit unsigned activation (up to 16): the exponent sum needs the wider field."""
    dut = TermPairProduct(weight_max_exponent=3, weight_terms=2, data_max_exponent=16, data_terms=3)
    rng = random.Random(0)

    def drive(ctx, port, terms, slots):
        for k in range(slots):
            sign, exponent = terms[k] if k < len(terms) else (0, 0)
            ctx.set(port[k].valid, sign != 0)
            ctx.set(port[k].sign, sign < 0)
            ctx.set(port[k].exponent, exponent)

    async def testbench(ctx):
        for w, x in [(-8, 65535), (7, 49151)] + [(rng.randint(-8, 7), rng.randint(0, 65535)) for _ in range(200)]:
            weight, data = hese_terms(w, 4)[:2], hese_terms(x, 16)[:3]
            drive(ctx, dut.weight, weight, 2)
            drive(ctx, dut.data, data, 3)
            assert ctx.get(dut.product) == tq.terms_value(weight) * tq.terms_value(data), (w, x)

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()


def test_pair_terms_are_decoders_not_shifters():
    """The pair terms are exponent decoders: a shifter cell would send every one of them through
    Yosys's `share` pass, which compares all pairs of them with a SAT solver (most of a large TQ
    array's synthesis time) and shares none."""
    dut = TermPairProduct(weight_max_exponent=7, weight_terms=2, data_max_exponent=7, data_terms=3)
    text = rtlil.convert(dut)
    assert "cell $eq" in text and not any(f"cell ${op}" in text for op in ("shl", "shr", "sshl", "shift"))


def test_the_multiplier_is_built_from_a_tq_configuration():
    with warnings.catch_warnings():
        # The refused object is never elaborated; Amaranth would say so when it is collected.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match="TQConfig, not dict"):
            TQMultiplier(dict(width=8, signed=True, weight_terms=2, data_terms=3))
        gc.collect()


# More rows than one group of copies of the column inputs (the weight term among them).
SERIAL_ROWS_6 = dict(rows=6, cols=3, alpha=2, mac="tq-serial", weight_terms=2, data_terms=2)

ARRAY_CASES = [
    dict(rows=2, cols=3, alpha=2, mac="tq", weight_terms=2, data_terms=3),
    dict(rows=3, cols=2, alpha=1, mac="tq", weight_terms=1, data_terms=1, act_signed=False, acc_width=18,
         double_buffer=False, max_batch=3),
    # Unsigned weights (exponents up to 8 in a 4-bit field) in three slots: the shift-add cell's
    # three-operand adder tree with its sign carries.
    dict(rows=2, cols=2, alpha=3, mac="tq", weight_terms=3, data_terms=4, weight_signed=False),
    # Term-serial: a vector takes weight_terms x data_terms clocks (1 x 1: one, as for "tq").
    dict(rows=2, cols=3, alpha=2, mac="tq-serial", weight_terms=2, data_terms=3),
    dict(rows=3, cols=2, alpha=1, mac="tq-serial", weight_terms=1, data_terms=1, act_signed=False, acc_width=18,
         double_buffer=False, max_batch=3),
    dict(rows=2, cols=2, alpha=3, mac="tq-serial", weight_terms=3, data_terms=2, weight_signed=False, max_batch=4),
    SERIAL_ROWS_6,
]
ARRAY_IDS = ["colcomb_2x3_a2_t2x3", "dense_3x2_t1x1_acc18", "colcomb_2x2_a3_t3x4_unsigned_weights",
             "serial_colcomb_2x3_a2_t2x3", "serial_dense_3x2_t1x1_acc18", "serial_colcomb_2x2_a3_t3x2_unsigned_weights_b4",
             "serial_colcomb_6x3_a2_t2x2"]
# The iCE40's weight stage (hdl/cell.py weight_stage_for), in both cells and with one bank.
BANK_STAGE = [0, 3, 4, 6]


@pytest.mark.parametrize("stall", [0.0, 0.4])
@pytest.mark.parametrize("case,weight_stage", [(case, "register") for case in ARRAY_CASES]
                         + [(ARRAY_CASES[k], "bank") for k in BANK_STAGE],
                         ids=ARRAY_IDS + [f"{ARRAY_IDS[k]}-bank" for k in BANK_STAGE])
def test_tq_array_matches_golden(case, weight_stage, stall):
    config = ArrayConfig(**case)
    rng = np.random.default_rng(3)
    w_lo, w_hi = (-128, 127) if config.weight_signed else (0, 255)
    w = rng.integers(w_lo, w_hi + 1, size=(5, 13))
    w[rng.random(w.shape) > 0.6] = 0
    w[0, :] = w_hi                                 # rounds up to 2**max exponent with one term
    codes = weight_terms(torch.from_numpy(w), group=2, budget=2 * config.weight_terms, bits=8)
    codes = codes.mask(torch.arange(codes.signs.shape[-1]) < config.weight_terms)   # slots per weight
    layer = combine(codes.values().numpy(), config.alpha, 0.5)
    lo, hi = config.act_range
    x = rng.integers(lo, hi + 1, size=(5, 13))
    x[0, :] = hi
    schedule = schedule_layer(config, layer, x, terms=codes)
    expected = ArrayModel(config).run(schedule)
    assert np.array_equal(schedule.assemble(expected),
                          reference_layer(layer.unpack(), truncate_activations(config, x), config.acc_width))
    got, cycles = simulate(config, schedule, stall=stall, seed=7, weight_stage=weight_stage)
    assert np.array_equal(np.array(got).reshape(expected.shape), expected)
    if stall == 0.0:
        assert cycles == layer_cycles(config, schedule.tile_batches)
