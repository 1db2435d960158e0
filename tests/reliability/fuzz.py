"""Legal configurations drawn by Hypothesis, and the checks they go through: the unit elaborated
and run in Amaranth's simulator (fast) or generated and run in Verilator (slow), against the golden
models of software/golden, with random valid/ready stalls.

A strategy draws the fields of a configuration and keeps only the ones the spec accepts (a drawn
combination it refuses is discarded, not counted). Every stimulus comes from a numpy generator
seeded by the draw, so a failure replays exactly.
"""
from __future__ import annotations

import dataclasses
import random

import numpy as np
from hypothesis import assume, strategies as st

from spec import MACS, MULTIPLIERS, ArrayConfig, AttentionConfig, ConfigError, TQConfig
from spec.tq import FORMS
from spec.terms import term_value_max_terms


def _legal(make):
    try:
        return make()
    except ConfigError:
        assume(False)


@st.composite
def array_configs(draw, *, max_dim=3):
    """Small arrays of every kind: sparsity (alpha), widths, signedness, buffering, batch depth,
    multiplier, integer or term-quantized MAC, accumulator from the narrowest legal width up."""
    mac = draw(st.sampled_from(tuple(MACS)))
    fields = dict(rows=draw(st.integers(1, max_dim)), cols=draw(st.integers(1, max_dim)),
                  alpha=draw(st.integers(1, 3)), act_signed=draw(st.booleans()),
                  weight_signed=draw(st.booleans()), double_buffer=draw(st.booleans()),
                  max_batch=draw(st.sampled_from((1, 2, 3, 4, 8, 64))), multiplier=draw(st.sampled_from(MULTIPLIERS)))
    if mac == "int":
        fields.update(act_width=draw(st.integers(2, 8)), weight_width=draw(st.integers(2, 8)))
    else:
        fields.update(mac=mac, weight_terms=draw(st.integers(1, term_value_max_terms(8, fields["weight_signed"]))),
                      data_terms=draw(st.integers(1, term_value_max_terms(8, fields["act_signed"]))))
    widest = _legal(lambda: ArrayConfig(**fields, acc_width=64))
    acc = widest.min_acc_width + draw(st.sampled_from((0, 0, 1, 5)))
    return _legal(lambda: dataclasses.replace(widest, acc_width=min(acc, 64)))


@st.composite
def tq_configs(draw):
    width = draw(st.integers(2, 8))
    signed, weight_signed = draw(st.booleans()), draw(st.booleans())
    return _legal(lambda: TQConfig(
        width=width, signed=signed, weight_signed=weight_signed, form=draw(st.sampled_from(FORMS)),
        weight_terms=draw(st.integers(1, term_value_max_terms(width, weight_signed))),
        data_terms=draw(st.integers(1, term_value_max_terms(width, signed)))))


@st.composite
def attention_configs(draw):
    prune = draw(st.sampled_from(("none", "threshold", "topk", "both")))
    max_len = draw(st.integers(1, 8))
    exp_bits = draw(st.integers(4, 10))
    fields = dict(head_dim=draw(st.integers(1, 4)), max_len=max_len, data_width=draw(st.integers(2, 8)),
                  out_width=draw(st.integers(4, 12)), scale_width=draw(st.integers(1, 12)),
                  exp_frac_bits=draw(st.integers(1, 4)), exp_bits=exp_bits, prob_bits=draw(st.integers(3, 8)),
                  prune=prune)
    if prune in ("threshold", "both"):
        fields["threshold"] = draw(st.integers(0, exp_bits + 1))
    if prune in ("topk", "both"):
        fields["top_k"] = draw(st.integers(1, max_len))
    return _legal(lambda: AttentionConfig(**fields))


# ----------------------------------------------------------------------------------------------
# Stimuli and expected results (golden models only)


def array_stimulus(config, rng):
    """(schedule, expected result beats' values, the layer's exact product) of a random layer of
    1 to 3 row blocks and group blocks, 1 to max_batch + 2 vectors, a random density; extremes in
    the first row and vector."""
    import torch
    from software.golden.array import ArrayModel, reference_layer, truncate_activations
    from software.packing.colcomb import combine
    from software.packing.schedule import schedule_layer
    F = int(rng.integers(1, 2 * config.rows + 2))
    K = int(rng.integers(1, 2 * config.cols * config.alpha + 2))
    n = int(rng.integers(1, min(config.max_batch, 6) + 3))
    lo, hi = config.weight_range
    w = rng.integers(lo, hi + 1, size=(F, K))
    w[rng.random(w.shape) >= rng.uniform(0.2, 1.0)] = 0
    w[0, :] = rng.choice([lo, hi])
    lo, hi = config.act_range
    x = rng.integers(lo, hi + 1, size=(n, K))
    x[0, :] = rng.choice([lo, hi])
    codes = None
    if config.mac_style.uses_terms:
        from software.frontend.termquant import weight_terms
        codes = weight_terms(torch.from_numpy(w), group=1, budget=config.weight_terms, bits=config.weight_width)
        codes = codes.mask(torch.arange(codes.signs.shape[-1]) < config.weight_terms)
        w = codes.values().numpy()
    layer = combine(w, config.alpha, float(rng.uniform(0, 1)))
    schedule = schedule_layer(config, layer, x, terms=codes) if codes is not None else \
        schedule_layer(config, layer, x)
    expected = ArrayModel(config).run(schedule)
    x_used = truncate_activations(config, x) if codes is not None else x
    exact = reference_layer(layer.unpack(), x_used, config.acc_width)
    assert np.array_equal(schedule.assemble(expected), exact)      # the two golden models agree
    return schedule, expected, exact


def tq_stimulus(config, rng):
    from tests.hdl.test_tq import random_operands
    return random_operands(config, random.Random(int(rng.integers(1 << 30))), 12)


def attention_stimulus(config, rng):
    """Two heads: a full-length one and a short one, with a single query each or more."""
    from tests.hdl.test_attention import random_head
    L = config.max_len
    return [random_head(rng, config, L, int(rng.integers(1, 3))),
            random_head(rng, config, max(1, L // 2), 1)]


# ----------------------------------------------------------------------------------------------
# Amaranth simulation


def amaranth_array(config, seed, stall):
    from tests.hdl.test_systolic import simulate
    schedule, expected, exact = array_stimulus(config, np.random.default_rng(seed))
    got, _ = simulate(config, schedule, stall=stall, seed=seed)
    assert np.array_equal(np.array(got).reshape(expected.shape), expected), config
    assert np.array_equal(schedule.assemble(got), exact), config


def amaranth_tq(config, seed, stall):
    from hdl.tq import TQMultiplier
    from software.golden import tq
    from tests.hdl.streams import run_stream
    operands = tq_stimulus(config, np.random.default_rng(seed))
    dut = TQMultiplier(config)
    words = [tq.operand_beat(config, w, x) for w, x in operands]
    products, _ = run_stream(dut, dut.operands, words, dut.products, len(operands), stall=stall, seed=seed)
    assert products == [tq.product(config, w, x) for w, x in operands], config


def amaranth_attention(config, seed, stall):
    from tests.hdl.test_attention import check
    check(config, attention_stimulus(config, np.random.default_rng(seed)), stall=stall, seed=seed)


# ----------------------------------------------------------------------------------------------
# Verilator (the generated Verilog, through gen.design and sim.runner)


def built(config, build_root):
    from gen.design import generate, write
    from sim.runner import build
    out = build_root / "designs" / config.design_name
    write(generate(config), out)
    return build(out)


def verilator_array(config, seed, stall, build_root, reset_after=None):
    from sim.array import run_schedule
    schedule, _, exact = array_stimulus(config, np.random.default_rng(seed))
    if reset_after is not None and sum(t.batch for t in schedule.tiles if t.emit) <= reset_after:
        reset_after = None          # one result beat: no middle of the stream to reset in
    out, _ = run_schedule(built(config, build_root), schedule, stall=stall, seed=seed, reset_after=reset_after)
    assert np.array_equal(out, exact), config


def verilator_tq(config, seed, stall, build_root, reset_after=None):
    from software.golden import tq
    from sim.tq import run_products
    operands = tq_stimulus(config, np.random.default_rng(seed))
    products, _ = run_products(built(config, build_root), operands, stall=stall, seed=seed, reset_after=reset_after)
    assert products == [tq.product(config, w, x) for w, x in operands], config


def verilator_attention(config, seed, stall, build_root, reset_after=None):
    from sim.attention import Head, run_heads
    heads = [Head(*h) for h in attention_stimulus(config, np.random.default_rng(seed))]
    run_heads(built(config, build_root), heads, stall=stall, seed=seed, reset_after=reset_after)   # checks every beat
