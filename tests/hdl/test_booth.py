"""hdl/booth.py's Booth multiplier in Amaranth's simulator against Python's integer product: every
pair of operands of small formats (signed and unsigned, odd and even widths, split into two stages
or not) and the extreme and seeded random pairs of 8- and 16-bit formats."""

import itertools
import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hdl.booth import BoothMultiply
from hdl.macs import value_shape
from hdl.replicas import REPLICA


def value_range(width, signed):
    return range(-(1 << (width - 1)), 1 << (width - 1)) if signed else range(1 << width)


def products(pairs, *, act_width, act_signed, weight_width, weight_signed, split, defer_negation=False,
             registered=False):
    """The multiplier's value for each (activation, weight), read after the clocks it needs.
    `registered`: the weight reaches the rows as `registered_windows` and the activation through a
    register beside them (a cell's operand stage), a clock more."""
    m = Module()
    booth = BoothMultiply(act_width=act_width, act_signed=act_signed, weight_width=weight_width,
                          weight_signed=weight_signed, defer_negation=defer_negation)
    a = Signal(value_shape(act_width, act_signed))
    w = Signal(value_shape(weight_width, weight_signed))
    p = Signal(booth.shape)
    if registered:
        operand = Signal.like(a)
        m.d.sync += operand.eq(a)
        m.d.comb += p.eq(booth(m, operand, None, windows=booth.registered_windows(m, w), split=split))
    else:
        m.d.comb += p.eq(booth(m, a, w, split=split))
    clocks = split + registered
    if clocks:
        m.d.sync += Signal().eq(0)       # a clock domain for the registered rows
    results = []

    async def testbench(ctx):
        for x, y in pairs:
            ctx.set(a, x)
            ctx.set(w, y)
            for _ in range(clocks):
                await ctx.tick()
            results.append(ctx.get(p))

    sim = Simulator(m)
    if clocks:
        sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return results


@pytest.mark.parametrize("split", [False, True], ids=["one-stage", "two-stage"])
@pytest.mark.parametrize("act_width,act_signed,weight_width,weight_signed", [
    (4, True, 4, True), (4, False, 4, True), (4, True, 4, False), (3, False, 5, False),
    (5, True, 3, True), (2, True, 2, True), (2, False, 3, True), (3, True, 2, False)])
def test_every_pair_of_small_formats(act_width, act_signed, weight_width, weight_signed, split):
    fmt = dict(act_width=act_width, act_signed=act_signed, weight_width=weight_width, weight_signed=weight_signed)
    pairs = list(itertools.product(value_range(act_width, act_signed), value_range(weight_width, weight_signed)))
    assert products(pairs, split=split, **fmt) == [x * y for x, y in pairs]


@pytest.mark.parametrize("split", [False, True], ids=["one-stage", "two-stage"])
@pytest.mark.parametrize("act_width,act_signed,weight_width,weight_signed", [
    (4, True, 4, True), (4, False, 5, False), (3, True, 5, True), (5, False, 4, True)])
def test_registered_windows_stand_for_the_weight_a_clock_later(act_width, act_signed, weight_width,
                                                                 weight_signed, split):
    """A cell's operand stage: the weight's digit windows in registers of their own give every
    product, one clock after the operands."""
    fmt = dict(act_width=act_width, act_signed=act_signed, weight_width=weight_width, weight_signed=weight_signed)
    pairs = list(itertools.product(value_range(act_width, act_signed), value_range(weight_width, weight_signed)))
    assert products(pairs, split=split, registered=True, **fmt) == [x * y for x, y in pairs]


@pytest.mark.parametrize("weight_width,weight_signed,registers", [
    (8, True, [2, 3, 3, 3]), (8, False, [2, 3, 3, 3, 1]), (5, True, [2, 3, 2])])
def test_each_digit_reads_registers_of_its_own(weight_width, weight_signed, registers):
    """No register holds a weight bit for two digits' rows: each digit's window bits are copies
    that synthesis keeps apart, none for a constant zero (b_-1, bits above an unsigned weight)
    and one for a sign bit a window repeats."""
    m = Module()
    booth = BoothMultiply(act_width=8, act_signed=True, weight_width=weight_width, weight_signed=weight_signed)
    w = Signal(value_shape(weight_width, weight_signed))
    windows = booth.registered_windows(m, w)
    per_digit = [{id(bit): bit for bit in window if isinstance(bit, Signal)} for window in windows]
    assert [len(bits) for bits in per_digit] == registers
    everyone = [bit for bits in per_digit for bit in bits.values()]
    assert len({id(bit) for bit in everyone}) == len(everyone)
    assert all(bit.attrs.get(REPLICA) for bit in everyone)
    # A clock after the weight, they hold its windows.
    seen = []

    async def testbench(ctx):
        for y in value_range(weight_width, weight_signed):
            ctx.set(w, y)
            await ctx.tick()
            seen.append([[ctx.get(bit) for bit in window] for window in windows])
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    extended = [(y >> i) & 1 if i >= 0 else 0 for y in value_range(weight_width, weight_signed)
                for i in range(-1, 2 * len(windows))]
    span = 2 * len(windows) + 1
    assert seen == [[extended[k * span + 2 * j:k * span + 2 * j + 3] for j in range(len(windows))]
                    for k in range(len(seen))]


@pytest.mark.parametrize("width,signed", [(8, True), (8, False), (16, True), (7, True)])
def test_extreme_and_random_pairs(width, signed):
    values = value_range(width, signed)
    extremes = [values[0], values[0] + 1, -1 if signed else 1, 0, values[-1] - 1, values[-1]]
    rng = random.Random(width * 2 + signed)
    pairs = list(itertools.product(extremes, extremes))
    pairs += [(rng.choice(values), rng.choice(values)) for _ in range(300)]
    fmt = dict(act_width=width, act_signed=signed, weight_width=width, weight_signed=signed)
    for split in (False, True):
        assert products(pairs, split=split, **fmt) == [x * y for x, y in pairs]


@pytest.mark.parametrize("split", [False, True], ids=["one-stage", "two-stage"])
@pytest.mark.parametrize("act_width,act_signed,weight_width,weight_signed", [
    (4, True, 4, True), (4, False, 5, True), (3, True, 2, True), (5, True, 3, False), (3, False, 4, False)])
def test_deferred_negation_leaves_out_the_rows_ones(act_width, act_signed, weight_width, weight_signed, split):
    """defer_negation: the product less sum_j neg_j 4**j, the Booth digits' sign bits of the
    weight (what an array's row head adds back, hdl/systolic.py), for every pair; the negations
    are the weight's odd bits (and its sign for the last digit), an unsigned weight's with a zero
    bit above it."""
    fmt = dict(act_width=act_width, act_signed=act_signed, weight_width=weight_width, weight_signed=weight_signed)

    def deferred(y):
        bits = y & ((1 << weight_width) - 1)
        extended = weight_width + (not weight_signed)
        digits = (extended + 1) // 2
        return sum(((bits >> min(2 * j + 1, extended - 1)) & 1 if 2 * j + 1 < weight_width or weight_signed else 0)
                   << (2 * j) for j in range(digits))
    pairs = list(itertools.product(value_range(act_width, act_signed), value_range(weight_width, weight_signed)))
    assert products(pairs, split=split, defer_negation=True, **fmt) == [x * y - deferred(y) for x, y in pairs]
    # The cells of a row leave out exactly what BoothMultiply.negations says.
    m = Module()
    w = Signal(value_shape(weight_width, weight_signed))
    booth = BoothMultiply(defer_negation=True, **fmt)
    values = []

    async def testbench(ctx):
        for y in value_range(weight_width, weight_signed):
            ctx.set(w, y)
            values.append(sum(ctx.get(bit) << shift for bit, shift in booth.negations(w)))
    m.d.comb += Signal().eq(w)
    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert values == [deferred(y) for y in value_range(weight_width, weight_signed)]
