"""hdl/delay.py's FanoutDelay: every copy is the input delayed by `depth` clocks, whatever the
delay line behind the copies (a wire, registers or a memory)."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hdl.delay import MEMORY_FROM_DEPTH, FanoutDelay


@pytest.mark.parametrize("depth", [1, 2, MEMORY_FROM_DEPTH, MEMORY_FROM_DEPTH + 3])
def test_every_copy_is_the_input_delayed(depth):
    dut = FanoutDelay(10, depth, 3)
    rng = random.Random(depth)
    sent = []

    async def testbench(ctx):
        for clock in range(40):
            value = rng.getrandbits(10)
            ctx.set(dut.i, value)
            sent.append(value)
            if clock >= depth:
                assert [ctx.get(dut.o[k]) for k in range(3)] == [sent[clock - depth]] * 3, f"clock {clock}"
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def test_bad_sizes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="depth must be at least 1, not 0"):
            FanoutDelay(8, 0, 2)
        with pytest.raises(ValueError, match="copies must be at least 1, not 0"):
            FanoutDelay(8, 2, 0)
        gc.collect()
