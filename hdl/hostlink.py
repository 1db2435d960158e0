"""The array behind a UART: framed, checked commands to load weights, stream activations and read results.

Protocol, version 5 (software/host.py implements the host side from docs/formats.md)
-----------------------------------------------------------------------------------
Serial line: 8 data bits, no parity, 1 stop bit. Multi-byte integers are little endian, except the
CRC. A beat is sent as ceil(width / 8) bytes, least significant byte first, with the bit packing of
the manifest (software/packing/beats.py) and zero padding in the top byte.

Every frame, both ways, is: 0xA5, a sequence number, a kind, a body, and a CRC-16/CCITT-FALSE
(polynomial 0x1021, initial value 0xFFFF, no reflection) of everything between 0xA5 and the CRC,
sent most significant byte first.

Host to board: 0xA5 seq command count body crc_hi crc_lo
  'I' count 0                    identify: answered with the descriptor.
  'W' count 1..max_weight_beats  `count` weight beats, in stream order (R per tile, row 0 first).
  'A' count 1..max_act_beats     `count` activation beats (data, last, clear, emit).
  'R' count 0                    read a result: answered with the oldest result not yet
                                 acknowledged, or 'N' if the array has not produced it yet.
  The host sends a frame and waits for its reply (or a timeout) before it sends the next; it
  numbers frames in sequence (mod 256) and sends a frame again with the same number after an error
  reply, a damaged reply or a timeout, having first waited for the line to be quiet (longer than
  the frame timeout) and dropped what it received meanwhile.
  A break (line low for at least one frame) resets the link and the array: partially received
  frames, loaded weights, accumulators, results and the last sequence number are dropped.
Board to host: 0xA5 seq kind body crc_hi crc_lo, `seq` being the number of the frame it answers:
  'K' (no body)                  a weight or activation frame was applied (or had been already).
  'N' (no body)                  no result yet.
  'D' descriptor (20 bytes)      'S' 'G' version rows-1 cols-1 alpha-1 act_width weight_width
                                 acc_width flags max_batch-1:u16 credits:u16 weight_terms
                                 data_terms max_weight_beats max_act_beats frame_timeout:u16,
                                 where flags bit 0 = activations signed, bit 1 = weights signed,
                                 bit 2 = double buffered, bit 3 = term-quantized cells (mac "tq": a
                                 weight beat holds term lists, see software/packing/beats.py), bit 4
                                 = with bit 3, term-serial cells (mac "tq-serial", same beats); the
                                 term budgets are 0 for integer cells; frame_timeout in byte times.
  'R' result beat                the oldest result the host has not acknowledged. A frame with a
                                 new sequence number acknowledges it (the host has moved on).
  'E' code                       the frame was rejected and nothing of it applied: 1 bad CRC,
                                 2 bad beat count, 3 unknown command, 4 the line went quiet in the
                                 middle of a frame, 5 no room in the frame buffer, 6 receive
                                 overrun, 7 framing error. After an error the board ignores the
                                 line until it has been quiet for `frame_timeout` byte times.

Applying once: a frame whose CRC checks and whose sequence number is the last accepted one is a
repeat (the host did not get the reply): it is answered as the first time ('K', the descriptor,
the same result or 'N') and not applied again. A weight or activation frame reaches the array only
after its CRC has checked (it waits in the frame buffer), so a damaged frame never feeds it.

Flow control: the host keeps at most `credits` emitting activation beats whose result it has not
read; the results then always fit the array's result FIFO, where they wait until acknowledged, and
the array never waits on its output.
Commands must follow the stream order of software/packing/schedule.py, or the array may wait for a
beat the host has not sent yet.
"""


from amaranth.hdl import (ClockDomain, ClockSignal, DomainRenamer, Module, Mux, ResetInserter, ResetSignal, Signal,
                          Value)
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .linkbuffers import FrameBuffer, power_of_two
from .linkframes import CMD_WEIGHTS, CRC_BYTES, PROTOCOL_VERSION, REPLY_HEADER_BYTES, FrameReceiver, ReplyEncoder
from .replicas import replica
from .streamhop import StreamHop, hops_for
from .systolic import SystolicArray
from .uart import UARTReceiver, UARTTransmitter, check_divisor
from spec.checks import positive_int

DESCRIPTOR_BYTES = 20
FRAME_BUFFER_OVERHEAD = 2        # the command and count bytes in front of a frame's beats
MAX_FRAME_BEATS = 255


SELECT_BYTE_LATENCY = 2


def select_byte(m, value, index, word_bytes=8):
    """Byte `index` of `value`, `SELECT_BYTE_LATENCY` clocks later: a word of `word_bytes` bytes
    is chosen into a register, then the byte in it (`word_bytes` a power of two)."""
    shift = power_of_two("word_bytes", word_bytes).bit_length() - 1
    words = -(-len(value) // (8 * word_bytes))
    padded = Signal(8 * word_bytes * words)
    word = Signal(8 * word_bytes, reset_less=True)
    byte_in_word = Signal(range(word_bytes), reset_less=True)
    byte = Signal(8, reset_less=True)
    m.d.comb += padded.eq(value)
    m.d.sync += [
        word.eq(padded.word_select(index >> shift, 8 * word_bytes)),
        byte_in_word.eq(index & (word_bytes - 1)),
        byte.eq(word.word_select(byte_in_word, 8)),
    ]
    return byte


def beat_bytes(width):
    """Bytes that carry a beat of `width` bits on the line."""
    return (width + 7) // 8


# Byte lanes of the command decoder's beat that one copy of the arriving byte drives.
LANES_PER_COPY = 8
# Registers between the byte stream and each copy, where the link's blocks are far apart
# (hdl/streamhop.py hops_for).
BYTE_HOPS = 2


class CommandDecoder(wiring.Component):
    """Turns the frame buffer's checked bytes (command, count, `count` beats, frame after frame)
    into weight beats and activation beats.

    Members
    -------
    bytes       : In(stream.Signature(8))
    weights     : Out(stream.Signature(weight_width))      flat beats, manifest packing
    activations : Out(stream.Signature(activation_width))

    `byte_hops`: registers between the byte stream and each lane's copy of the byte.
    """

    def __init__(self, *, weight_width, activation_width, byte_hops=1):
        self.weight_width = positive_int("weight_width", weight_width)
        self.activation_width = positive_int("activation_width", activation_width)
        self.byte_hops = positive_int("byte_hops", byte_hops)
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "weights": Out(stream.Signature(self.weight_width)),
            "activations": Out(stream.Signature(self.activation_width)),
        })

    def elaborate(self, platform):
        m = Module()
        n_weight, n_act = beat_bytes(self.weight_width), beat_bytes(self.activation_width)
        lanes = max(n_weight, n_act)
        # A beat of n bytes is assembled in the top n byte lanes, byte i in lane lanes - n + i
        # (so the last byte of every beat goes to the top lane). Each byte is written `byte_hops`
        # clocks after it arrives, from registers: no decision of the state machine reaches every
        # bit of a wide beat (the ULX3S 16x16's critical path was the shift of the whole beat). The byte
        # stream's ready and whether a byte is payload are registers (the ULX3S 16x16's critical
        # path ran from the state through the ready and a binary lane compare, 10.7 ns). The lanes
        # of a wide beat spread over the array's columns: the byte, whether it is payload and its
        # lane number are registered once per LANES_PER_COPY lanes (copies), each copy beside its
        # lanes, and a lane's write enable is decoded from its copy (the ULX3S 16x16's critical
        # paths ran from the byte stream's valid to the 64 lanes' write enables, 45 columns apart,
        # 15.8 ns, and from the ready to the enable of a one-hot lane register, 11.0 ns).
        beat = Signal(8 * lanes, reset_less=True)
        lane = Signal(range(lanes))              # the lane the next payload byte goes to
        ready = Signal(init=1)                   # the byte stream's ready: command, count, payload
        in_payload = Signal()                    # the state is "payload"
        is_weights = Signal()
        count = Signal(8)
        first_lane = Mux(is_weights, lanes - n_weight, lanes - n_act)
        byte = self.bytes.payload
        take = Signal()
        m.d.comb += [
            self.bytes.ready.eq(ready),
            take.eq(self.bytes.valid & ready),
            self.weights.payload.eq(beat[8 * (lanes - n_weight):]),
            self.activations.payload.eq(beat[8 * (lanes - n_act):]),
        ]
        # With two byte hops each copy is two registers from the byte stream, a chain of its own,
        # so that the placer can put a register halfway to lanes far from the decoder (a ULX3S
        # 16x16's critical path was the decoder's lane number -> a copy, 12.5 ns of routing and
        # no logic).
        for first in range(0, lanes, LANES_PER_COPY):
            copy = first // LANES_PER_COPY
            arrived, arrived_lane, payload_arrived = byte, lane, self.bytes.valid & in_payload
            for hop in range(self.byte_hops):
                where = f"hop{hop}" if self.byte_hops > 1 else "arrived"
                later = (replica(8, f"byte_{where}_{copy}"), replica(range(lanes), f"lane_{where}_{copy}"),
                         replica(1, f"payload_{where}_{copy}", init=0))
                m.d.sync += [later[0].eq(arrived), later[1].eq(arrived_lane), later[2].eq(payload_arrived)]
                arrived, arrived_lane, payload_arrived = later
            for k in range(first, min(first + LANES_PER_COPY, lanes)):
                with m.If(payload_arrived & (arrived_lane == k)):
                    m.d.sync += beat[8 * k:8 * (k + 1)].eq(arrived)

        settle = [f"settle_{hop}" for hop in range(self.byte_hops)] if self.byte_hops > 1 else ["settle"]
        with m.FSM():
            with m.State("command"):
                with m.If(take):
                    # The frame receiver lets only 'W' and 'A' frames with 1..255 beats through.
                    m.d.sync += is_weights.eq(byte == CMD_WEIGHTS)
                    m.next = "count"
            with m.State("count"):
                with m.If(take):
                    m.d.sync += [count.eq(byte), lane.eq(first_lane), in_payload.eq(1)]
                    m.next = "payload"
            with m.State("payload"):
                with m.If(take):
                    m.d.sync += lane.eq(lane + 1)
                    with m.If(lane == lanes - 1):
                        m.d.sync += [ready.eq(0), in_payload.eq(0)]
                        m.next = settle[0]
            # The last byte is on its way to its lane (`byte_hops` registers, then the lane's).
            for state, after in zip(settle, settle[1:]):
                with m.State(state):
                    m.next = after
            with m.State(settle[-1]):
                # The valid bits are registers (the array's handshake starts at registers).
                m.d.sync += [self.weights.valid.eq(is_weights), self.activations.valid.eq(~is_weights)]
                m.next = "deliver"
            with m.State("deliver"):
                # The array's ready reaches only the valid bits and the state: the counters move
                # a clock later (the iCEBreaker 4x4's critical path ran from it to their enables).
                with m.If((self.weights.valid & self.weights.ready) |
                          (self.activations.valid & self.activations.ready)):
                    m.d.sync += [self.weights.valid.eq(0), self.activations.valid.eq(0)]
                    m.next = "delivered"
            with m.State("delivered"):
                m.d.sync += [count.eq(count - 1), lane.eq(first_lane), ready.eq(1)]
                with m.If(count == 1):
                    m.next = "command"
                with m.Else():
                    m.d.sync += in_payload.eq(1)
                    m.next = "payload"
        return m


def result_frame_bytes(result_width):
    """Bytes of one 'R' reply: header, a result beat of `result_width` bits, CRC."""
    return REPLY_HEADER_BYTES + beat_bytes(result_width) + CRC_BYTES


def link_credits(config):
    """Result beats a host may have unread. They wait in the array's result FIFO until the host has
    acknowledged them, and the array takes any vector only while that FIFO has a free entry for
    it: one entry less than the FIFO's `result_buffer` keeps the array moving with every credit
    used (a non-emitting vector behind them still gets in)."""
    return min(config.result_buffer - 1, 0xFFFF)


def frame_beats(rx_buffer, width):
    """Beats of `width` bits that one frame may carry: the frame buffer holds a whole frame."""
    return min((rx_buffer - FRAME_BUFFER_OVERHEAD) // beat_bytes(width), MAX_FRAME_BEATS)


def link_descriptor(config, *, credits, max_weight_beats, max_act_beats, frame_timeout):
    """The 20 bytes of the 'D' reply (see the protocol above)."""
    tq = config.mac_style.uses_terms
    flags = (int(config.act_signed) | int(config.weight_signed) << 1 | int(config.double_buffer) << 2
             | int(tq) << 3 | int(config.mac == "tq-serial") << 4)
    return bytes([
        ord("S"), ord("G"), PROTOCOL_VERSION,
        config.rows - 1, config.cols - 1, config.alpha - 1,
        config.act_width, config.weight_width, config.acc_width, flags,
    ]) + (config.max_batch - 1).to_bytes(2, "little") + credits.to_bytes(2, "little") + bytes([
        config.weight_terms if tq else 0, config.data_terms if tq else 0, max_weight_beats, max_act_beats,
    ]) + frame_timeout.to_bytes(2, "little")


DEFAULT_BUFFER = 512        # bytes: one iCE40 block RAM


def link_buffer(name, value, least, what):
    """A buffer size: `value` (a power of two holding `least` bytes), or by default 512 bytes, or the
    smallest power of two that holds `least` if that is more."""
    if value is None:
        return max(DEFAULT_BUFFER, 1 << (least - 1).bit_length())
    value = power_of_two(name, value)
    if value < least:
        raise ValueError(f"{name} must hold {what} ({least} bytes), not {value}")
    return value


class HostLink(wiring.Component):
    """The systolic array (or another core) behind a UART speaking the protocol in this module's docstring.

    `config` is an ArrayConfig (or any object with its attributes); `divisor` is clocks per bit.
    `rx_buffer` bytes hold received frames until their CRC checks and the array takes them (a
    frame carries at most what fits): a power of two, by default 512 (a block RAM on an iCE40) or
    more if a beat needs it. Results wait in the array's result FIFO until the host has them (its
    `result_buffer` entries are the host's credits). A frame that stops for `frame_timeout` byte
    times is rejected.

    Members
    -------
    rx : In(1)   serial line from the host (idle high)
    tx : Out(1)  serial line to the host (idle high)
    """

    def __init__(self, config, *, divisor, rx_buffer=None, frame_timeout=64, dsp_cells=0, core=None,
                 descriptor=None, credits=None, hops=None):
        """`core`: the component behind the link, with `weights` and `activations` input streams
        and a `results` output stream (default: the systolic array of `config`, its first
        `dsp_cells` cells in DSP blocks). With another core, `descriptor(max_weight_beats,
        max_act_beats, frame_timeout)` gives the 'D' reply's bytes and `credits` the results a
        host may leave unread (hdl/accel/link.py: the model accelerator). `hops`: whether the
        decoder's beats cross to the core through stream hops (None: as the platform's family
        wants, hdl/streamhop.py hops_for)."""
        self.config = config
        self.hops = hops
        self.core = core if core is not None else SystolicArray(config, dsp_cells=dsp_cells)
        self.divisor = check_divisor(divisor)
        self.widths = {name: len(Value.cast(getattr(self.core, name).payload))
                       for name in ("weights", "activations", "results")}
        widest = max(beat_bytes(self.widths["weights"]), beat_bytes(self.widths["activations"]))
        self.rx_buffer = link_buffer("rx_buffer", rx_buffer, FRAME_BUFFER_OVERHEAD + widest,
                                     "a frame of one beat")
        self.frame_timeout = positive_int("frame_timeout", frame_timeout)
        if self.frame_timeout > 0xFFFF:
            raise ValueError(f"frame_timeout must be at most 65535 byte times, not {frame_timeout}")
        self.credits = link_credits(config) if credits is None else credits
        self.max_weight_beats = frame_beats(self.rx_buffer, self.widths["weights"])
        self.max_act_beats = frame_beats(self.rx_buffer, self.widths["activations"])
        if descriptor is None:
            self.descriptor = link_descriptor(config, credits=self.credits, max_weight_beats=self.max_weight_beats,
                                              max_act_beats=self.max_act_beats, frame_timeout=self.frame_timeout)
        else:
            self.descriptor = bytes(descriptor(self.max_weight_beats, self.max_act_beats, self.frame_timeout))
        self.result_frame_bytes = result_frame_bytes(self.widths["results"])
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        array = self.core
        widths = self.widths
        # The receiver is outside the reset it generates, so it can see the break end.
        m.submodules.receiver = receiver = UARTReceiver(divisor=self.divisor)
        m.d.comb += receiver.rx.eq(self.rx)

        # The blocks run in a domain of the same clock without a reset of its own: each block is
        # reset by a register of its own, set by the domain's reset or by a line break, so no
        # net from the board's reset or from the line reaches the resets of every block, and no
        # logic either (DESIGN.md §9; the ULX3S 16x16's critical path was the board reset's net
        # to the decoder, 16 ns of routing). A block leaves reset a clock after the receiver.
        # Only the blocks' state is reset; the array's datapath is reset-less. The registers are
        # identical, so they are replicas (hdl/replicas.py), which Yosys does not merge back into
        # one (merged, the ULX3S α = 8 15x15's critical path was one of them -> the decoder's
        # reset, 9.5 ns of routing).
        m.domains.blocks = ClockDomain("blocks", reset_less=True, local=True)
        m.d.comb += ClockSignal("blocks").eq(ClockSignal("sync"))

        def resettable(name, component):
            reset = replica(1, f"{name}_reset", init=1)
            m.d.sync += reset.eq(receiver.line_break | ResetSignal("sync", allow_reset_less=True))
            m.submodules[name] = DomainRenamer({"sync": "blocks"})(ResetInserter({"sync": reset})(component))
            return component

        frames = resettable("frames", FrameReceiver(
            weight_bytes=beat_bytes(widths["weights"]), activation_bytes=beat_bytes(widths["activations"]),
            max_weight_beats=self.max_weight_beats, max_activation_beats=self.max_act_beats,
            timeout_clocks=self.frame_timeout * 10 * self.divisor))
        frame_buffer = resettable("frame_buffer", FrameBuffer(depth=self.rx_buffer))
        hops = self.hops if self.hops is not None else hops_for(platform)
        decoder = resettable("decoder", CommandDecoder(weight_width=widths["weights"],
                                                       activation_width=widths["activations"],
                                                       byte_hops=BYTE_HOPS if hops else 1))
        resettable("array", array)
        result_bytes = beat_bytes(widths["results"])
        encoder = resettable("encoder", ReplyEncoder(result_bytes=result_bytes, descriptor=self.descriptor,
                                                          read_latency=SELECT_BYTE_LATENCY))
        transmitter = resettable("transmitter", UARTTransmitter(divisor=self.divisor))

        wiring.connect(m, receiver.data, frames.bytes)
        # The receiver's error strobes come from its bit timer's comparisons: registered, so they
        # do not reach the frame receiver's state through logic.
        m.d.sync += [
            frames.overrun.eq(receiver.overrun),
            frames.framing_error.eq(receiver.framing_error),
        ]
        # The oldest result stays at the head of the array's result FIFO until the host has it:
        # the encoder reads it in place, a byte at a time, and the receiver's registered `pop`
        # takes it.
        result = Signal(8 * result_bytes)
        m.d.comb += result.eq(Value.cast(array.results.payload))
        # The encoder reads the byte two clocks after it names it: an eight-byte word of the
        # result, registered, then the byte in it, so the wide select is two short paths (in one
        # clock, 64 ways at 16x16, it was the ULX3S's critical path).
        result_byte = select_byte(m, result, encoder.read_index)
        m.d.comb += [
            frame_buffer.write_data.eq(frames.write_data),
            frame_buffer.write.eq(frames.write),
            frames.full.eq(frame_buffer.full),
            frame_buffer.commit.eq(frames.commit),
            frame_buffer.rollback.eq(frames.rollback),
            encoder.start.eq(frames.reply_start),
            encoder.kind.eq(frames.reply_kind),
            encoder.seq.eq(frames.reply_seq),
            encoder.code.eq(frames.reply_code),
            frames.encoder_busy.eq(encoder.busy),
            frames.result_available.eq(array.results.valid),
            array.results.ready.eq(frames.pop),
            encoder.read_data.eq(result_byte),
        ]
        wiring.connect(m, frame_buffer.r_stream, decoder.bytes)
        # The decoder's beats reach the array through hops (hdl/streamhop.py), where they are on:
        # no valid or ready crosses the distance between them in series with logic. The decoder
        # holds a beat's bytes until the array has it.
        for name in ("weights", "activations"):
            source, sink = getattr(decoder, name), getattr(array, name)
            if hops:
                hop = resettable(f"{name}_hop", StreamHop(widths[name]))
                m.d.comb += [hop.sink.payload.eq(source.payload), hop.sink.valid.eq(source.valid),
                             source.ready.eq(hop.sink.ready)]
                source = hop.source
            m.d.comb += [
                Value.cast(sink.payload).eq(Value.cast(source.payload)),
                sink.valid.eq(source.valid),
                source.ready.eq(sink.ready),
            ]
        wiring.connect(m, encoder.bytes, transmitter.data)
        m.d.comb += self.tx.eq(transmitter.tx)
        return m
