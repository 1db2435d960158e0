"""The one cocotb testbench of every unit: drives the unit's input streams and takes its output
stream, all named by the manifest, each with random valid/ready stalls, and checks every output
beat bit for bit against the golden model's words.

Stimulus (SPARSEGEN_STIMULUS, JSON):
  inputs     {stream name: [words as hex]}, offered in order, all streams at once
  output     the output stream's name
  expected   [words as hex] the golden model's output beats
  stall      probability that a source withholds a beat / the sink refuses one, each clock
  seed       of the stalls
  budget     most clocks before the run counts as hung
  drain      clocks to keep watching after the last expected beat (no extra beat may come)
  reset_after  optional: once this many output beats have been taken, hold reset for two clocks
             in the middle of the streams, then replay every stream from its first beat; the
             replay must produce every expected beat again.
The report (SPARSEGEN_REPORT) gives the output words (of the final pass), `cycles` from the first
input handshake to the last output handshake inclusive (of the final pass), the clocks simulated
and an error message if any. One coroutine drives all streams cycle by cycle: it drives after the
clock edge and samples handshakes in the ReadOnly phase, so a handshake is counted exactly when
the RTL sees valid and ready high at an edge.
"""

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


class Source:
    """A stream producer. Once valid is raised it stays high, with the same payload, until taken."""

    def __init__(self, dut, name, words, rng, stall):
        self.valid, self.ready = getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.words, self.rng, self.stall = words, rng, stall
        self.restart()

    def restart(self):
        self.index, self.offering = 0, False
        self.valid.value = 0

    def drive(self):
        if not self.offering and self.index < len(self.words) and self.rng.random() >= self.stall:
            self.offering = True
            self.payload.value = self.words[self.index]
        self.valid.value = int(self.offering)

    def fired(self):
        return self.offering and bool(self.ready.value)

    def advance(self):
        self.index += 1
        self.offering = False


class Sink:
    """A stream consumer that refuses beats at random and checks each one it takes."""

    def __init__(self, dut, name, expected, rng, stall):
        self.name = name
        self.valid, self.ready = getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.expected, self.rng, self.stall = expected, rng, stall
        self.error = None
        self.restart()

    def restart(self):
        self.words, self.taking = [], False
        self.ready.value = 0

    def drive(self):
        self.taking = self.rng.random() >= self.stall
        self.ready.value = int(self.taking)

    def sample(self):
        """After ReadOnly: take a beat if one is handed over; True if one was."""
        if not (self.taking and self.valid.value):
            return False
        word, i = int(self.payload.value), len(self.words)
        if self.error is None:
            if i >= len(self.expected):
                self.error = f"{self.name} beat {i}: one beyond the {len(self.expected)} expected"
            elif word != self.expected[i]:
                self.error = f"{self.name} beat {i}: got {word:#x}, expected {self.expected[i]:#x}"
        self.words.append(word)
        return True

    @property
    def done(self):
        return len(self.words) >= len(self.expected)


async def reset(dut, clocks=2):
    dut.rst.value = 1
    for _ in range(clocks):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def streams_test(dut):
    with open(os.environ["SPARSEGEN_STIMULUS"]) as f:
        stim = json.load(f)
    rng = random.Random(stim["seed"])
    stall = stim["stall"]
    sources = [Source(dut, name, [int(w, 16) for w in words], rng, stall) for name, words in stim["inputs"].items()]
    sink = Sink(dut, stim["output"], [int(e, 16) for e in stim["expected"]], rng, stall)
    reset_after = stim.get("reset_after")

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut)
    start = time.perf_counter()
    cycle, first, last, total = 0, None, None, 0
    while not sink.done and cycle < stim["budget"] and sink.error is None:
        for source in sources:
            source.drive()
        sink.drive()
        await ReadOnly()
        fired = [s for s in sources if s.fired()]
        if fired and first is None:
            first = cycle
        if sink.sample():
            last = cycle
        await RisingEdge(dut.clk)
        for s in fired:
            s.advance()
        cycle += 1
        if reset_after is not None and len(sink.words) >= reset_after and not sink.done:
            # Reset in the middle of the streams, then replay them from the start.
            reset_after = None
            for s in sources:
                s.restart()
            sink.restart()
            await reset(dut)
            total += cycle + 2
            cycle, first, last = 0, None, None
    # Nothing more may come out once every expected beat has been taken.
    sink.ready.value = 1
    sink.taking = True
    for _ in range(stim["drain"]):
        await ReadOnly()
        sink.sample()
        await RisingEdge(dut.clk)
        cycle += 1
    error = sink.error
    if not sink.done and error is None:
        error = f"timed out after {cycle} cycles with {len(sink.words)} of {len(sink.expected)} {sink.name} beats"
    report = {"results": [hex(w) for w in sink.words], "error": error, "total_cycles": total + cycle,
              "reset_done": stim.get("reset_after") is not None and reset_after is None,
              "cycles": None if last is None or first is None else last - first + 1,
              "sim_seconds": time.perf_counter() - start}
    with open(os.environ["SPARSEGEN_REPORT"], "w") as f:
        json.dump(report, f)
    assert error is None, error
