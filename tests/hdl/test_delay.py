"""hdl/delay.py's DelayLine: the output is the input delayed by `depth` clocks, whatever the line
is made of (a wire, registers or a memory)."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hdl.delay import MEMORY_FROM_DEPTH, DelayLine


@pytest.mark.parametrize("depth", [1, 2, MEMORY_FROM_DEPTH - 1, MEMORY_FROM_DEPTH, MEMORY_FROM_DEPTH + 3])
def test_the_output_is_the_input_delayed(depth):
    dut = DelayLine(10, depth)
    assert dut.uses_memory == (depth >= MEMORY_FROM_DEPTH)
    rng = random.Random(depth)
    sent = []

    async def testbench(ctx):
        for clock in range(40):
            value = rng.getrandbits(10)
            ctx.set(dut.i, value)
            sent.append(value)
            if clock >= depth:
                assert ctx.get(dut.o) == sent[clock - depth], f"clock {clock}"
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def test_bad_depth():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="depth must be at least 0, not -1"):
            DelayLine(8, -1)
        gc.collect()
