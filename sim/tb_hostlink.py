"""cocotb testbench of the whole host path: the Python host driver (software/host.py) -> a bit-level
UART line -> the generated Verilog of the host link and array -> the UART line -> the host driver.

The driver is ordinary blocking code written for pyserial. It runs in a cocotb `bridge` thread and
talks to `SimulatedSerial`, whose `write`, `read`, `send_break` and `reset_input_buffer` each
`resume` a coroutine that drives or decodes the line in simulated time; the simulator advances
only while the driver waits on the line, so a run is deterministic.

Stimulus (SPARSEGEN_STIMULUS, JSON): the array configuration, the host's bit time as a fraction of
the board's (`skew`, to model a host baud rate a little off), and either the packed layer and
inputs of one clean session (`layer`, `x`) or a fault campaign (`faults`: sessions of random layers
over a line that damages frames both ways, sim/linkfaults.py).
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
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer

from software.packing.colcomb import ColumnCombining, combine
from spec import ArrayConfig
from software.golden.array import reference_layer
from software.host import Board, HostLinkError, ModelBoard, frame, self_test
from sim.linkfaults import FaultInjector

CLOCK_PS = 10_000


class Line:
    """The host's end of the serial line: drives the board's rx, decodes its tx (8N1).

    The board's bytes are delivered in bursts (a reply each): a burst ends when the line has been
    idle for two byte times, and passes through `faults` (None: untouched) on its way."""

    def __init__(self, dut, bit_ps, faults=None):
        self.rx, self.tx, self.bit_ps = dut.rx, dut.tx, bit_ps
        self.faults = faults
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
        burst = bytearray()
        while True:
            edge = FallingEdge(self.tx)
            fired = await First(edge, Timer(20 * self.bit_ps, unit="ps"))
            if fired is not edge:
                if burst:
                    self.deliver(burst)
                    burst = bytearray()
                continue
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
            burst.append(byte)

    def deliver(self, burst):
        self.received += self.faults.apply("board->host", burst) if self.faults else burst

    async def receive(self, n, timeout_frames):
        waited = 0
        while len(self.received) < n and waited < timeout_frames:
            await Timer(10 * self.bit_ps, unit="ps")
            waited += 1
        data = bytes(self.received[:n])
        del self.received[:n]
        return data


class SimulatedSerial:
    """The part of pyserial's `Serial` that the host driver uses, on a simulated line. Each write
    is one frame of the driver's; with `faults` it may arrive damaged."""

    def __init__(self, line, *, timeout_frames, faults=None):
        self.line, self.timeout_frames, self.faults = line, timeout_frames, faults

    def write(self, data):
        data = bytes(data)
        resume(self.line.send)(self.faults.apply("host->board", data) if self.faults else data)
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
    # A frame cut off in the middle, then a break: connect() must still find a clean board.
    port.write(frame(1, ord("A"), b"\x05\x12\x34\x56"))
    descriptor = board.connect()
    out["descriptor"] = dataclasses.asdict(descriptor)
    # A well-formed frame with an unknown command is refused with an error reply; the driver,
    # which meets that error while it waits for the descriptor, sends its frame again.
    port.write(frame(7, ord("Z"), b"\x00"))
    out["identify_after_error"] = dataclasses.asdict(board.identify())
    out["stats_after_error"] = board.stats.as_dict()
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
    out["stats"] = board.stats.as_dict()
    return out


def model_session(port, stim):
    """A model accelerator's host side: connect (break, identify, the model's hash checked), then
    images in, logits out, batch by batch, as `python -m fpga run --data` does on a board."""
    from spec.graph_model import model_config_from_dict
    board = ModelBoard(port, model_config_from_dict(stim["config"]), weights=stim.get("weights"))
    if port.faults:
        port.faults.start_session()
    descriptor = board.connect()
    out = {"descriptor": dataclasses.asdict(descriptor)}
    out["logits"] = board.run_images(np.array(stim["images"], dtype=np.int64)).tolist()
    out["bytes"] = [board.bytes_sent, board.bytes_received]
    out["stats"] = board.stats.as_dict()
    out["faults"] = [list(f) for f in port.faults.log] if port.faults else []
    return out


def random_layer(config, rng, out_features, in_features, batch):
    lo, hi = config.weight_range
    w = rng.integers(lo, hi + 1, size=(out_features, in_features))
    w[rng.random(w.shape) >= 0.4] = 0
    lo, hi = config.act_range
    x = rng.integers(lo, hi + 1, size=(batch, in_features))
    return combine(w, config.alpha, 0.5), x


def fault_campaign(port, stim, faults):
    """Sessions of random layers over a damaging line. A session connects (break, identify) and
    runs its layer; it ends correct (bit-exact with the golden model), in a clear error
    (HostLinkError) or wrong. Each records the faults injected while it ran."""
    config = ArrayConfig.from_dict(stim["config"])
    campaign = stim["faults"]
    rng = np.random.default_rng(campaign["seed"])
    sessions, totals = [], {}
    for _ in range(campaign["sessions"]):
        board = Board(port, config, retries=campaign["retries"])
        layer, x = random_layer(config, rng, *campaign["shape"])
        first = len(faults.log)
        faults.start_session()
        try:
            board.connect()
            y = board.run_layer(layer, x)
            expected = reference_layer(layer.unpack(), x, config.acc_width)
            outcome, detail = ("correct", None) if np.array_equal(y, expected) else ("wrong", None)
        except HostLinkError as e:
            outcome, detail = "clear_error", str(e)
        sessions.append({"faults": [list(f) for f in faults.log[first:]], "outcome": outcome, "error": detail})
        for key, value in board.stats.as_dict().items():
            if isinstance(value, dict):
                bucket = totals.setdefault(key, {})
                for name, n in value.items():
                    bucket[name] = bucket.get(name, 0) + n
            else:
                totals[key] = totals.get(key, 0) + value
    return {"sessions": sessions, "stats": totals}


@cocotb.test()
async def hostlink_test(dut):
    with open(os.environ["SPARSEGEN_STIMULUS"]) as f:
        stim = json.load(f)
    report_path = os.environ["SPARSEGEN_REPORT"]
    bit_ps = round(stim["divisor"] * CLOCK_PS * stim["skew"])
    campaign = stim.get("faults")
    faults = None
    if campaign:
        faults = FaultInjector(seed=campaign["seed"], probability=campaign["probability"],
                               kinds=campaign["kinds"], directions=campaign["directions"],
                               limit=campaign["limit"])
    line = Line(dut, bit_ps, faults)

    cocotb.start_soon(Clock(dut.clk, CLOCK_PS, unit="ps").start())
    dut.rx.value = 1
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    cocotb.start_soon(line.monitor())

    port = SimulatedSerial(line, timeout_frames=stim["timeout_frames"], faults=faults)
    start = time.perf_counter()
    error = None
    try:
        if "images" in stim:
            report = await bridge(model_session)(port, stim)
        elif campaign:
            report = await bridge(fault_campaign)(port, stim, faults)
        else:
            report = await bridge(session)(port, stim)
    except HostLinkError as e:
        report, error = {}, f"host driver: {e}"
    report.update(error=error, framing_errors=line.framing_errors, sim_seconds=time.perf_counter() - start,
                  sim_time_ns=get_sim_time("ns"))
    with open(report_path, "w") as f:
        json.dump(report, f)
    assert error is None, error
