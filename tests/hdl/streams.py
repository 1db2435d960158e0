"""Cycle-by-cycle stream drivers for Amaranth simulations: words offered on input streams, beats
taken from an output stream, every side stalling at random, and a watchdog that fails a unit that
stops instead of hanging the test."""

import random

from amaranth.hdl import Value
from amaranth.sim import Simulator


def run_streams(top, sources, sink, count, *, stall=0.0, seed=0, drain=8, prelude=None, limit=None):
    """Offer the words of each `(stream, words)` in `sources` concurrently and take `count` beats
    from stream `sink`, each side stalling at random with probability `stall`. An offered word
    stays until taken.

    `prelude(ctx)`, if given, runs first; the streams start when it returns, and clocks are
    counted from then. After the last beat, `drain` clocks must bring no further beat. More than
    `limit` clocks without all beats fail the run (default: 64 a beat and 1,000, far beyond any
    unit's pace under stalls).

    Returns (sink payloads as integers, {"first": the clock of each source's first handshake,
    "last": the clock of the sink's last}).
    """
    rng = random.Random(seed)
    received = []
    clocks = {"first": [None] * len(sources), "last": None}
    started = [prelude is None]
    if limit is None:
        limit = 64 * (sum(len(words) for _, words in sources) + count) + 1000

    async def wait_for_start(ctx):
        while not started[0]:
            await ctx.tick()

    def sender(index, port, words):
        async def send(ctx):
            await wait_for_start(ctx)
            cycle = 0
            for word in words:
                while rng.random() < stall:
                    await ctx.tick()
                    cycle += 1
                ctx.set(port.valid, 1)
                ctx.set(Value.cast(port.payload), word)
                while True:
                    _, _, ready = await ctx.tick().sample(port.ready)
                    if ready and clocks["first"][index] is None:
                        clocks["first"][index] = cycle
                    cycle += 1
                    if ready:
                        break
                ctx.set(port.valid, 0)
        return send

    async def receive(ctx):
        await wait_for_start(ctx)
        cycle = 0
        while len(received) < count:
            ready = rng.random() >= stall
            ctx.set(sink.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(sink.valid, Value.cast(sink.payload))
            if valid and ready:
                received.append(payload)
                clocks["last"] = cycle
            cycle += 1
        ctx.set(sink.ready, 1)
        for _ in range(drain):
            _, _, valid = await ctx.tick().sample(sink.valid)
            assert not valid, "a beat beyond the expected count"

    async def watchdog(ctx):
        await wait_for_start(ctx)
        for _ in range(limit):
            if len(received) >= count:
                return
            await ctx.tick()
        raise AssertionError(f"{len(received)} of {count} beats after {limit} clocks: the unit stopped")

    sim = Simulator(top)
    sim.add_clock(1e-8)
    for index, (port, words) in enumerate(sources):
        sim.add_testbench(sender(index, port, words))
    sim.add_testbench(receive)
    sim.add_testbench(watchdog)
    if prelude is not None:
        async def run_prelude(ctx):
            await prelude(ctx)
            started[0] = True
        sim.add_testbench(run_prelude)
    sim.run()
    return received, clocks


def run_stream(dut, source, words, sink, count, *, stall=0.0, seed=0, drain=8):
    """`run_streams` with one input stream. Returns (sink payloads as integers, clocks from the
    first source handshake to the last sink handshake, inclusive)."""
    received, clocks = run_streams(dut, [(source, words)], sink, count, stall=stall, seed=seed, drain=drain)
    return received, clocks["last"] - clocks["first"][0] + 1
