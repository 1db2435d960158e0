"""Host driver of the board's UART link: load weights, stream activations, read results.

Written from the protocol description (docs/formats.md, "The host link protocol", version 3), not from
hdl/, so that a disagreement between the two shows up in the end-to-end simulation instead of hiding in
both. Every frame, both ways, is 0xA5 seq kind body crc_hi crc_lo, with a CRC-16/CCITT-FALSE of the
bytes between 0xA5 and the CRC:

  host -> board   'I' 0                    identify                 -> 'D' 20-byte descriptor
                  'W' n, n weight beats    (beat = ceil(width / 8)   -> 'K'
                  'A' n, n activation beats bytes, little endian)    -> 'K'
                  'R' 0                    read a result            -> 'R' result beat, or 'N' none yet
                  break                    reset the link and the array
  board -> host   'E' code                 the frame was rejected, nothing of it applied

The driver sends a frame and waits for the reply whose sequence number is the frame's. It ignores
damaged bytes and frames (bad CRC, unknown kind: it hunts for the next 0xA5), and replies that carry
another sequence number (late or repeated ones). After an error reply or a timeout (no usable
reply in time), it waits for the line to be quiet (one read timeout of the port, longer than the board's
frame timeout), drops what arrived, and sends the same frame again, at most `retries` times: the
board applies a frame once and answers a repeat as the first time, so sending again is always safe.
A read ('R') with a new sequence number acknowledges the previous result, so results are neither
lost nor taken twice. The line has no flow control: the driver keeps at most `credits` emitting
activation beats whose results it has not read, so the board's result FIFO can always hold them.

`Board` works over any object with pyserial's interface (`write`, `read(n)` returning fewer bytes on
timeout, and for `reset` also `send_break` and `reset_input_buffer`): a `serial.Serial`, or the
simulated line of the cocotb testbench (sim/tb_hostlink.py).
"""

import collections
import dataclasses
import time

import numpy as np

from software.packing import beats
from software.packing.colcomb import combine
from software.golden.array import reference_layer, truncate_activations
from software.packing.schedule import schedule_layer

PROTOCOL_VERSION = 5
START = 0xA5
MAGIC = b"SG"
DESCRIPTOR_BYTES = 20
IDENTIFY, WEIGHTS, ACTIVATIONS, READ = (ord(c) for c in "IWAR")
ACK, NONE, DESCRIPTOR, RESULT, ERROR = (ord(c) for c in "KNDRE")
ERRORS = {1: "bad CRC", 2: "bad beat count", 3: "unknown command", 4: "frame cut off (line went quiet)",
          5: "no room in the frame buffer", 6: "receive overrun (bytes were lost)", 7: "framing error (bad stop bit)"}
EXPECTED = {IDENTIFY: {DESCRIPTOR}, WEIGHTS: {ACK}, ACTIVATIONS: {ACK}, READ: {RESULT, NONE}}
DEFAULT_RETRIES = 8
MAX_EMPTY_READS = 10_000      # 'N' replies in a row before the driver gives up on a result
QUIET_READS = 1_000           # reads that may still return bytes while the driver waits for quiet


class HostLinkError(RuntimeError):
    """The board did not answer as the protocol says (no valid reply after the retries, an error
    that retrying does not cure, a wrong configuration)."""


def beat_bytes(width):
    return (width + 7) // 8


def _crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR).
    Over a frame's bytes after 0xA5 including its CRC (most significant byte first), it is 0."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


def frame(seq, kind, body=b""):
    """0xA5 seq kind body crc_hi crc_lo (a host frame's body starts with its beat count)."""
    content = bytes([seq & 0xFF, kind]) + bytes(body)
    return bytes([START]) + content + crc16(content).to_bytes(2, "big")


@dataclasses.dataclass
class LinkStats:
    """What the driver met on the line (all zero on a clean line, apart from `frames`)."""

    frames: int = 0                  # frames sent, first attempts
    retries: int = 0                 # frames sent again
    timeouts: int = 0                # waits for a reply that ended with nothing usable
    error_replies: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # by code
    damaged_replies: int = 0         # reply frames dropped for a bad CRC or an unknown kind
    skipped_bytes: int = 0           # bytes outside any frame (garbage before a 0xA5)
    stale_replies: int = 0           # valid replies to an earlier frame (late or repeated), ignored

    def as_dict(self):
        data = dataclasses.asdict(self)
        data["error_replies"] = {ERRORS.get(code, str(code)): n for code, n in sorted(self.error_replies.items())}
        return data


def _descriptor_bytes(data, size, magic, what):
    """A 'D' reply's bytes, checked to be `size` long, to start with `magic` and to speak this
    driver's protocol version."""
    data = bytes(data)
    if len(data) != size or data[:2] != magic:
        raise HostLinkError(f"not a sparsegen {what}: descriptor {data[:20].hex()}")
    if data[2] != PROTOCOL_VERSION:
        raise HostLinkError(f"board speaks protocol version {data[2]}, this driver {PROTOCOL_VERSION}")
    return data


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """What the board says it is (its 'D' reply)."""

    size = DESCRIPTOR_BYTES

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
    mac: str                 # "int", "tq" or "tq-serial"
    weight_terms: int | None # term budgets of a TQ board, None for integer cells
    data_terms: int | None
    max_weight_beats: int    # beats one frame may carry
    max_act_beats: int
    frame_timeout: int       # byte times of quiet that end a frame on the board

    @classmethod
    def parse(cls, data):
        data = _descriptor_bytes(data, DESCRIPTOR_BYTES, MAGIC, "board")
        flags = data[9]
        descriptor = cls(
            version=data[2], rows=data[3] + 1, cols=data[4] + 1, alpha=data[5] + 1,
            act_width=data[6], weight_width=data[7], acc_width=data[8],
            act_signed=bool(flags & 1), weight_signed=bool(flags & 2), double_buffer=bool(flags & 4),
            max_batch=int.from_bytes(data[10:12], "little") + 1,
            credits=int.from_bytes(data[12:14], "little"), mac=("tq-serial" if flags & 16 else "tq") if flags & 8 else "int",
            weight_terms=data[14] if flags & 8 else None, data_terms=data[15] if flags & 8 else None,
            max_weight_beats=data[16], max_act_beats=data[17], frame_timeout=int.from_bytes(data[18:20], "little"))
        if not (descriptor.credits and descriptor.max_weight_beats and descriptor.max_act_beats):
            raise HostLinkError(f"the board's descriptor allows no results or no beats per frame: {data.hex()}")
        return descriptor

    def mismatches(self, config):
        """Fields where the board differs from `config` (an ArrayConfig), as 'name: board vs config'."""
        names = ("rows", "cols", "alpha", "act_width", "weight_width", "acc_width", "act_signed",
                 "weight_signed", "double_buffer", "max_batch", "mac", "weight_terms", "data_terms")
        return [f"{n}: board {getattr(self, n)} vs configuration {getattr(config, n)}"
                for n in names if getattr(self, n) != getattr(config, n)]


class Board:
    """The array at the other end of a serial port.

    >>> board = Board(serial.Serial("/dev/ttyUSB1", 115200, timeout=0.5), config)
    >>> board.connect()                       # break, identify, check the configuration
    >>> y = board.run_layer(layer, x)         # N x F integer outputs

    After a HostLinkError the board's state is unknown: connect() again (it resets the board).
    """

    descriptor_class = Descriptor
    expected = "the configured array"       # for the message when the board is another

    def _beat_bytes(self, config):
        """Bytes of a weight, an activation and a result beat."""
        return (beat_bytes(config.weight_beat_width), beat_bytes(config.activation_beat_width),
                beat_bytes(config.result_beat_width))

    def _result(self, word):
        return beats.result_values(self.config, word)

    def __init__(self, port, config, *, retries=DEFAULT_RETRIES):
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        self.port = port
        self.config = config
        self.retries = retries
        self.descriptor = None
        self.credits = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.stats = LinkStats()
        self._weight_bytes, self._act_bytes, self._result_bytes = self._beat_bytes(config)
        self._body_bytes = {ACK: 0, NONE: 0, DESCRIPTOR: self.descriptor_class.size, RESULT: self._result_bytes,
                            ERROR: 1}
        self._received = bytearray()       # bytes read from the port, not yet parsed
        self._seq = 0
        self._results = []
        self._outstanding = 0

    # Line level.

    def _write(self, data):
        data = bytes(data)
        written = self.port.write(data)
        if written is not None and written != len(data):
            raise HostLinkError(f"wrote {written} of {len(data)} bytes")
        self.bytes_sent += len(data)

    def _fill(self, n):
        """Read up to `n` more bytes into the parse buffer; False on a timeout with nothing."""
        chunk = self.port.read(n)
        if not chunk:
            return False
        self._received += chunk
        self.bytes_received += len(chunk)
        return True

    def _next_reply(self):
        """The next reply frame whose CRC checks, as (seq, kind, body), hunting past damaged bytes
        and frames; None if the line goes quiet first."""
        buf = self._received
        while True:
            start = buf.find(START)
            if start < 0:
                self.stats.skipped_bytes += len(buf)
                buf.clear()
                if not self._fill(1):
                    return None
                continue
            if start:
                self.stats.skipped_bytes += start
                del buf[:start]
            if len(buf) < 3:
                if not self._fill(3 - len(buf)):
                    return None
                continue
            body = self._body_bytes.get(buf[2])
            if body is None:                          # not a reply's kind: not a frame start
                self.stats.damaged_replies += 1
                del buf[0]
                continue
            size = 3 + body + 2
            if len(buf) < size:
                if not self._fill(size - len(buf)):
                    return None
                continue
            if crc16(buf[1:size]) != 0:               # damaged, or a 0xA5 inside another frame
                self.stats.damaged_replies += 1
                del buf[0]
                continue
            seq, kind, data = buf[1], buf[2], bytes(buf[3:size - 2])
            del buf[:size]
            return seq, kind, data

    def _quiet(self):
        """Wait until the board has been silent for a whole read timeout, dropping what arrives:
        the board then has finished any reply and, as the host sent nothing either, has given up
        any frame it was in the middle of."""
        for _ in range(QUIET_READS):
            chunk = self.port.read(256)
            if not chunk:
                self._received.clear()
                return
            self.bytes_received += len(chunk)
            self.stats.skipped_bytes += len(chunk)
        raise HostLinkError("the board does not stop sending")

    def _transact(self, command, body=b""):
        """Send one frame until its reply arrives; returns (kind, body) of the reply."""
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        data = frame(seq, command, body)
        self.stats.frames += 1
        problem = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                self._quiet()
            self._write(data)
            while True:
                reply = self._next_reply()
                if reply is None:
                    self.stats.timeouts += 1
                    problem = "no reply"
                    break
                reply_seq, kind, reply_body = reply
                if kind == ERROR:
                    # Whatever frame it names, something of ours may have been lost: send again.
                    code = reply_body[0]
                    self.stats.error_replies[code] += 1
                    problem = f"board reports {ERRORS.get(code, f'error {code}')}"
                    break
                if reply_seq != seq:
                    self.stats.stale_replies += 1
                    continue
                if kind not in EXPECTED[command]:
                    raise HostLinkError(f"the board answered {chr(kind)!r} to {chr(command)!r} frame {seq}")
                return kind, reply_body
        raise HostLinkError(f"{chr(command)!r} frame {seq}: no valid reply after {self.retries} retries "
                            f"(last: {problem})")

    # Commands.

    def reset(self, break_seconds=0.05):
        """Reset the link and the array with a break; discard anything received before it."""
        self.port.send_break(break_seconds)
        self.port.reset_input_buffer()
        self._received.clear()
        self._results, self._outstanding = [], 0

    def identify(self):
        _, body = self._transact(IDENTIFY, b"\x00")
        return self.descriptor_class.parse(body)

    def connect(self):
        """Reset the board, check that it is the configured array, and learn its credits."""
        self.reset()
        descriptor = self.identify()
        wrong = descriptor.mismatches(self.config)
        if wrong:
            raise HostLinkError(f"the board is not {self.expected}: " + "; ".join(wrong))
        self.descriptor = descriptor
        self.credits = descriptor.credits
        return descriptor

    def _require_connected(self):
        if self.descriptor is None:
            raise HostLinkError("connect() first: the driver needs the board's credits and frame sizes")

    def _send_beats(self, command, words, nbytes):
        payload = b"".join(int(w).to_bytes(nbytes, "little") for w in words)
        self._transact(command, bytes([len(words)]) + payload)

    def _read_result(self):
        """Read one result (polling while the array has not produced it yet)."""
        for _ in range(MAX_EMPTY_READS):
            kind, body = self._transact(READ, b"\x00")
            if kind == RESULT:
                self._results.append(self._result(int.from_bytes(body, "little")))
                self._outstanding -= 1
                return
        raise HostLinkError(f"the board produced no result in {MAX_EMPTY_READS} reads")

    def send_weights(self, words):
        self._require_connected()
        step = self.descriptor.max_weight_beats
        for start in range(0, len(words), step):
            self._send_beats(WEIGHTS, words[start:start + step], self._weight_bytes)

    def send_activations(self, words, *, emitting):
        """Send activation beats, `emitting` of which produce a result, keeping within the credits."""
        self._require_connected()
        step = self.descriptor.max_act_beats
        if emitting:
            step = min(step, self.credits)
        sent = 0
        while sent < len(words):
            n = min(step, len(words) - sent)
            while emitting and self._outstanding + n > self.credits:
                self._read_result()
            self._send_beats(ACTIVATIONS, words[sent:sent + n], self._act_bytes)
            if emitting:
                self._outstanding += n
            sent += n

    def take_results(self):
        """Read every outstanding result; returns all results since the last call (n x R)."""
        while self._outstanding > 0:
            self._read_result()
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


MODEL_MAGIC = b"SM"
MODEL_DESCRIPTOR_BYTES = 52


@dataclasses.dataclass(frozen=True)
class ModelDescriptor:
    """What a model accelerator says it is (its 'D' reply): the array, the batch, the model's
    shape and the SHA-256 of the packed model it holds."""

    size = MODEL_DESCRIPTOR_BYTES
    credits = 0          # the accelerator holds its logits until read: the host needs no credits

    version: int
    rows: int
    cols: int
    alpha: int
    act_width: int
    logit_width: int
    batch: int
    in_features: int
    out_features: int
    logit_row_blocks: int
    max_act_beats: int
    max_weight_beats: int        # 0: the weights are on the chip; else the host loads them after a reset
    frame_timeout: int
    model_sha256: str

    @classmethod
    def parse(cls, data):
        data = _descriptor_bytes(data, MODEL_DESCRIPTOR_BYTES, MODEL_MAGIC, "model accelerator")
        u16 = lambda at: int.from_bytes(data[at:at + 2], "little")  # noqa: E731
        descriptor = cls(version=data[2], rows=data[3] + 1, cols=data[4] + 1, alpha=data[5] + 1, act_width=data[6],
                         logit_width=data[7], batch=u16(8) + 1, in_features=u16(10), out_features=u16(12),
                         logit_row_blocks=u16(14), max_act_beats=data[16], max_weight_beats=data[17],
                         frame_timeout=u16(18),
                         model_sha256=data[20:52].hex())
        if not descriptor.max_act_beats:
            raise HostLinkError(f"the board's descriptor allows no beats per frame: {data.hex()}")
        return descriptor

    def mismatches(self, config):
        """Fields where the board differs from `config` (a spec.model.ModelConfig)."""
        expected = {"rows": config.rows, "cols": config.cols, "alpha": config.alpha, "act_width": config.act_width,
                    "logit_width": config.logit_width, "batch": config.batch, "in_features": config.in_features,
                    "out_features": config.out_features,
                    "logit_row_blocks": config.logit_blocks}
        wrong = [f"{n}: board {getattr(self, n)} vs configuration {v}" for n, v in expected.items()
                 if getattr(self, n) != v]
        if bool(self.max_weight_beats) != config.weights_loaded:
            wrong.append("weights: board " + ("loads them over the link" if self.max_weight_beats else "holds them")
                         + " vs configuration " + ("loaded over the link" if config.weights_loaded else "on the chip"))
        if self.model_sha256 != config.model_sha256:
            wrong.insert(0, f"the board holds model {self.model_sha256[:16]}..., not {config.model_sha256[:16]}...")
        return wrong


class ModelBoard(Board):
    """A model accelerator (python -m fpga build --model) at the other end of a serial port:
    pixels in 'A' frames, logits read with 'R' frames, batch by batch.

    >>> board = ModelBoard(serial.Serial("/dev/ttyUSB1", 115200, timeout=0.5), config,
    ...                    weights=program.weight_beats)
    >>> board.connect()                       # break, identify, check it holds this model
    >>> logits = board.run_images(x_int)      # images x out_features

    `weights`: the compiled program's weight beats (software.packing.program), needed by a board
    whose weights are loaded at start-up (`config.weights_loaded`): connect() sends them after its
    reset, as every reset drops them.
    """

    descriptor_class = ModelDescriptor
    expected = "this model's accelerator"

    def __init__(self, port, config, *, weights=None, retries=DEFAULT_RETRIES):
        if config.weights_loaded and (weights is None or len(weights) != config.weight_beats):
            raise ValueError(f"this accelerator loads its weights at start-up: give its program's "
                             f"{config.weight_beats} weight beats")
        super().__init__(port, config, retries=retries)
        self.weights = weights

    def _beat_bytes(self, config):
        weight = beat_bytes(config.array.weight_beat_width) if config.weights_loaded else 1
        return weight, beat_bytes(config.image_beat_width), beat_bytes(config.logit_beat_width)

    def connect(self):
        """Reset the board, check that it holds this model and, if it loads its weights at start-up, send them."""
        descriptor = super().connect()
        if descriptor.max_weight_beats:
            for start in range(0, len(self.weights), descriptor.max_weight_beats):
                self._send_beats(WEIGHTS, self.weights[start:start + descriptor.max_weight_beats], self._weight_bytes)
        return descriptor

    def _result(self, word):
        return beats.unpack_fields(word, self.config.logit_width, self.config.rows, signed=True)

    def run_images(self, x_int, batch=None):
        """Logits (images x out_features) of integer images (images x in_features pixels), sent
        `batch` images at a time (default, and at most, the board's batch)."""
        self._require_connected()
        cfg = self.config
        x_int = np.asarray(x_int, dtype=np.int64).reshape(len(x_int), -1)
        if x_int.shape[1] != cfg.in_features or x_int.min(initial=0) < 0 or x_int.max(initial=0) >> cfg.act_width:
            raise HostLinkError(f"images must be n x {cfg.in_features} pixels in [0, {(1 << cfg.act_width) - 1}]")
        blocks = cfg.logit_blocks
        out = np.zeros((len(x_int), blocks * cfg.rows), dtype=np.int64)
        step = self.descriptor.max_act_beats
        size = cfg.batch if batch is None else batch
        if not 1 <= size <= cfg.batch:
            raise HostLinkError(f"a batch holds 1 to {cfg.batch} images, not {size}")
        for start in range(0, len(x_int), size):
            batch = x_int[start:start + size]
            words = [int(p) for p in batch.reshape(-1)]
            words[-1] |= 1 << cfg.act_width               # `last`: the batch's final pixel
            for at in range(0, len(words), step):
                self._send_beats(ACTIVATIONS, words[at:at + step], self._act_bytes)
            self._outstanding += blocks * len(batch)
            results = self.take_results().reshape(blocks, len(batch), cfg.rows)
            out[start:start + len(batch)] = results.transpose(1, 0, 2).reshape(len(batch), -1)
        return out[:, :cfg.out_features]


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
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive number of input vectors, not {batch!r}")
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


def open_serial(device, baud=115200, *, timeout=0.25):
    """A pyserial port for `Board` (pyserial is imported only here: `pip install pyserial`).

    `timeout` bounds the wait for a reply (a reply follows its frame within milliseconds) and is
    the quiet time the driver waits before sending a frame again: keep it well above the board's
    frame timeout (64 byte times by default, 5.6 ms at 115200 baud)."""
    try:
        import serial
    except ImportError:
        raise HostLinkError("pyserial is not installed: pip install pyserial") from None
    return serial.Serial(device, baud, timeout=timeout)
