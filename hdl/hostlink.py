"""The array behind a UART: a byte protocol to load weights, stream activations and read results.

Protocol, version 2 (software/host.py implements the host side from this description)
------------------------------------------------------------------------------------
Serial line: 8 data bits, no parity, 1 stop bit. Multi-byte integers are little endian. A beat is
sent as ceil(width / 8) bytes, least significant byte first, with the bit packing of the manifest
(software/packing/beats.py) and zero padding in the top byte.

Host to board:
  'I'                          identify: the board answers with its descriptor.
  'W' n:u16 n x weight beat     n weight beats, in stream order (R per tile, row 0 first).
  'A' n:u16 n x activation beat n activation beats (data, last, clear, emit).
  a break (line low for at least one frame) resets the link and the array: partially received
                                commands, loaded weights, accumulators and unsent replies are dropped.
Board to host (each reply starts with a tag byte):
  'I' descriptor (16 bytes)     'S' 'G' version rows-1 cols-1 alpha-1 act_width weight_width
                                acc_width flags max_batch-1:u16 credits:u16 weight_terms data_terms,
                                where flags bit 0 = activations signed, bit 1 = weights signed,
                                bit 2 = double buffered, bit 3 = term-quantized cells (mac "tq": a
                                weight beat holds term lists, see software/packing/beats.py); the term
                                budgets are 0 for integer cells.
  'R' result beat               one per activation beat with `emit` set, in order.
  'E' code detail               1 = unknown command (detail: the byte), 2 = receive overrun (bytes
                                were lost: reset with a break), 3 = framing error (a bad stop bit).

Flow control: the line has none, so the host must never have more than `credits` emitting
activation beats whose result has not yet arrived. The results then always fit in the transmit
buffer, the array never stalls on its output, and every received byte is consumed within a few
clocks (the receive buffer covers the moments while a weight bank is still in use). Commands must
follow the stream order of software/packing/schedule.py, or the array may wait for a beat the host has
not sent yet.
"""


from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, Value
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .systolic import SystolicArray
from .uart import UARTReceiver, UARTTransmitter, check_divisor
from spec.checks import positive_int

PROTOCOL_VERSION = 2
CMD_IDENTIFY, CMD_WEIGHTS, CMD_ACTIVATIONS = ord("I"), ord("W"), ord("A")
REPLY_IDENTIFY, REPLY_RESULT, REPLY_ERROR = ord("I"), ord("R"), ord("E")
ERROR_UNKNOWN_COMMAND, ERROR_OVERRUN, ERROR_FRAMING = 1, 2, 3
DESCRIPTOR_BYTES = 16


def beat_bytes(width):
    """Bytes that carry a beat of `width` bits on the line."""
    return (width + 7) // 8


class CommandDecoder(wiring.Component):
    """Turns the received bytes into weight beats and activation beats; every other command byte
    ('I', or one the protocol does not know) goes to the response encoder to be answered.

    Members
    -------
    bytes       : In(stream.Signature(8))
    weights     : Out(stream.Signature(weight_width))      flat beats, manifest packing
    activations : Out(stream.Signature(activation_width))
    control     : Out(stream.Signature(8))                 command bytes other than 'W' and 'A'
    """

    def __init__(self, *, weight_width, activation_width):
        self.weight_width = positive_int("weight_width", weight_width)
        self.activation_width = positive_int("activation_width", activation_width)
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "weights": Out(stream.Signature(self.weight_width)),
            "activations": Out(stream.Signature(self.activation_width)),
            "control": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        n_weight, n_act = beat_bytes(self.weight_width), beat_bytes(self.activation_width)
        lanes = max(n_weight, n_act)
        # A beat of n bytes is assembled in the top n byte lanes, byte i in lane lanes - n + i.
        # Each byte is written a clock after it arrives, through a registered write enable per
        # lane: no decision of the state machine reaches every bit of a wide beat (the ULX3S
        # 16x16's critical path was the shift of the whole beat).
        beat = Signal(8 * lanes, reset_less=True)
        lane_write = Signal(lanes)
        pending = Signal(8, reset_less=True)
        lane = Signal(range(lanes + 1))          # the lane the next payload byte goes to
        is_weights = Signal()
        count = Signal(16)
        index = Signal(range(lanes))
        last_byte = Mux(is_weights, n_weight - 1, n_act - 1)
        byte = self.bytes.payload
        take = Signal()
        payload_byte = Signal()
        m.d.comb += [
            take.eq(self.bytes.valid & self.bytes.ready),
            self.weights.payload.eq(beat[8 * (lanes - n_weight):]),
            self.activations.payload.eq(beat[8 * (lanes - n_act):]),
        ]
        m.d.sync += pending.eq(byte)
        for k in range(lanes):
            m.d.sync += lane_write[k].eq(payload_byte & (lane == k))
            with m.If(lane_write[k]):
                m.d.sync += beat[8 * k:8 * (k + 1)].eq(pending)
        with m.If(self.control.ready):
            m.d.sync += self.control.valid.eq(0)

        with m.FSM():
            with m.State("opcode"):
                m.d.comb += self.bytes.ready.eq(~self.control.valid)
                with m.If(take):
                    with m.If((byte == CMD_WEIGHTS) | (byte == CMD_ACTIVATIONS)):
                        m.d.sync += is_weights.eq(byte == CMD_WEIGHTS)
                        m.next = "count_low"
                    with m.Else():
                        m.d.sync += [self.control.valid.eq(1), self.control.payload.eq(byte)]
            with m.State("count_low"):
                m.d.comb += self.bytes.ready.eq(1)
                with m.If(take):
                    m.d.sync += count[:8].eq(byte)
                    m.next = "count_high"
            with m.State("count_high"):
                m.d.comb += self.bytes.ready.eq(1)
                with m.If(take):
                    m.d.sync += [count[8:].eq(byte), index.eq(0),
                                 lane.eq(Mux(is_weights, lanes - n_weight, lanes - n_act))]
                    with m.If((byte == 0) & (count[:8] == 0)):
                        m.next = "opcode"
                    with m.Else():
                        m.next = "payload"
            with m.State("payload"):
                m.d.comb += [self.bytes.ready.eq(1), payload_byte.eq(take)]
                with m.If(take):
                    m.d.sync += [index.eq(index + 1), lane.eq(lane + 1)]
                    with m.If(index == last_byte):
                        m.next = "settle"
            with m.State("settle"):         # the last byte is written into its lane
                m.next = "deliver"
            with m.State("deliver"):
                m.d.comb += [
                    self.weights.valid.eq(is_weights),
                    self.activations.valid.eq(~is_weights),
                ]
                with m.If((self.weights.valid & self.weights.ready) |
                          (self.activations.valid & self.activations.ready)):
                    m.d.sync += [count.eq(count - 1), index.eq(0),
                                 lane.eq(Mux(is_weights, lanes - n_weight, lanes - n_act))]
                    with m.If(count == 1):
                        m.next = "opcode"
                    with m.Else():
                        m.next = "payload"
        return m


class ResponseEncoder(wiring.Component):
    """Serializes replies into bytes: result beats, the descriptor, errors.

    A result beat is read from the array's result register in place (it holds still until taken)
    and taken as its last byte leaves, so no copy of a wide result is needed.

    Members
    -------
    results       : In(stream.Signature(result_width))
    control       : In(stream.Signature(8))   'I' is answered with the descriptor, anything else
                                              with an unknown-command error
    overrun       : In(1)   strobe; reported once per strobe (pending reports of one kind merge)
    framing_error : In(1)   strobe
    bytes         : Out(stream.Signature(8))
    """

    def __init__(self, *, result_width, descriptor):
        self.result_width = positive_int("result_width", result_width)
        self.descriptor = bytes(descriptor)
        super().__init__({
            "results": In(stream.Signature(self.result_width)),
            "control": In(stream.Signature(8)),
            "overrun": In(1),
            "framing_error": In(1),
            "bytes": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        n_result = beat_bytes(self.result_width)
        result_frame = Cat(Const(REPLY_RESULT, 8), self.results.payload, Const(0, 8 * n_result - self.result_width))
        descriptor_frame = Const(int.from_bytes(bytes([REPLY_IDENTIFY]) + self.descriptor, "little"),
                                 8 * (1 + len(self.descriptor)))
        error_code, error_detail = Signal(8), Signal(8)
        error_frame = Cat(Const(REPLY_ERROR, 8), error_code, error_detail)

        overrun_pending, framing_pending = Signal(), Signal()
        with m.If(self.overrun):
            m.d.sync += overrun_pending.eq(1)
        with m.If(self.framing_error):
            m.d.sync += framing_pending.eq(1)

        index = Signal(range(max(n_result, len(self.descriptor), 2) + 1))
        last = Signal.like(index)
        sending = Signal(range(3))          # 0: result, 1: descriptor, 2: error
        frames = [result_frame, descriptor_frame, error_frame]
        lengths = [1 + n_result, 1 + len(self.descriptor), 3]
        byte_of = [Signal(8, name=f"byte_of_{i}") for i in range(3)]
        for frame, signal in zip(frames, byte_of):
            m.d.comb += signal.eq(frame.word_select(index, 8))

        with m.FSM():
            with m.State("idle"):
                def start(kind):
                    m.d.sync += [sending.eq(kind), index.eq(0), last.eq(lengths[kind] - 1)]
                    m.next = "send"
                with m.If(overrun_pending & ~self.overrun):
                    m.d.sync += [overrun_pending.eq(0), error_code.eq(ERROR_OVERRUN), error_detail.eq(0)]
                    start(2)
                with m.Elif(framing_pending & ~self.framing_error):
                    m.d.sync += [framing_pending.eq(0), error_code.eq(ERROR_FRAMING), error_detail.eq(0)]
                    start(2)
                with m.Elif(self.control.valid):
                    m.d.comb += self.control.ready.eq(1)
                    with m.If(self.control.payload == CMD_IDENTIFY):
                        start(1)
                    with m.Else():
                        m.d.sync += [error_code.eq(ERROR_UNKNOWN_COMMAND),
                                     error_detail.eq(self.control.payload)]
                        start(2)
                with m.Elif(self.results.valid):
                    start(0)
            with m.State("send"):
                m.d.comb += [
                    self.bytes.valid.eq(1),
                    self.bytes.payload.eq(Cat(byte_of).word_select(sending, 8)),
                ]
                with m.If(self.bytes.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == last):
                        # The result register is released with its last byte.
                        m.d.comb += self.results.ready.eq(sending == 0)
                        m.next = "idle"
        return m


def result_frame_bytes(config):
    """Bytes of one 'R' reply: the tag and a result beat of `rows` sums."""
    return 1 + beat_bytes(config.rows * config.acc_width)


def link_credits(config, tx_buffer):
    """Result beats a host may have outstanding: as many reply frames as the transmit buffer holds
    (at least one: the encoder holds the frame it is sending)."""
    return min(max(1, tx_buffer // result_frame_bytes(config)), 0xFFFF)


def link_descriptor(config, credits):
    """The 16 bytes that answer 'I' (see the protocol above)."""
    tq = config.mac_style.uses_terms
    flags = (int(config.act_signed) | int(config.weight_signed) << 1 | int(config.double_buffer) << 2
             | int(tq) << 3)
    return bytes([
        ord("S"), ord("G"), PROTOCOL_VERSION,
        config.rows - 1, config.cols - 1, config.alpha - 1,
        config.act_width, config.weight_width, config.acc_width, flags,
    ]) + (config.max_batch - 1).to_bytes(2, "little") + credits.to_bytes(2, "little") + bytes([
        config.weight_terms if tq else 0, config.data_terms if tq else 0,
    ])


class HostLink(wiring.Component):
    """The systolic array behind a UART speaking the protocol in this module's docstring.

    `config` is an ArrayConfig (or any object with its attributes); `divisor` is clocks per bit.
    `rx_buffer` bytes absorb the moments when the array cannot take a beat; `tx_buffer` bytes of
    replies set the host's credits (result beats it may have outstanding).

    Members
    -------
    rx : In(1)   serial line from the host (idle high)
    tx : Out(1)  serial line to the host (idle high)
    """

    def __init__(self, config, *, divisor, rx_buffer=32, tx_buffer=512, dsp_cells=0):
        self.config = config
        self.dsp_cells = dsp_cells      # passed to the array (hdl/systolic.py)
        self.divisor = check_divisor(divisor)
        self.rx_buffer = positive_int("rx_buffer", rx_buffer)
        self.tx_buffer = positive_int("tx_buffer", tx_buffer)
        self.credits = link_credits(config, self.tx_buffer)
        self.descriptor = link_descriptor(config, self.credits)
        self.result_frame_bytes = result_frame_bytes(config)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        array = SystolicArray(self.config, dsp_cells=self.dsp_cells)
        lay = array.layouts
        # The receiver is outside the reset it generates, so it can see the break end.
        m.submodules.receiver = receiver = UARTReceiver(divisor=self.divisor)
        m.d.comb += receiver.rx.eq(self.rx)

        def resettable(name, component):
            # The break resets each block through a register of its own: no combinational path
            # from the line to the resets, and a short net per block (DESIGN.md §9). Only the
            # blocks' state is reset; the array's datapath is reset-less.
            reset = Signal(name=f"{name}_reset")
            m.d.sync += reset.eq(receiver.line_break)
            m.submodules[name] = ResetInserter({"sync": reset})(component)
            return component

        rx_fifo = resettable("rx_fifo", fifo.SyncFIFOBuffered(width=8, depth=self.rx_buffer))
        decoder = resettable("decoder", CommandDecoder(weight_width=lay.weight_row.size,
                                                       activation_width=lay.activations.size))
        resettable("array", array)
        encoder = resettable("encoder", ResponseEncoder(result_width=lay.results.size,
                                                        descriptor=self.descriptor))
        tx_fifo = resettable("tx_fifo", fifo.SyncFIFOBuffered(width=8, depth=self.tx_buffer))
        transmitter = resettable("transmitter", UARTTransmitter(divisor=self.divisor))

        wiring.connect(m, receiver.data, rx_fifo.w_stream)
        wiring.connect(m, rx_fifo.r_stream, decoder.bytes)
        for source, sink in ((decoder.weights, array.weights), (decoder.activations, array.activations),
                             (array.results, encoder.results)):
            m.d.comb += [
                Value.cast(sink.payload).eq(Value.cast(source.payload)),
                sink.valid.eq(source.valid),
                source.ready.eq(sink.ready),
            ]
        wiring.connect(m, decoder.control, encoder.control)
        # The receiver's error strobes come from its bit timer's comparisons: registered, so they
        # do not reach the encoder's state through logic (the iCE40 4x4's critical path).
        m.d.sync += [
            encoder.overrun.eq(receiver.overrun),
            encoder.framing_error.eq(receiver.framing_error),
        ]
        wiring.connect(m, encoder.bytes, tx_fifo.w_stream)
        wiring.connect(m, tx_fifo.r_stream, transmitter.data)
        m.d.comb += self.tx.eq(transmitter.tx)
        return m
