"""A cycle-by-cycle stream driver for Amaranth simulations of one-input, one-output stream units."""

import random

from amaranth.hdl import Value
from amaranth.sim import Simulator


def run_stream(dut, source, words, sink, count, *, stall=0.0, seed=0, drain=8):
    """Offer `words` on stream `source` and take `count` beats from stream `sink`, each side
    stalling at random with probability `stall`. An offered word stays until taken.

    Returns (sink payloads as integers, cycles from the first source handshake to the last sink
    handshake, inclusive). Fails if more than `count` beats come out.
    """
    rng = random.Random(seed)
    received, timing = [], {}
    bound = (len(words) + count + 20) * 200

    async def testbench(ctx):
        index, offering, cycle, first, last = 0, False, 0, None, None
        while len(received) < count:
            if not offering and index < len(words) and rng.random() >= stall:
                offering = True
                ctx.set(Value.cast(source.payload), words[index])
            ctx.set(source.valid, offering)
            taking = rng.random() >= stall
            ctx.set(sink.ready, taking)
            fired = offering and ctx.get(source.ready)
            if taking and ctx.get(sink.valid):
                received.append(ctx.get(Value.cast(sink.payload)))
                last = cycle
            if fired and first is None:
                first = cycle
            await ctx.tick()
            if fired:
                index, offering = index + 1, False
            cycle += 1
            assert cycle < bound, f"timed out with {len(received)} of {count} beats"
        ctx.set(source.valid, 0)
        ctx.set(sink.ready, 1)
        for _ in range(drain):
            assert not ctx.get(sink.valid), "a beat beyond the expected count"
            await ctx.tick()
        timing["cycles"] = last - first + 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return received, timing["cycles"]
