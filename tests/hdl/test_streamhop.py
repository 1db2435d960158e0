"""The stream hop (hdl/streamhop.py): every beat once, in order, its handshake through registers."""

import random

import pytest
from amaranth.hdl import ClockDomain, Module, ResetInserter, Signal
from amaranth.sim import Simulator

from hdl.streamhop import StreamHop
from tests.hdl.streams import run_stream


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_every_beat_passes_once_in_order(stall):
    rng = random.Random(2)
    words = [rng.getrandbits(12) for _ in range(40)]
    dut = StreamHop(12)
    got, _ = run_stream(dut, dut.sink, words, dut.source, len(words), stall=stall, seed=5)
    assert got == words


def test_four_clocks_from_valid_to_ready_and_nothing_combinational():
    """The source's valid reaches the sink two clocks later and the sink's taking it the source two
    clocks after that; in between, neither side's valid or ready changes the other's at once."""
    dut = StreamHop(8)

    async def bench(ctx):
        ctx.set(dut.source.ready, 1)
        ctx.set(dut.sink.payload, 0x5A)
        ctx.set(dut.sink.valid, 1)
        seen = []
        for _ in range(6):
            seen.append((ctx.get(dut.source.valid), ctx.get(dut.sink.ready)))
            if ctx.get(dut.sink.ready):
                assert ctx.get(dut.source.payload) == 0x5A
            await ctx.tick()
            if seen[-1][1]:
                ctx.set(dut.sink.valid, 0)
        assert seen == [(0, 0), (0, 0), (1, 0), (0, 0), (0, 1), (0, 0)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_reset_with_a_beat_in_flight_leaves_no_ghost():
    """Reset (the link's, with both ends) while a beat crosses: no beat comes out of it, and the
    beats after it pass."""
    hop = StreamHop(8)
    reset = Signal()
    top = Module()
    top.domains.sync = ClockDomain("sync")
    top.submodules.hop = ResetInserter(reset)(hop)
    after = [0x11, 0x22, 0x33]

    async def bench(ctx):
        ctx.set(hop.source.ready, 0)
        ctx.set(hop.sink.payload, 0xEE)
        ctx.set(hop.sink.valid, 1)
        await ctx.tick().repeat(2)
        assert ctx.get(hop.source.valid)            # the beat is across, not taken
        ctx.set(hop.sink.valid, 0)
        ctx.set(reset, 1)
        await ctx.tick()
        ctx.set(reset, 0)
        ctx.set(hop.source.ready, 1)
        got = []
        for word in after:
            ctx.set(hop.sink.payload, word)
            ctx.set(hop.sink.valid, 1)
            for _ in range(10):
                if ctx.get(hop.source.valid):
                    got.append(ctx.get(hop.source.payload))
                ready = ctx.get(hop.sink.ready)
                await ctx.tick()
                if ready:
                    break
            ctx.set(hop.sink.valid, 0)
        for _ in range(6):
            assert not ctx.get(hop.source.valid)
            await ctx.tick()
        assert got == after

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
