"""The attention unit and its blocks in Amaranth's simulator against the golden model."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hdl.attention import AttentionUnit
from hdl.softmax import Exp2, SerialReciprocal, exp2_table
from hdl.topk import TopK
from software.packing import attention_beats as beats
from software.golden.attention import golden_head, head_cycles, prefix_ranks, ranks
from spec.attention import SHIFT_WIDTH
from spec.attention import AttentionConfig
from tests.hdl.streams import run_streams


def simulate(config, heads, *, stall=0.0, seed=0):
    """Run heads [(k, v, q, mul, shift)] back to back; returns (out words, clocks from the first
    kv handshake to the last out handshake, inclusive)."""
    dut = AttentionUnit(config)
    kv_words, query_words = [], []
    for k, v, q, mul, shift in heads:
        kv, queries = beats.head_beats(config, k, v, q, mul, shift)
        kv_words += kv
        query_words += queries
    results, clocks = run_streams(dut, [(dut.kv, kv_words), (dut.query, query_words)], dut.out,
                                  len(query_words), stall=stall, seed=seed, drain=20)
    return results, clocks["last"] - clocks["first"][0] + 1


def random_head(rng, config, n, m, *, scale_bits=None):
    lo, hi = config.data_range
    k = rng.integers(lo, hi + 1, size=(n, config.head_dim))
    v = rng.integers(lo, hi + 1, size=(n, config.head_dim))
    q = rng.integers(lo, hi + 1, size=(m, config.head_dim))
    mul = rng.integers(1, 1 << config.scale_width, size=m)
    # Shifts that spread z over the exponent's range for this data.
    typical = config.head_dim * (hi ** 2) // 4 + 1
    base = max(0, (typical * (1 << config.scale_width)).bit_length() - config.exp_frac_bits - 4)
    shift = np.clip(base + rng.integers(-2, 3, size=m), 0, (1 << SHIFT_WIDTH) - 1)
    return k, v, q, mul, shift


def check(config, heads, *, stall, seed=1):
    words, cycles = simulate(config, heads, stall=stall, seed=seed)
    got = [beats.out_values(config, w) for w in words]
    expected, model_cycles = [], 0
    for k, v, q, mul, shift in heads:
        r = golden_head(config, q, k, v, mul, shift)
        expected += [(list(map(int, o)), int(c)) for o, c in zip(r.out, r.kept)]
        model_cycles += head_cycles(config, len(k), r.candidates, r.kept)
    assert got == expected
    if stall == 0.0:
        assert cycles == model_cycles
    return expected


CONFIGS = {
    "dense": dict(head_dim=4, max_len=8, data_width=6, out_width=8, scale_width=8,
                  exp_frac_bits=3, exp_bits=8, prob_bits=6),
    "threshold": dict(head_dim=3, max_len=8, data_width=5, scale_width=10, exp_frac_bits=4,
                      exp_bits=10, prob_bits=8, prune="threshold", threshold=3),
    "topk": dict(head_dim=4, max_len=7, data_width=4, out_width=6, scale_width=6, exp_frac_bits=2,
                 exp_bits=6, prob_bits=5, prune="topk", top_k=3),
    "both": dict(head_dim=2, max_len=6, data_width=8, scale_width=12, prune="both", threshold=2, top_k=2),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_unit_matches_golden(name, stall):
    config = AttentionConfig(**CONFIGS[name])
    rng = np.random.default_rng(3)
    L = config.max_len
    # A full-length sequence, then a short one, then a single row: memories and counters reused.
    heads = [random_head(rng, config, L, 3), random_head(rng, config, L // 2, 2),
             random_head(rng, config, 1, 1)]
    check(config, heads, stall=stall)


def test_all_equal_scores_and_extremes():
    config = AttentionConfig(**CONFIGS["topk"])
    lo, hi = config.data_range
    d, L = config.head_dim, config.max_len
    ones = np.full((L, d), lo)
    heads = [
        # Every score equal: top-k keeps the first k positions, probabilities are uniform.
        (ones, np.tile(np.arange(L)[:, None] % 8 - 4, (1, d)), np.zeros((2, d), int), [5, 1], [0, 3]),
        # Most negative everywhere: the largest scores, saturated outputs.
        (ones, ones, np.full((2, d), lo), [(1 << config.scale_width) - 1] * 2, [0, 63]),
        (ones, np.full((L, d), hi), np.full((1, d), lo), [1], [0]),
    ]
    expected = check(config, heads, stall=0.3)
    assert expected[0][1] == config.top_k


def test_exp_table_agrees_with_the_configuration():
    for fields in CONFIGS.values():
        config = AttentionConfig(**fields)
        assert exp2_table(config.exp_frac_bits, config.exp_bits) == list(config.exp_table)


def test_exp2_every_input():
    dut = Exp2(z_width=9, frac_bits=3, exp_bits=5)
    table = exp2_table(3, 5)

    async def bench(ctx):
        for z in range(1 << 9):
            ctx.set(dut.z, z)
            expected = 0 if z >= 6 << 3 else table[z & 7] >> (z >> 3)
            assert ctx.get(dut.e) == expected, z

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("bits_per_clock", [1, 3, 4])
def test_serial_reciprocal(bits_per_clock):
    dut = SerialReciprocal(numerator_log2=14, divisor_width=9, quotient_width=10, bits_per_clock=bits_per_clock)
    assert dut.latency == -(-10 // bits_per_clock)

    async def bench(ctx):
        for divisor in [17, 31, 32, 100, 255, 256, 511]:
            ctx.set(dut.divisor, divisor)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.step, 1)
            await ctx.tick().repeat(dut.latency)
            ctx.set(dut.step, 0)
            assert ctx.get(dut.quotient) == (1 << 14) // divisor, divisor

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_topk_cutoff_matches_ranks():
    rng = np.random.default_rng(4)
    k = 3
    dut = TopK(k=k, score_shape=range(-8, 8), index_width=4)

    async def bench(ctx):
        for _ in range(20):
            scores = rng.integers(-8, 8, size=int(rng.integers(1, 16)))
            if rng.random() < 0.3:
                scores[:] = scores[0]          # all equal
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            ctx.set(dut.insert, 1)
            prefix = prefix_ranks(scores[None, :])[0]
            for j, s in enumerate(scores):
                ctx.set(dut.score, int(s))
                ctx.set(dut.index, j)
                assert ctx.get(dut.entering) == (prefix[j] < k)
                await ctx.tick()
            ctx.set(dut.insert, 0)
            rank = ranks(scores[None, :])[0]
            for j, s in enumerate(scores):
                ctx.set(dut.test_score, int(s))
                ctx.set(dut.test_index, j)
                assert ctx.get(dut.kept) == (rank[j] < k), (scores, j)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_single_row_unit():
    config = AttentionConfig(head_dim=1, max_len=1, prune="topk", top_k=1)
    rng = np.random.default_rng(6)
    check(config, [random_head(rng, config, 1, 2), random_head(rng, config, 1, 1)], stall=0.3)


def test_the_max_len_th_row_ends_a_sequence_without_last():
    config = AttentionConfig(**CONFIGS["threshold"])
    rng = np.random.default_rng(8)
    k, v, q, mul, shift = random_head(rng, config, config.max_len, 2)
    kv, queries = beats.head_beats(config, k, v, q, mul, shift)
    kv[-1] = beats.kv_beat(config, k[-1], v[-1], last=False)
    dut = AttentionUnit(config)
    got = []

    async def bench(ctx):
        for port, words in ((dut.kv, kv), (dut.query, queries)):
            for word in words:
                ctx.set(port.valid, 1)
                ctx.set(port.payload.as_value(), word)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
                if port is dut.query:
                    ctx.set(dut.out.ready, 1)
                    payload, = await ctx.tick().sample(dut.out.payload.as_value()).until(dut.out.valid)
                    got.append(beats.out_values(config, payload))
                    ctx.set(dut.out.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    r = golden_head(config, q, k, v, mul, shift)
    assert got == [(list(map(int, o)), int(c)) for o, c in zip(r.out, r.kept)]


def test_reset_in_the_middle_of_a_query_leaves_no_trace():
    """A reset while a query is in its softmax pass; then a fresh sequence runs exactly."""
    config = AttentionConfig(**CONFIGS["both"])
    rng = np.random.default_rng(9)
    interrupted = random_head(rng, config, config.max_len, 2)
    k, v, q, mul, shift = random_head(rng, config, 4, 3)
    dut = AttentionUnit(config)
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.dut = dut
    got = []

    async def send(ctx, port, words):
        for word in words:
            ctx.set(port.valid, 1)
            ctx.set(port.payload.as_value(), word)
            await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)

    async def bench(ctx):
        kv, queries = beats.head_beats(config, *interrupted)
        await send(ctx, dut.kv, kv)
        await send(ctx, dut.query, queries[:1])
        await ctx.tick().repeat(config.max_len + 6)       # into the softmax pass
        ctx.set(domain.rst, 1)
        await ctx.tick()
        ctx.set(domain.rst, 0)
        kv, queries = beats.head_beats(config, k, v, q, mul, shift)
        await send(ctx, dut.kv, kv)
        for word in queries:
            await send(ctx, dut.query, [word])
            ctx.set(dut.out.ready, 1)
            payload, = await ctx.tick().sample(dut.out.payload.as_value()).until(dut.out.valid)
            got.append(beats.out_values(config, payload))
            ctx.set(dut.out.ready, 0)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    r = golden_head(config, q, k, v, mul, shift)
    assert got == [(list(map(int, o)), int(c)) for o, c in zip(r.out, r.kept)]
