"""cocotb testbench of a unit with one input stream and one output stream (e.g. the TQ multiplier):
offers the input words and takes the output beats, each side with random valid/ready stalls, and
checks every output beat bit for bit against the expected words.

Stimulus (SPARSEGEN_STIMULUS, JSON): input / output (stream names), words, expected (hex strings),
stall, seed, latency, max_work (most clocks the unit may spend on one beat). The report
(SPARSEGEN_REPORT) gives the output words, `cycles` from the first input handshake to the last
output handshake inclusive, and an error message if any. Handshakes are sampled in the ReadOnly
phase, exactly where the RTL sees valid and ready high at a clock edge.
"""

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from sim.tb_array import Source


@cocotb.test()
async def one_stream_test(dut):
    stim = json.loads(open(os.environ["SPARSEGEN_STIMULUS"]).read())
    rng = random.Random(stim["seed"])
    stall = stim["stall"]
    expected = [int(e, 16) for e in stim["expected"]]
    source = Source(dut, stim["input"], [int(w, 16) for w in stim["words"]], rng, stall)
    out_valid = getattr(dut, f"{stim['output']}__valid")
    out_ready = getattr(dut, f"{stim['output']}__ready")
    out_payload = getattr(dut, f"{stim['output']}__payload")
    results = []

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    source.valid.value = 0
    out_ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    budget = (len(source.words) + len(expected) + stim["latency"] + 10) * 50 * max(1, stim["max_work"])
    start = time.perf_counter()
    cycle, first, last, error = 0, None, None, None
    while len(results) < len(expected) and cycle < budget:
        source.drive()
        taking = rng.random() >= stall
        out_ready.value = int(taking)
        await ReadOnly()
        fired = source.fired()
        if fired and first is None:
            first = cycle
        if taking and out_valid.value:
            word = int(out_payload.value)
            if word != expected[len(results)] and error is None:
                error = f"output beat {len(results)}: got {word:#x}, expected {expected[len(results)]:#x}"
            results.append(word)
            last = cycle
        await RisingEdge(dut.clk)
        if fired:
            source.advance()
        cycle += 1
    out_ready.value = 1
    for _ in range(stim["latency"] + stim["max_work"] + 4):
        await ReadOnly()
        if out_valid.value and error is None:
            error = "an output beat beyond the expected count"
        await RisingEdge(dut.clk)
        cycle += 1
    if len(results) < len(expected) and error is None:
        error = f"timed out after {cycle} cycles with {len(results)} of {len(expected)} outputs"
    report = {"results": [hex(r) for r in results], "error": error, "total_cycles": cycle,
              "cycles": None if last is None else last - first + 1,
              "sim_seconds": time.perf_counter() - start}
    with open(os.environ["SPARSEGEN_REPORT"], "w") as f:
        json.dump(report, f)
    assert error is None, error
