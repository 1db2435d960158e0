"""cocotb testbench of the generated array: drives the weight and activation streams and takes the
result stream, each with random valid/ready stalls, and checks every result beat bit for bit.

Stimulus and expected results come from a JSON file (SPARSEGEN_STIMULUS) prepared from the golden
model in software/; measurements go to SPARSEGEN_REPORT. One coroutine handles all three streams,
cycle by cycle: it drives after the clock edge and samples handshakes in the ReadOnly phase, so
a handshake is counted exactly when the RTL sees valid and ready high at an edge.
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
        self.index, self.offering = 0, False

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


@cocotb.test()
async def stream_test(dut):
    stim = json.loads(open(os.environ["SPARSEGEN_STIMULUS"]).read())
    report_path = os.environ["SPARSEGEN_REPORT"]
    rng = random.Random(stim["seed"])
    stall = stim["stall"]
    expected = [int(e, 16) for e in stim["expected"]]
    weights = Source(dut, "weights", [int(w, 16) for w in stim["weights"]], rng, stall)
    acts = Source(dut, "activations", [int(a, 16) for a in stim["activations"]], rng, stall)
    report = {"results": [], "cycles": None}

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.weights__valid.value = 0
    dut.activations__valid.value = 0
    dut.results__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    # Generous bound: every beat stalled many times over, plus the pipeline.
    budget = (len(weights.words) + len(acts.words) + len(expected) + stim["latency"] + 10) * 50
    start = time.perf_counter()
    cycle, first, last = 0, None, None
    error = None
    while len(report["results"]) < len(expected) and cycle < budget:
        weights.drive()
        acts.drive()
        taking = rng.random() >= stall
        dut.results__ready.value = int(taking)
        await ReadOnly()
        fired = [s for s in (weights, acts) if s.fired()]
        if fired and first is None:
            first = cycle
        if taking and dut.results__valid.value:
            word = int(dut.results__payload.value)
            i = len(report["results"])
            report["results"].append(hex(word))
            last = cycle
            if word != expected[i] and error is None:
                error = f"result beat {i}: got {word:#x}, expected {expected[i]:#x}"
        await RisingEdge(dut.clk)
        for s in fired:
            s.advance()
        cycle += 1
    # Nothing more may come out once every expected beat has been taken.
    dut.results__ready.value = 1
    for _ in range(stim["latency"] + 4):
        await ReadOnly()
        if dut.results__valid.value and error is None:
            error = "a result beat beyond the expected count"
        await RisingEdge(dut.clk)
        cycle += 1
    elapsed = time.perf_counter() - start
    if len(report["results"]) < len(expected) and error is None:
        error = f"timed out after {cycle} cycles with {len(report['results'])} of {len(expected)} results"
    report.update(cycles=None if last is None else last - first + 1, total_cycles=cycle,
                  sim_seconds=elapsed, error=error)
    with open(report_path, "w") as f:
        json.dump(report, f)
    assert error is None, error
