"""cocotb testbench of the generated attention unit: drives the kv and query streams and takes the
out stream, each with random valid/ready stalls, and checks every out beat bit for bit.

Stimulus and expected beats come from a JSON file (SPARSEGEN_STIMULUS) prepared from the golden
model in software/; measurements go to SPARSEGEN_REPORT. As in sim/tb_array.py, one coroutine
handles every stream cycle by cycle: it drives after the clock edge and samples handshakes in the
ReadOnly phase, so a handshake is counted exactly when the RTL sees valid and ready high at an edge.
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
async def attention_test(dut):
    stim = json.loads(open(os.environ["SPARSEGEN_STIMULUS"]).read())
    rng = random.Random(stim["seed"])
    stall = stim["stall"]
    expected = [int(e, 16) for e in stim["expected"]]
    kv = Source(dut, "kv", [int(w, 16) for w in stim["kv"]], rng, stall)
    query = Source(dut, "query", [int(w, 16) for w in stim["query"]], rng, stall)
    results, error = [], None

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.kv__valid.value = 0
    dut.query__valid.value = 0
    dut.out__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    budget = stim["budget"]
    start = time.perf_counter()
    cycle, first, last = 0, None, None
    while len(results) < len(expected) and cycle < budget:
        kv.drive()
        query.drive()
        taking = rng.random() >= stall
        dut.out__ready.value = int(taking)
        await ReadOnly()
        fired = [s for s in (kv, query) if s.fired()]
        if kv in fired and first is None:
            first = cycle
        if taking and dut.out__valid.value:
            word = int(dut.out__payload.value)
            i = len(results)
            results.append(hex(word))
            last = cycle
            if word != expected[i] and error is None:
                error = f"out beat {i}: got {word:#x}, expected {expected[i]:#x}"
        await RisingEdge(dut.clk)
        for s in fired:
            s.advance()
        cycle += 1
    # Nothing more may come out once every expected beat has been taken.
    dut.out__ready.value = 1
    for _ in range(8):
        await ReadOnly()
        if dut.out__valid.value and error is None:
            error = "an out beat beyond the expected count"
        await RisingEdge(dut.clk)
        cycle += 1
    elapsed = time.perf_counter() - start
    if len(results) < len(expected) and error is None:
        error = f"timed out after {cycle} cycles with {len(results)} of {len(expected)} out beats"
    with open(os.environ["SPARSEGEN_REPORT"], "w") as f:
        json.dump({"results": results, "cycles": None if last is None else last - first + 1,
                   "total_cycles": cycle, "sim_seconds": elapsed, "error": error}, f)
    assert error is None, error
