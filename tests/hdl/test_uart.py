"""The UART in Amaranth's simulator against a bit-level model of the far end of the line."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hdl.uart import UARTReceiver, UARTTransmitter, divisor_for
from tests.hdl.uart_model import hold_low, receive_byte, send_byte, send_bytes


def run(dut, *testbenches, deadline=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    if deadline is None:
        sim.run()
    else:
        sim.run_until(deadline * 1e-8)


@pytest.mark.parametrize("divisor, skew", [(4, 1.0), (7, 1.0), (16, 0.97), (16, 1.03)])
def test_receiver_takes_every_byte_under_stalls(divisor, skew):
    """Back-to-back frames, a far end up to 3% off in baud rate, a sink that stalls at random."""
    dut = UARTReceiver(divisor=divisor)
    rng = random.Random(divisor)
    sent = [rng.randrange(256) for _ in range(40)] + [0x00, 0xFF, 0x55, 0xAA]
    got, errors = [], []

    async def line(ctx):
        await ctx.tick().repeat(3)
        await send_bytes(ctx, dut.rx, sent, divisor * skew)

    async def sink(ctx):
        while len(got) < len(sent):
            ready = rng.random() < 0.5
            ctx.set(dut.data.ready, ready)
            _, _, valid, payload, *flags = await ctx.tick().sample(
                dut.data.valid, dut.data.payload, dut.overrun, dut.framing_error, dut.line_break)
            if valid and ready:
                got.append(payload)
            if any(flags):
                errors.append(flags)

    run(dut, line, sink)
    assert got == sent and not errors


def test_receiver_reports_overrun_and_keeps_the_first_byte():
    dut = UARTReceiver(divisor=4)
    overruns = []

    async def line(ctx):
        await send_bytes(ctx, dut.rx, [0x12, 0x34, 0x56], 4)
        await ctx.tick().repeat(8)

    async def watch(ctx):
        async for _, _, overrun in ctx.tick().sample(dut.overrun):
            if overrun:
                overruns.append(1)

    async def sink(ctx):
        await ctx.tick().repeat(3 * 40 + 8)
        assert ctx.get(dut.data.valid) and ctx.get(dut.data.payload) == 0x12
        ctx.set(dut.data.ready, 1)
        await ctx.tick()
        assert not ctx.get(dut.data.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(line)
    sim.add_testbench(sink)
    sim.add_process(watch)
    sim.run_until(200 * 1e-8)
    assert len(overruns) == 2


def test_receiver_framing_error_then_break_then_recovers():
    dut = UARTReceiver(divisor=8)
    events, got = [], []

    async def line(ctx):
        await send_byte(ctx, dut.rx, 0x5A, 8, stop=0)     # bad stop bit, nonzero data
        await ctx.tick().repeat(20)
        await hold_low(ctx, dut.rx, 8 * 30)               # a break: three frames long
        await ctx.tick().repeat(20)
        await send_byte(ctx, dut.rx, 0xC3, 8)
        await ctx.tick().repeat(20)

    async def watch(ctx):
        ctx.set(dut.data.ready, 1)
        async for _, _, framing, brk, valid, payload in ctx.tick().sample(
                dut.framing_error, dut.line_break, dut.data.valid, dut.data.payload):
            if framing:
                events.append("framing")
            if brk:
                events.append("break")
            if valid:
                got.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(line)
    sim.add_process(watch)
    sim.run_until(600 * 1e-8)
    assert events == ["framing", "break"]     # one break, however long the line stays low
    assert got == [0xC3]


@pytest.mark.parametrize("divisor", [4, 9])
def test_transmitter_frames_under_random_valid(divisor):
    dut = UARTTransmitter(divisor=divisor)
    rng = random.Random(3)
    sent = [rng.randrange(256) for _ in range(30)]
    got = []

    async def source(ctx):
        for byte in sent:
            while rng.random() < 0.3:
                await ctx.tick().repeat(rng.randrange(1, 3 * divisor))
            ctx.set(dut.data.valid, 1)
            ctx.set(dut.data.payload, byte)
            await ctx.tick().until(dut.data.ready)
            ctx.set(dut.data.valid, 0)

    async def line(ctx):
        while len(got) < len(sent):
            got.append(await receive_byte(ctx, dut.tx, divisor))

    run(dut, source, line)
    assert got == sent


def test_transmitter_back_to_back_frames_are_ten_bits():
    divisor = 5
    dut = UARTTransmitter(divisor=divisor)
    falls = []

    async def source(ctx):
        ctx.set(dut.data.valid, 1)
        for byte in (0x00, 0x00, 0x00):   # every frame starts with a falling edge
            ctx.set(dut.data.payload, byte)
            await ctx.tick().until(dut.data.ready)
        ctx.set(dut.data.valid, 0)

    async def watch(ctx):
        previous, cycle = 1, 0
        async for _, _, tx in ctx.tick().sample(dut.tx):
            if previous and not tx:
                falls.append(cycle)
            previous, cycle = tx, cycle + 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_process(watch)
    sim.run_until(200 * 1e-8)
    assert [b - a for a, b in zip(falls, falls[1:])] == [10 * divisor] * 2


def test_loopback_at_the_smallest_divisor():
    from amaranth.hdl import Module
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor=4)
    m.submodules.rx = rx = UARTReceiver(divisor=4)
    m.d.comb += rx.rx.eq(tx.tx)
    sent, got = list(range(0, 256, 7)), []

    async def source(ctx):
        for byte in sent:
            ctx.set(tx.data.valid, 1)
            ctx.set(tx.data.payload, byte)
            await ctx.tick().until(tx.data.ready)
        ctx.set(tx.data.valid, 0)

    async def sink(ctx):
        ctx.set(rx.data.ready, 1)
        while len(got) < len(sent):
            _, _, valid, payload = await ctx.tick().sample(rx.data.valid, rx.data.payload)
            if valid:
                got.append(payload)

    run(m, source, sink)
    assert got == sent


def test_divisor_for():
    assert divisor_for(12e6, 115200) == 104
    assert divisor_for(25e6, 115200) == 217
    assert divisor_for(48e6, 3_000_000) == 16
    with pytest.raises(ValueError, match="too fast"):
        divisor_for(12e6, 6_000_000)
    with pytest.raises(ValueError, match="off"):
        divisor_for(12e6, 2_200_000)        # 12 MHz / 5 = 2.4 Mbaud, 9% off


@pytest.mark.parametrize("divisor, error", [(3, ValueError), (0, ValueError), (4.5, TypeError)])
def test_bad_divisor(divisor, error):
    for component in (UARTReceiver, UARTTransmitter):
        with warnings.catch_warnings():
            # The half-constructed component is never elaborated; that is the point.
            warnings.simplefilter("ignore", UnusedElaboratable)
            with pytest.raises(error, match="divisor"):
                component(divisor=divisor)
            gc.collect()
