"""cocotb testbench of the whole host path: the Python host driver (software/host.py) -> a bit-level
UART line -> the generated Verilog of the host link and array -> the UART line -> the host driver.

The driver is ordinary blocking code written for pyserial. It runs in a cocotb `bridge` thread and
talks to `SimulatedSerial`, whose `write`, `read`, `send_break` and `reset_input_buffer` each
`resume` a coroutine that drives or decodes the line in simulated time; the simulator advances
only while the driver waits on the line, so a run is deterministic.

Stimulus (SPARSEGEN_STIMULUS, JSON): the array configuration, the host's bit time as a fraction of
the board's (`skew`, to model a host baud rate a little off), the packed layer and inputs.
Report (SPARSEGEN_REPORT, JSON): what the driver saw, for the pytest side to check.
"""

import dataclasses
import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
from cocotb.triggers import FallingEdge, RisingEdge, Timer

from software.packing.colcomb import ColumnCombining
from spec import ArrayConfig
from software.host import Board, HostLinkError, self_test

CLOCK_PS = 10_000


class Line:
    """The host's end of the serial line: drives the board's rx, decodes its tx (8N1)."""

    def __init__(self, dut, bit_ps):
        self.rx, self.tx, self.bit_ps = dut.rx, dut.tx, bit_ps
        self.received = bytearray()
        self.framing_errors = 0

    async def send(self, data):
        for byte in data:
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                self.rx.value = bit
                await Timer(self.bit_ps, unit="ps")

    async def send_break(self):
        self.rx.value = 0
        await Timer(30 * self.bit_ps, unit="ps")       # three frames
        self.rx.value = 1
        await Timer(20 * self.bit_ps, unit="ps")       # let the board settle and drop its replies

    async def monitor(self):
        while True:
            await FallingEdge(self.tx)
            await Timer(self.bit_ps // 2, unit="ps")
            if self.tx.value != 0:
                continue                                 # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await Timer(self.bit_ps, unit="ps")
                byte |= int(self.tx.value) << i
            await Timer(self.bit_ps, unit="ps")
            if self.tx.value != 1:
                self.framing_errors += 1
            self.received.append(byte)

    async def receive(self, n, timeout_frames):
        waited = 0
        while len(self.received) < n and waited < timeout_frames:
            await Timer(10 * self.bit_ps, unit="ps")
            waited += 1
        data = bytes(self.received[:n])
        del self.received[:n]
        return data


class SimulatedSerial:
    """The part of pyserial's `Serial` that the host driver uses, on a simulated line."""

    def __init__(self, line, *, timeout_frames):
        self.line, self.timeout_frames = line, timeout_frames

    def write(self, data):
        resume(self.line.send)(bytes(data))
        return len(data)

    def read(self, size=1):
        return resume(self.line.receive)(size, self.timeout_frames)

    def send_break(self, duration=0.25):
        resume(self.line.send_break)()

    def reset_input_buffer(self):
        self.line.received.clear()


def session(port, stim):
    """The host side, exactly as it would run against a real board."""
    config = ArrayConfig.from_dict(stim["config"])
    board = Board(port, config)
    out = {}
    # A command cut off in the middle, then a break: connect() must still find a clean board.
    port.write(b"A\x05\x00\x12\x34\x56")
    descriptor = board.connect()
    out["descriptor"] = dataclasses.asdict(descriptor)
    # An unknown command is answered with an error reply, and the link keeps working.
    port.write(b"Z")
    try:
        board.identify()
        out["unknown_command"] = None
    except HostLinkError as e:
        out["unknown_command"] = str(e)
    out["identify_after_error"] = dataclasses.asdict(board.identify())
    # The packed layer.
    lay = stim["layer"]
    layer = ColumnCombining(groups=lay["groups"], packed=np.array(lay["packed"], dtype=np.int64),
                            select=np.array(lay["select"], dtype=np.int64), alpha=lay["alpha"],
                            in_features=lay["in_features"])
    sent, received = board.bytes_sent, board.bytes_received
    out["outputs"] = board.run_layer(layer, np.array(stim["x"], dtype=np.int64)).tolist()
    out["layer_bytes"] = [board.bytes_sent - sent, board.bytes_received - received]
    # What `python -m fpga run` does on a real board.
    result = self_test(board, batch=stim["self_test_batch"], seed=1)
    out["self_test"] = dataclasses.asdict(result)
    return out


@cocotb.test()
async def hostlink_test(dut):
    stim = json.loads(open(os.environ["SPARSEGEN_STIMULUS"]).read())
    report_path = os.environ["SPARSEGEN_REPORT"]
    bit_ps = round(stim["divisor"] * CLOCK_PS * stim["skew"])
    line = Line(dut, bit_ps)

    cocotb.start_soon(Clock(dut.clk, CLOCK_PS, unit="ps").start())
    dut.rx.value = 1
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    cocotb.start_soon(line.monitor())

    port = SimulatedSerial(line, timeout_frames=stim["timeout_frames"])
    start = time.perf_counter()
    error = None
    try:
        report = await bridge(session)(port, stim)
    except HostLinkError as e:
        report, error = {}, f"host driver: {e}"
    report.update(error=error, framing_errors=line.framing_errors, sim_seconds=time.perf_counter() - start,
                  sim_time_ns=get_sim_time("ns"))
    with open(report_path, "w") as f:
        json.dump(report, f)
    assert error is None, error
