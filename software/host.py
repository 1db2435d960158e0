"""Host driver of the board's UART link: load weights, stream activations, read results.

Written from the protocol description (docs/formats.md, "The host link protocol", version 2), not from hdl/, so that a
disagreement between the two shows up in the end-to-end simulation instead of hiding in both:

  host -> board   'I'                      identify
                  'W' n:u16 n x beat       n weight beats      (beat = ceil(width / 8) bytes,
                  'A' n:u16 n x beat       n activation beats   little endian, manifest packing)
                  break                    reset the link and the array
  board -> host   'I' 16-byte descriptor   'S' 'G' version rows-1 cols-1 alpha-1 act_width
                                           weight_width acc_width flags max_batch-1:u16 credits:u16
                                           weight_terms data_terms (flags: bit 0 activations
                                           signed, 1 weights signed, 2 double buffered, 3 TQ)
                  'R' result beat          one per activation beat with `emit`, in order
                  'E' code detail          1 unknown command, 2 receive overrun, 3 framing error

The line has no flow control: the driver keeps at most `credits` emitting activation beats whose
results have not arrived yet, so the board's transmit buffer can always hold them.

`Board` works over any object with pyserial's interface (`write`, `read(n)` returning fewer bytes on
timeout, and for `reset` also `send_break` and `reset_input_buffer`): a `serial.Serial`, or the
simulated line of the cocotb testbench (sim/tb_hostlink.py).
"""

import dataclasses
import time

import numpy as np

from software.packing import beats
from software.packing.colcomb import combine
from software.golden.array import reference_layer, truncate_activations
from software.packing.schedule import schedule_layer

PROTOCOL_VERSION = 2
MAGIC = b"SG"
DESCRIPTOR_BYTES = 16
MAX_COMMAND_BEATS = 0xFFFF
ERRORS = {1: "unknown command", 2: "receive overrun (bytes were lost)", 3: "framing error (bad stop bit)"}


class HostLinkError(RuntimeError):
    """The board did not answer as the protocol says (timeout, error reply, wrong configuration)."""


def beat_bytes(width):
    return (width + 7) // 8


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """What the board says it is (its answer to 'I')."""

    version: int
    rows: int
    cols: int
    alpha: int
    act_width: int
    weight_width: int
    acc_width: int
    act_signed: bool
    weight_signed: bool
    double_buffer: bool
    max_batch: int
    credits: int
    mac: str                 # "int" or "tq"
    weight_terms: int | None # term budgets of a TQ board, None for integer cells
    data_terms: int | None

    @classmethod
    def parse(cls, data):
        data = bytes(data)
        if len(data) != DESCRIPTOR_BYTES or data[:2] != MAGIC:
            raise HostLinkError(f"not a sparsegen board: descriptor {data.hex()}")
        if data[2] != PROTOCOL_VERSION:
            raise HostLinkError(f"board speaks protocol version {data[2]}, this driver {PROTOCOL_VERSION}")
        flags = data[9]
        return cls(version=data[2], rows=data[3] + 1, cols=data[4] + 1, alpha=data[5] + 1,
                   act_width=data[6], weight_width=data[7], acc_width=data[8],
                   act_signed=bool(flags & 1), weight_signed=bool(flags & 2), double_buffer=bool(flags & 4),
                   max_batch=int.from_bytes(data[10:12], "little") + 1,
                   credits=int.from_bytes(data[12:14], "little"), mac="tq" if flags & 8 else "int",
                   weight_terms=data[14] if flags & 8 else None, data_terms=data[15] if flags & 8 else None)

    def mismatches(self, config):
        """Fields where the board differs from `config` (an ArrayConfig), as 'name: board vs config'."""
        names = ("rows", "cols", "alpha", "act_width", "weight_width", "acc_width", "act_signed",
                 "weight_signed", "double_buffer", "max_batch", "mac", "weight_terms", "data_terms")
        return [f"{n}: board {getattr(self, n)} vs configuration {getattr(config, n)}"
                for n in names if getattr(self, n) != getattr(config, n)]


class Board:
    """The accelerator at the other end of a serial port.

    >>> board = Board(serial.Serial("/dev/ttyUSB1", 115200, timeout=2), config)
    >>> board.connect()                       # break, identify, check the configuration
    >>> y = board.run_layer(layer, x)         # N x F integer outputs
    """

    def __init__(self, port, config):
        self.port = port
        self.config = config
        self.credits = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self._weight_bytes = beat_bytes(config.weight_beat_width)
        self._act_bytes = beat_bytes(config.activation_beat_width)
        self._result_bytes = beat_bytes(config.result_beat_width)
        self._results = []
        self._outstanding = 0

    # Line level.

    def _write(self, data):
        data = bytes(data)
        written = self.port.write(data)
        if written is not None and written != len(data):
            raise HostLinkError(f"wrote {written} of {len(data)} bytes")
        self.bytes_sent += len(data)

    def _read(self, n, what):
        data = b""
        while len(data) < n:
            chunk = self.port.read(n - len(data))
            if not chunk:
                raise HostLinkError(f"timed out waiting for {what}: got {len(data)} of {n} bytes")
            data += chunk
        self.bytes_received += n
        return data

    def _reply(self):
        """Read one reply; results are queued, a descriptor is returned, errors raise."""
        tag = self._read(1, "a reply")[0]
        if tag == ord("R"):
            word = int.from_bytes(self._read(self._result_bytes, "a result"), "little")
            self._results.append(beats.result_values(self.config, word))
            self._outstanding -= 1
            return None
        if tag == ord("I"):
            return Descriptor.parse(self._read(DESCRIPTOR_BYTES, "the descriptor"))
        if tag == ord("E"):
            code, detail = self._read(2, "an error reply")
            text = ERRORS.get(code, f"error {code}")
            if code == 1:
                text += f" {detail:#04x}"
            raise HostLinkError(f"board reports {text}")
        raise HostLinkError(f"unexpected reply byte {tag:#04x}")

    # Commands.

    def reset(self, break_seconds=0.05):
        """Reset the link and the array with a break; discard anything received before it."""
        self.port.send_break(break_seconds)
        self.port.reset_input_buffer()
        self._results, self._outstanding = [], 0

    def identify(self):
        self._write(b"I")
        while True:
            descriptor = self._reply()
            if descriptor is not None:
                return descriptor

    def connect(self):
        """Reset the board, check that it is the configured array, and learn its credits."""
        self.reset()
        descriptor = self.identify()
        wrong = descriptor.mismatches(self.config)
        if wrong:
            raise HostLinkError("the board is not the configured array: " + "; ".join(wrong))
        self.credits = descriptor.credits
        return descriptor

    def _command(self, opcode, words, nbytes):
        for start in range(0, len(words), MAX_COMMAND_BEATS):
            chunk = words[start:start + MAX_COMMAND_BEATS]
            payload = b"".join(int(w).to_bytes(nbytes, "little") for w in chunk)
            self._write(bytes([ord(opcode)]) + len(chunk).to_bytes(2, "little") + payload)

    def send_weights(self, words):
        self._command("W", words, self._weight_bytes)

    def send_activations(self, words, *, emitting):
        """Send activation beats, `emitting` of which produce a result, keeping within the credits."""
        if emitting and self.credits is None:
            raise HostLinkError("connect() first: the driver needs the board's credits")
        if not emitting:
            self._command("A", words, self._act_bytes)
            return
        sent = 0
        while sent < len(words):
            free = self.credits - self._outstanding
            # Wait for half the credits (or all that is left) to free up, so that commands stay long.
            want = min(len(words) - sent, max(1, self.credits // 2))
            if free < want:
                self._reply()
                continue
            n = min(free, len(words) - sent)
            self._command("A", words[sent:sent + n], self._act_bytes)
            self._outstanding += n
            sent += n

    def take_results(self):
        """Wait for every outstanding result; returns all results since the last call (n x R)."""
        while self._outstanding > 0:
            self._reply()
        results, self._results = self._results, []
        return np.array(results, dtype=np.int64).reshape(-1, self.config.rows)

    def run_schedule(self, schedule):
        """Run a scheduled layer (software.packing.schedule) in stream order; returns the result beats."""
        if schedule.config != self.config:
            raise HostLinkError("the schedule is for a different array configuration")
        for tile in schedule.tiles:
            weight_words, act_words = beats.tile_beats(self.config, tile)
            self.send_weights(weight_words)
            self.send_activations(act_words, emitting=tile.emit)
        return self.take_results()

    def run_layer(self, layer, x):
        """y = x W^T of a packed layer (software.packing.colcomb) on the board: N x F integers."""
        schedule = schedule_layer(self.config, layer, x)
        return schedule.assemble(self.run_schedule(schedule))


def run_model(board, model, x_int):
    """A packed model's outputs (``software.packfile.load``: a layer graph or a chain) for integer inputs, with
    every matrix multiplied on the board and everything else on the host; the model's origin does not matter."""
    if board.config != model.config:
        raise HostLinkError(f"the board's array {board.config.design_name} is not the model's "
                            f"{model.config.design_name}")
    return model.run_with(lambda index, layer, vectors: board.run_layer(layer.packing, vectors), x_int)


@dataclasses.dataclass(frozen=True)
class SelfTestResult:
    ok: bool
    out_features: int
    in_features: int
    batch: int
    mismatches: int          # output elements that differ from the golden model
    seconds: float
    bytes_sent: int
    bytes_received: int

    def describe(self):
        verdict = "PASS" if self.ok else f"FAIL ({self.mismatches} outputs differ from the golden model)"
        rate = (self.bytes_sent + self.bytes_received) / self.seconds if self.seconds else 0.0
        return (f"{self.batch} x {self.in_features} -> {self.out_features} layer on the board: {verdict}; "
                f"{self.bytes_sent} bytes sent, {self.bytes_received} received in {self.seconds:.2f} s "
                f"({rate:.0f} B/s)")


def self_test(board, *, batch=16, seed=0, out_features=None, in_features=None, density=0.3, gamma=0.5):
    """Run a random column-combined layer that spans several tiles on a connected `board` and
    compare the outputs with the plain matrix product (on a TQ board: of the term-quantized
    weights and activations)."""
    cfg = board.config
    rng = np.random.default_rng(seed)
    out_features = out_features or 2 * cfg.rows + 1
    in_features = in_features or 2 * cfg.cols * cfg.alpha + 3
    lo, hi = cfg.weight_range
    w = rng.integers(lo, hi + 1, size=(out_features, in_features))
    w[rng.random(w.shape) >= density] = 0
    lo, hi = cfg.act_range
    x = rng.integers(lo, hi + 1, size=(batch, in_features))
    if cfg.mac_style.uses_terms:
        # A TQ cell holds `weight_terms` terms per weight: keep each weight's largest ones.
        import torch
        from software.frontend.termquant import term_quantize_weights
        w = term_quantize_weights(torch.from_numpy(w), group=1, budget=cfg.weight_terms,
                                  bits=cfg.weight_width).numpy()
    layer = combine(w, cfg.alpha, gamma)
    sent, received = board.bytes_sent, board.bytes_received
    start = time.perf_counter()
    y = board.run_layer(layer, x)
    seconds = time.perf_counter() - start
    # A TQ array multiplies each activation's first `data_terms` terms only.
    x_used = truncate_activations(cfg, x) if cfg.mac_style.uses_terms else x
    mismatches = int(np.count_nonzero(y != reference_layer(layer.unpack(), x_used, cfg.acc_width)))
    return SelfTestResult(ok=mismatches == 0, out_features=out_features, in_features=in_features, batch=batch,
                          mismatches=mismatches, seconds=seconds, bytes_sent=board.bytes_sent - sent,
                          bytes_received=board.bytes_received - received)


def open_serial(device, baud=115200, *, timeout=2.0):
    """A pyserial port for `Board` (pyserial is imported only here: `pip install pyserial`)."""
    try:
        import serial
    except ImportError:
        raise HostLinkError("pyserial is not installed: pip install pyserial") from None
    return serial.Serial(device, baud, timeout=timeout)
