"""The array in Amaranth's simulator against the golden model, with and without random stalls."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hdl.cell import WEIGHT_STAGES
from hdl.systolic import SystolicArray
from software.packing import beats
from software.packing.colcomb import combine
from spec import ArrayConfig
from software.golden.cycles import layer_cycles
from software.golden.array import ArrayModel, reference_layer
from software.packing.schedule import schedule_layer
from tests.hdl.streams import run_streams


def simulate(config, schedule, *, stall=0.0, seed=0, prelude=None, dsp_cells=0, weight_stage="register"):
    """Run a schedule on the array; returns (result words, clock of the last result handshake + 1).

    `prelude(ctx, dut, domain)`, if given, runs first; the streams start when it returns.
    `weight_stage`: the cells' (hdl/cell.py WEIGHT_STAGES; Amaranth's simulator has no platform to
    choose it).
    """
    dut = SystolicArray(config, dsp_cells=dsp_cells, weight_stage=weight_stage)
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")   # explicit, so a prelude can drive its reset
    top.submodules.dut = dut
    weight_beats, act_beats, n_results = beats.schedule_beats(schedule)
    results, clocks = run_streams(
        top, [(dut.weights, weight_beats), (dut.activations, act_beats)], dut.results, n_results,
        stall=stall, seed=seed, drain=config.cols + 4,
        prelude=None if prelude is None else (lambda ctx: prelude(ctx, dut, domain)))
    return [beats.result_values(config, w) for w in results], clocks["last"] + 1


def random_layer(rng, config, out_features, in_features, density):
    lo, hi = config.weight_range
    w = rng.integers(lo, hi + 1, size=(out_features, in_features))
    w[rng.random(w.shape) >= density] = 0
    return w


def random_inputs(rng, config, n, in_features):
    lo, hi = config.act_range
    return rng.integers(lo, hi + 1, size=(n, in_features))


# More rows than one group of copies of the column inputs (hdl/systolic.py, ROWS_PER_GROUP): a
# group of 4 rows and one of 2 (test_row_copies_of_column_inputs: both ways of copying).
ROWS_6 = dict(config=dict(rows=6, cols=4, alpha=2), shape=(9, 20), n=3, density=0.5)

CASES = [
    dict(config=dict(rows=4, cols=4), shape=(4, 4), n=5, density=1.0),
    dict(config=dict(rows=3, cols=5, alpha=4, act_signed=False), shape=(7, 40), n=6, density=0.3),
    dict(config=dict(rows=4, cols=2, alpha=2, double_buffer=False, max_batch=4), shape=(6, 9), n=9, density=0.5),
    dict(config=dict(rows=2, cols=2, alpha=3, act_width=4, weight_width=4, acc_width=12), shape=(3, 14), n=1, density=0.4),
    # Tiles of 2 and 3 vectors across 5 group blocks: the accumulator entry a vector reads was
    # written 2 (forwarded from the older sums register) or 3 clocks before (through the read
    # port's transparency); n = 1 above covers the sums written in the same clock.
    dict(config=dict(rows=2, cols=3, alpha=2), shape=(2, 30), n=2, density=0.6),
    dict(config=dict(rows=2, cols=3, alpha=2), shape=(2, 30), n=3, density=0.6),
    # The one-stage multiplier; and the pipelined one with some cells in DSP form (one whole
    # multiplier) beside LUT-form cells (two half multipliers): the same results and cycles.
    dict(config=dict(rows=3, cols=3, alpha=2, multiplier="parallel"), shape=(5, 14), n=4, density=0.6),
    DSP_4 := dict(config=dict(rows=3, cols=3, alpha=2), shape=(5, 14), n=4, density=0.6, dsp_cells=4),
    dict(config=dict(rows=2, cols=2, alpha=2, weight_width=5, act_width=3, weight_signed=False), shape=(3, 8), n=3,
         density=0.8),
    ROWS_6,
]
# The iCE40's weight stage, the bank being loaded (hdl/cell.py weight_stage_for): dense and
# combined, one bank and two, DSP cells beside LUT cells, groups of rows (tests/hdl/test_tq.py: TQ
# arrays).
BANK_STAGE = [dict(case, weight_stage="bank") for case in (CASES[0], CASES[1], CASES[2], DSP_4, ROWS_6)]


def case_id(case):
    extra = [f"dsp{case['dsp_cells']}"] if "dsp_cells" in case else []
    extra += [case["weight_stage"]] if "weight_stage" in case else []
    return "-".join([f"{k}{v}" for k, v in case["config"].items()] + extra)


@pytest.mark.parametrize("case", CASES + BANK_STAGE, ids=case_id)
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_array_matches_golden(case, stall):
    rng = np.random.default_rng(1)
    config = ArrayConfig(**case["config"])
    w = random_layer(rng, config, *case["shape"], case["density"])
    layer = combine(w, config.alpha, gamma=0.5)
    x = random_inputs(rng, config, case["n"], case["shape"][1])
    schedule = schedule_layer(config, layer, x)
    expected = ArrayModel(config).run(schedule)
    got, cycles = simulate(config, schedule, stall=stall, seed=7, dsp_cells=case.get("dsp_cells", 0),
                           weight_stage=case.get("weight_stage", "register"))
    assert np.array_equal(np.array(got).reshape(expected.shape), expected)
    assert np.array_equal(schedule.assemble(got), reference_layer(layer.unpack(), x, config.acc_width))
    if stall == 0.0:
        assert cycles == layer_cycles(config, schedule.tile_batches)



@pytest.mark.parametrize("settings", [dict(), dict(act_signed=False), dict(weight_signed=False),
                                      dict(act_signed=False, weight_signed=False), dict(multiplier="parallel"),
                                      # 40 products of up to 64 wrap a 10-bit accumulator; the
                                      # partial sums along a row are 9 bits (chain_width)
                                      dict(act_width=4, weight_width=4, acc_width=10, in_features=40)],
                         ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()) or "signed")
@pytest.mark.parametrize("weight_stage", WEIGHT_STAGES)
def test_extreme_operands(settings, weight_stage):
    """Every pairing of the smallest and largest activation and weight (-128 x -128 and the like),
    in LUT-form cells (split multipliers) and DSP-form cells of one array, with either weight
    stage."""
    settings = dict(settings)
    in_features = settings.pop("in_features", 4)
    config = ArrayConfig(rows=4, cols=2, alpha=2, **settings)
    rng = np.random.default_rng(11)
    (w_lo, w_hi), (x_lo, x_hi) = config.weight_range, config.act_range
    w = rng.choice([w_lo, w_hi, w_lo + 1, w_hi - 1], size=(4, in_features))
    x = rng.choice([x_lo, x_hi], size=(6, in_features))
    if in_features > 4:     # same signs everywhere, so that the sums grow until they wrap
        w, x = rng.choice([w_lo, w_lo + 1], size=w.shape), rng.choice([x_lo, x_lo + 1], size=x.shape)
    layer = combine(w, config.alpha, gamma=1.0)
    schedule = schedule_layer(config, layer, x)
    got, _ = simulate(config, schedule, dsp_cells=4, weight_stage=weight_stage)
    expected = reference_layer(layer.unpack(), x, config.acc_width)
    assert np.array_equal(schedule.assemble(got), expected)
    if in_features > 4:
        wide = reference_layer(layer.unpack(), x, 64)
        assert not np.array_equal(expected, wide), "the sums were meant to wrap"


@pytest.mark.parametrize("weight_stage", WEIGHT_STAGES)
def test_reset_in_the_middle_of_a_stream(weight_stage):
    """A reset while one layer's tiles are loading and computing leaves no trace on the next."""
    config = ArrayConfig(rows=3, cols=3, alpha=2, max_batch=4)
    rng = np.random.default_rng(5)
    layer = combine(random_layer(rng, config, 5, 14, 0.5), 2, 0.5)
    interrupted = schedule_layer(config, layer, random_inputs(rng, config, 6, 14))
    x = random_inputs(rng, config, 5, 14)
    schedule = schedule_layer(config, layer, x)

    async def load_compute_then_reset(ctx, dut, domain):
        weight_words, act_words, _ = beats.schedule_beats(interrupted)
        for port, words in ((dut.weights, weight_words[:config.rows + 1]), (dut.activations, act_words[:2])):
            for word in words:
                ctx.set(port.valid, 1)
                ctx.set(port.payload.as_value(), word)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
        await ctx.tick()          # vectors in flight, second bank half loaded
        ctx.set(domain.rst, 1)
        await ctx.tick()
        ctx.set(domain.rst, 0)

    got, _ = simulate(config, schedule, stall=0.3, seed=3, prelude=load_compute_then_reset,
                      weight_stage=weight_stage)
    assert np.array_equal(schedule.assemble(got), reference_layer(layer.unpack(), x, config.acc_width))


def test_a_full_result_fifo_takes_a_vector_in_the_clock_after_a_result_leaves():
    """With the result stream held, the array accepts exactly as many emitting vectors as the
    result FIFO has entries, then none; one result leaving makes room for one vector at once (the
    ready register sees the departure in the same clock, not a clock later)."""
    config = ArrayConfig(rows=2, cols=2, alpha=2, max_batch=16)
    rng = np.random.default_rng(4)
    layer = combine(random_layer(rng, config, 2, 4, 1.0), 2, 1.0)
    schedule = schedule_layer(config, layer, random_inputs(rng, config, config.result_buffer + 4, 4))
    weight_beats, act_beats, _ = beats.schedule_beats(schedule)
    assert len(weight_beats) == config.rows, "one tile, so that only the result FIFO stops the vectors"
    dut = SystolicArray(config)
    accepted = []

    async def offer_vectors(ctx, clocks):
        """Offer the next vectors for `clocks` clocks; returns the clocks (0-based) that took one."""
        took = []
        for clock in range(clocks):
            ctx.set(dut.activations.valid, 1)
            ctx.set(dut.activations.payload.as_value(), act_beats[len(accepted)])
            _, _, ready = await ctx.tick().sample(dut.activations.ready)
            if ready:
                accepted.append(clock)
                took.append(clock)
        return took

    async def bench(ctx):
        for word in weight_beats:
            ctx.set(dut.weights.valid, 1)
            ctx.set(dut.weights.payload.as_value(), word)
            await ctx.tick().until(dut.weights.ready)
        ctx.set(dut.weights.valid, 0)
        await offer_vectors(ctx, 40)
        assert len(accepted) == config.result_buffer
        ctx.set(dut.results.ready, 1)
        _, _, left = await ctx.tick().sample(dut.results.valid)
        assert left
        ctx.set(dut.results.ready, 0)
        assert await offer_vectors(ctx, 20) == [0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
