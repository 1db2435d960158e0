"""The collision-free memories and the buffered FIFO built on one (hdl/memories.py)."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import Module, UnusedElaboratable
from amaranth.lib import fifo
from amaranth.sim import Simulator

from hdl.memories import NO_COLLISION, BufferedFIFO, collision_free_memory


@pytest.mark.parametrize("depth, lanes", [(2, 1), (3, 1), (5, 3), (8, 4), (12, 2)])
def test_buffered_fifo_matches_amaranths_clock_for_clock(depth, lanes):
    """Under random writes and reads, BufferedFIFO's ready bits, level and output equal those of
    amaranth.lib.fifo.SyncFIFOBuffered (whose interface and timing it replaces) in every clock,
    and every value comes out once, in order."""
    m = Module()
    m.submodules.dut = dut = BufferedFIFO(width=12, depth=depth, lanes=lanes)
    m.submodules.ref = ref = fifo.SyncFIFOBuffered(width=12, depth=depth)
    rng = random.Random(depth)
    written, read = [], []

    async def testbench(ctx):
        value = 0
        for clock in range(600):
            fill = clock % 200 < 100            # phases that fill it up and drain it
            w_en = rng.random() < (0.8 if fill else 0.3)
            r_en = rng.random() < (0.3 if fill else 0.8)
            for port in (dut, ref):
                ctx.set(port.w_data, value)
                ctx.set(port.w_en, w_en)
                ctx.set(port.r_en, r_en)
            for name in ("w_rdy", "r_rdy", "level"):
                assert ctx.get(getattr(dut, name)) == ctx.get(getattr(ref, name)), f"{name} at clock {clock}"
            if ctx.get(dut.r_rdy):
                assert ctx.get(dut.r_data) == ctx.get(ref.r_data), f"r_data at clock {clock}"
                if r_en:
                    read.append(ctx.get(dut.r_data))
            if w_en and ctx.get(dut.w_rdy):
                written.append(value)
                value = rng.getrandbits(12)
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert read == written[:len(read)] and len(written) - len(read) <= depth
    assert len(read) > 100


def test_buffered_fifo_rejects_bad_sizes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)    # never built: that is the point
        with pytest.raises(ValueError, match="at least 2"):
            BufferedFIFO(width=8, depth=1)
        with pytest.raises(ValueError, match="lanes must divide width 8, not 3"):
            BufferedFIFO(width=8, depth=4, lanes=3)
        gc.collect()


def test_collision_free_memory_carries_the_attribute_the_build_reads():
    from amaranth.back import rtlil
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Wrapper(wiring.Component):
        addr: In(2)
        data: Out(8)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = collision_free_memory(shape=8, depth=4)
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.addr), self.data.eq(port.data)]
            return m

    text = rtlil.convert(Wrapper())
    assert f"attribute \\{NO_COLLISION} 1\n  memory width 8 size 4" in text
