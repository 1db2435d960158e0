"""The host link's framing layer (protocol version 5, see hdl/hostlink.py): frames in, checked and
applied once; replies out, each with the sequence number it answers and a CRC.

Both CRCs are CRC-16/CCITT-FALSE (`amaranth.lib.crc.catalog.CRC16_CCITT_FALSE`: polynomial 0x1021,
initial value 0xFFFF, no reflection), computed a byte per clock over every byte after the start
byte and sent most significant byte first, so that the receiver's CRC over a whole good frame,
CRC included, is the algorithm's residue (0).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.checks import positive_int

PROTOCOL_VERSION = 5
START_OF_FRAME = 0xA5
CRC = crc.catalog.CRC16_CCITT_FALSE
# Commands (host to board).
CMD_IDENTIFY, CMD_WEIGHTS, CMD_ACTIVATIONS, CMD_READ = (ord(c) for c in "IWAR")
# Replies (board to host): their kind bytes, in the order of the encoder's 3-bit kind index.
REPLY_KINDS = b"KNDRE"
REPLY_ACK, REPLY_NONE, REPLY_DESCRIPTOR, REPLY_RESULT, REPLY_ERROR = range(len(REPLY_KINDS))
# Error codes, the body of an 'E' reply.
ERROR_CRC = 1              # the CRC does not check
ERROR_LENGTH = 2           # a beat count the command does not allow
ERROR_COMMAND = 3          # an unknown command
ERROR_TIMEOUT = 4          # the line went quiet in the middle of a frame
ERROR_NO_ROOM = 5          # the frame buffer is full: send the frame again later
ERROR_OVERRUN = 6          # the receiver lost a byte
ERROR_FRAMING = 7          # a byte with a bad stop bit
ERROR_CODES = (ERROR_CRC, ERROR_LENGTH, ERROR_COMMAND, ERROR_TIMEOUT, ERROR_NO_ROOM, ERROR_OVERRUN,
               ERROR_FRAMING)
HEADER_BYTES = 4           # start, sequence, command, count (host to board)
REPLY_HEADER_BYTES = 3     # start, sequence, kind (board to host)
CRC_BYTES = 2


VERDICT_BUSY, VERDICT_CRC, VERDICT_REPEAT, VERDICT_NO_ROOM, VERDICT_ACCEPT = range(5)   # of a whole frame


class FrameReceiver(wiring.Component):
    """Receives frames, checks them, and applies each at most once.

    A weight or activation frame's command, count and payload are written into the frame buffer
    as they arrive and committed only when the frame's CRC checks and its sequence number is not
    the one applied last; a repeated frame (the host did not get the reply) is answered again,
    exactly as the first time, and rolled back. A rejected frame (bad CRC, count or command, a
    lost or corrupted byte, a line that goes quiet in the middle) is answered with an error and
    rolled back; the receiver then ignores the line until it has been quiet for `timeout_clocks`,
    so that the rest of a damaged frame cannot pass for a new one. A frame that ends while a
    reply is still being sent is dropped unanswered: the host times out and sends it again (in
    the protocol's stop-and-wait the host never sends while the board answers, so only a damaged
    exchange ever overlaps). The receiver has a CRC unit of its own.

    Replies are requested from the encoder with the registered `reply_start` strobe and fields,
    which hold still while the encoder is busy (it reads them as it sends).
    Any accepted frame first drops (`pop`) the result sent in the previous reply, if the previous
    accepted frame got one (the host has it: it has moved on to a new sequence number); a read
    ('R') then answers with the next result or with "none yet".

    Timing: each decision is a few levels of logic from registers (the iCEBreaker 4x4's critical
    paths ran through this block's states into the reply request). Bytes are registered with
    their comparisons against the protocol's constants; the count's checks, the end of a beat and
    of a frame, the CRC's verdict and the frame's verdict are registered a clock before they are
    acted on; every rejection goes through one state (`reject`) that replies with the registered
    error code; and a reply waits a clock in registers (`pending`) before it reaches the encoder.
    """

    def __init__(self, *, weight_bytes, activation_bytes, max_weight_beats, max_activation_beats,
                 timeout_clocks):
        self.weight_bytes = positive_int("weight_bytes", weight_bytes)
        self.activation_bytes = positive_int("activation_bytes", activation_bytes)
        self.max_weight_beats = positive_int("max_weight_beats", max_weight_beats)
        self.max_activation_beats = positive_int("max_activation_beats", max_activation_beats)
        self.timeout_clocks = positive_int("timeout_clocks", timeout_clocks)
        if max(self.max_weight_beats, self.max_activation_beats) > 255:
            raise ValueError("a frame carries at most 255 beats")
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "overrun": In(1),
            "framing_error": In(1),
            # The frame buffer.
            "write_data": Out(8),
            "write": Out(1),
            "full": In(1),
            "commit": Out(1),
            "rollback": Out(1),
            # The reply encoder.
            "reply_start": Out(1),
            "reply_kind": Out(range(len(REPLY_KINDS))),   # an index into REPLY_KINDS
            "reply_seq": Out(8),
            "reply_code": Out(range(max(ERROR_CODES) + 1)),
            "encoder_busy": In(1),
            # The array's results.
            "result_available": In(1),
            "pop": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.frame_crc = crc_unit = CRC(data_width=8).create()
        # Each byte waits a clock in a register, with what the states ask of it (its comparisons
        # against the protocol's constants) in flags, before the states look at it. Bytes come
        # tens of clocks apart; the register is always empty again when the next one arrives, and
        # two bytes are taken at least two clocks apart (the register empties, then fills), which
        # the flags registered below from the counters rely on.
        incoming = self.bytes.payload
        byte, byte_valid = Signal(8), Signal()
        is_start, is_weights_command, is_beats_command, is_known_command, is_read_command = (
            Signal(name=name) for name in ("is_start", "is_weights_command", "is_beats_command",
                                           "is_known_command", "is_read_command"))
        fits_weights, fits_activations, is_zero = Signal(), Signal(), Signal()   # as a beat count
        wants = Signal()                      # the state takes a byte this clock
        take, arrive = Signal(), Signal()
        m.d.comb += [self.bytes.ready.eq(~byte_valid), arrive.eq(self.bytes.valid & ~byte_valid),
                     take.eq(byte_valid & wants), crc_unit.data.eq(byte), self.write_data.eq(byte)]
        with m.If(arrive):
            beats_command = (incoming == CMD_WEIGHTS) | (incoming == CMD_ACTIVATIONS)
            m.d.sync += [
                byte_valid.eq(1), byte.eq(incoming), is_start.eq(incoming == START_OF_FRAME),
                is_weights_command.eq(incoming == CMD_WEIGHTS), is_beats_command.eq(beats_command),
                is_known_command.eq(beats_command | (incoming == CMD_IDENTIFY) | (incoming == CMD_READ)),
                is_read_command.eq(incoming == CMD_READ),
                fits_weights.eq((incoming != 0) & (incoming <= self.max_weight_beats)),
                fits_activations.eq((incoming != 0) & (incoming <= self.max_activation_beats)),
                is_zero.eq(incoming == 0),
            ]
        with m.Elif(take):
            m.d.sync += byte_valid.eq(0)

        # Clocks since the last byte arrived, saturating: the quiet line that ends a damaged frame.
        quiet = Signal(range(self.timeout_clocks + 1))
        timed_out = Signal()
        with m.If(arrive):
            m.d.sync += [quiet.eq(0), timed_out.eq(0)]
        with m.Elif(~timed_out):
            m.d.sync += [quiet.eq(quiet + 1), timed_out.eq(quiet == self.timeout_clocks - 1)]
        # A byte lost or damaged on the line, or a line gone quiet, in one register with its code.
        fault, fault_code = Signal(), Signal.like(self.reply_code)
        m.d.sync += [
            fault.eq(self.framing_error | self.overrun | (timed_out & ~arrive)),
            fault_code.eq(Mux(self.framing_error, ERROR_FRAMING, Mux(self.overrun, ERROR_OVERRUN, ERROR_TIMEOUT))),
        ]

        seq = Signal(8)
        is_weights = Signal()
        carries_beats = Signal()              # 'W' or 'A': the frame goes into the buffer
        is_read = Signal()                    # 'R' (else 'I', if not carrying beats)
        beats_left = Signal(8)
        byte_index = Signal(range(max(self.weight_bytes, self.activation_bytes)))
        last_byte = Mux(is_weights, self.weight_bytes - 1, self.activation_bytes - 1)
        # Registered every clock from the counters, which change only when a byte is taken: true
        # again by the next take.
        beat_ends, frame_ends = Signal(), Signal()
        m.d.sync += [beat_ends.eq(byte_index == last_byte), frame_ends.eq((byte_index == last_byte) & (beats_left == 1))]
        overflow = Signal()                   # a byte did not fit the buffer
        count_ok = Signal()                   # the count byte fits the command
        last_seq, last_seq_valid = Signal(8), Signal()
        result_sent = Signal()                # the last accepted frame was answered with a result
        # Registered verdicts, so that the decision at the end of a frame is a few levels of logic.
        repeat, crc_ok = Signal(), Signal()
        m.d.sync += [repeat.eq(last_seq_valid & (seq == last_seq)), crc_ok.eq(crc_unit.match_detected)]
        verdict = Signal(range(5))
        answer_kind = Signal.like(self.reply_kind)    # the reply to a repeated or accepted frame
        answer_rejects, answer_reads = Signal(), Signal()
        answer_error = Signal.like(self.reply_code)
        error = Signal.like(self.reply_code)          # why the frame is rejected
        # A reply decided, not yet handed to the encoder (`pending`), or being sent.
        pending = Signal()
        replying = Signal()
        m.d.comb += replying.eq(pending | self.encoder_busy | self.reply_start)

        # What this clock wants done, decided below; registered in one place at the end.
        request, kind = Signal(), Signal.like(self.reply_kind)
        write, rollback, commit, pop = Signal(), Signal(), Signal(), Signal()

        def reply(reply_kind):
            m.d.comb += [request.eq(1), kind.eq(reply_kind)]

        def reject(code):
            m.d.sync += error.eq(code)
            m.next = "reject"

        def in_frame_state(receiving=True):
            """Called last in each state inside a frame: the bytes it receives (if `receiving`) go
            through the CRC, and a fault on the line wins over what the byte would have done."""
            if receiving:
                m.d.comb += [wants.eq(1), crc_unit.valid.eq(take)]
            with m.If(fault):
                reject(fault_code)

        with m.FSM():
            with m.State("hunt"):
                m.d.comb += [wants.eq(1), crc_unit.start.eq(1)]
                with m.If(take & is_start):
                    m.d.sync += [seq.eq(0), overflow.eq(0)]
                    m.next = "seq"
            with m.State("seq"):
                with m.If(take):
                    m.d.sync += seq.eq(byte)
                    m.next = "command"
                in_frame_state()
            with m.State("command"):
                with m.If(take):
                    m.d.sync += [is_weights.eq(is_weights_command), carries_beats.eq(is_beats_command),
                                 is_read.eq(is_read_command)]
                    m.d.comb += write.eq(is_beats_command)
                    with m.If(is_known_command):
                        m.next = "count"
                    with m.Else():
                        reject(ERROR_COMMAND)
                in_frame_state()
            with m.State("count"):
                with m.If(take):
                    m.d.comb += write.eq(carries_beats)
                    m.d.sync += [beats_left.eq(byte), byte_index.eq(0),
                                 count_ok.eq(Mux(carries_beats, Mux(is_weights, fits_weights, fits_activations),
                                                 is_zero))]
                    m.next = "count_check"
                in_frame_state()
            with m.State("count_check"):
                # The count's checks are registered too: the decision is a clock after the byte.
                with m.If(~count_ok):
                    reject(ERROR_LENGTH)
                with m.Elif(carries_beats):
                    m.next = "payload"
                with m.Else():
                    m.next = "crc_high"
                in_frame_state(receiving=False)
            with m.State("payload"):
                with m.If(take):
                    m.d.comb += write.eq(1)
                    m.d.sync += byte_index.eq(byte_index + 1)
                    with m.If(beat_ends):
                        m.d.sync += [byte_index.eq(0), beats_left.eq(beats_left - 1)]
                    with m.If(frame_ends):
                        m.next = "crc_high"
                in_frame_state()
            with m.State("crc_high"):
                with m.If(take):
                    m.next = "crc_low"
                in_frame_state()
            with m.State("crc_low"):
                with m.If(take):
                    m.next = "verdict"
                in_frame_state()
            with m.State("verdict"):
                m.next = "check"      # the CRC register takes the last byte, then crc_ok follows it
            with m.State("check"):
                # The verdict, the reply and the next state are registered before they are acted
                # on, so that their priorities are not in series with the reply request.
                busy_now, accept = replying, crc_ok & ~repeat & ~overflow
                m.d.sync += [
                    verdict.eq(Mux(busy_now, VERDICT_BUSY,
                                   Mux(~crc_ok, VERDICT_CRC,
                                       Mux(repeat, VERDICT_REPEAT,
                                           Mux(overflow, VERDICT_NO_ROOM, VERDICT_ACCEPT))))),
                    answer_kind.eq(Mux(carries_beats, REPLY_ACK,
                                       Mux(~is_read, REPLY_DESCRIPTOR,
                                           Mux(result_sent, REPLY_RESULT, REPLY_NONE)))),
                    answer_rejects.eq(~busy_now & (~crc_ok | (~repeat & overflow))),
                    answer_error.eq(Mux(~crc_ok, ERROR_CRC, ERROR_NO_ROOM)),
                    answer_reads.eq(~busy_now & accept & ~carries_beats & is_read),
                ]
                m.next = "answer"
            with m.State("answer"):
                with m.Switch(verdict):
                    with m.Case(VERDICT_BUSY):
                        # Still answering something else: dropped unanswered, the host asks again.
                        m.d.comb += rollback.eq(1)
                    with m.Case(VERDICT_REPEAT):
                        # Answered exactly as the first time, and not applied again.
                        reply(answer_kind)
                        m.d.comb += rollback.eq(1)
                    with m.Case(VERDICT_ACCEPT):
                        # Accepted: applied once, from here on a repeat is answered, not applied.
                        m.d.sync += [last_seq.eq(seq), last_seq_valid.eq(1), result_sent.eq(0)]
                        m.d.comb += [pop.eq(result_sent), commit.eq(carries_beats)]
                        with m.If(carries_beats | ~is_read):
                            reply(answer_kind)
                with m.If(answer_rejects):
                    reject(answer_error)
                with m.Elif(answer_reads):
                    m.next = "read_pop"
                with m.Else():
                    m.next = "hunt"
            with m.State("read_pop"):
                m.next = "read"        # the store takes the pop
            with m.State("read"):
                # Two clocks after the pop, `result_available` tells about the next result.
                with m.If(self.result_available):
                    m.d.sync += result_sent.eq(1)
                    reply(REPLY_RESULT)
                with m.Else():
                    reply(REPLY_NONE)
                m.next = "hunt"
            with m.State("reject"):
                reply(REPLY_ERROR)
                m.d.comb += rollback.eq(1)
                m.next = "discard"
            with m.State("discard"):
                m.d.comb += wants.eq(1)
                with m.If(timed_out & ~byte_valid):
                    m.next = "hunt"

        with m.If(write & take & self.full):
            m.d.sync += overflow.eq(1)
        m.d.comb += self.write.eq(write & take)
        m.d.sync += [self.commit.eq(commit), self.rollback.eq(rollback), self.pop.eq(pop), self.reply_start.eq(0)]
        # The reply the states decided waits a clock in registers (`pending`) before it reaches
        # the encoder's, so that the states' decision is not in series with the enables of the
        # reply's fields. A reply is dropped while another is pending or being sent (the host will
        # ask again); the fields hold still meanwhile, as the encoder reads them.
        pending_kind, pending_seq, pending_code = Signal.like(kind), Signal.like(seq), Signal.like(error)
        m.d.sync += pending.eq(0)
        with m.If(request & ~replying):
            m.d.sync += [pending.eq(1), pending_kind.eq(kind), pending_seq.eq(seq), pending_code.eq(error)]
        with m.If(pending):
            m.d.sync += [self.reply_start.eq(1), self.reply_kind.eq(pending_kind), self.reply_seq.eq(pending_seq),
                         self.reply_code.eq(pending_code)]
        return m


class ReplyEncoder(wiring.Component):
    """Sends one reply frame at a time: start byte, sequence number, kind, body, CRC.

    Bodies: an error's code, the descriptor, or the oldest result (read a byte at a time through
    `read_index` / `read_data`, `read_latency` clocks late: the reader may pipeline its byte
    select). The request's fields must hold still while `busy`: they are read as the frame goes
    out. The encoder has a CRC unit of its own.

    Each decision is a few levels of logic from registers (the iCEBreaker 4x4's critical path
    was the encoder's state -> its byte's valid, 7 levels): the header waits in a shift register,
    the next body byte is chosen into a register of its own, and a byte is offered
    `read_latency + 2` clocks after the one before has gone (`settle`, a shift register), by when
    the body byte's index has reached the result's byte (`read_latency` clocks) and the
    descriptor's (a clock), the body byte (a clock), or the CRC has taken the last byte. A byte
    takes 10 x divisor clocks on the line and the transmitter holds the next one: the clocks cost
    nothing.

    Members
    -------
    start, kind, seq, code : In   a reply request (`kind` an index into REPLY_KINDS)
    busy      : Out(1)   a register: from the clock after `start` until the last byte is handed over
    read_index: Out(range(result_bytes)), read_data: In(8)   the oldest result
    bytes     : Out(stream.Signature(8))
    """

    def __init__(self, *, result_bytes, descriptor, read_latency=1):
        self.result_bytes = positive_int("result_bytes", result_bytes)
        self.read_latency = positive_int("read_latency", read_latency)
        self.descriptor = bytes(descriptor)
        super().__init__({
            "start": In(1),
            "kind": In(range(len(REPLY_KINDS))),
            "seq": In(8),
            "code": In(range(max(ERROR_CODES) + 1)),
            "busy": Out(1),
            "read_index": Out(range(self.result_bytes)),
            "read_data": In(8),
            "bytes": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reply_crc = crc_unit = CRC(data_width=8).create()
        kind = self.kind
        body_bytes = max(self.result_bytes, len(self.descriptor), 1)
        index = Signal(range(body_bytes))             # body byte being sent
        last_index = Signal.like(index)               # the body's last byte
        has_body, is_error, is_descriptor = Signal(), Signal(), Signal()
        header = Signal(8 * REPLY_HEADER_BYTES)       # header bytes still to send, the next lowest
        header_at = Signal(range(REPLY_HEADER_BYTES))
        kinds = Const(int.from_bytes(REPLY_KINDS, "little"), 8 * len(REPLY_KINDS))
        descriptor = Const(int.from_bytes(self.descriptor, "little"), 8 * len(self.descriptor))
        descriptor_byte, body_byte = Signal(8), Signal(8)
        m.d.comb += self.read_index.eq(index)
        m.d.sync += [
            descriptor_byte.eq(descriptor.word_select(index, 8)),
            body_byte.eq(Mux(is_error, self.code, Mux(is_descriptor, descriptor_byte, self.read_data))),
        ]
        sent = Signal()
        m.d.comb += sent.eq(self.bytes.valid & self.bytes.ready)
        with m.If(sent):
            m.d.sync += self.bytes.valid.eq(0)
        # A byte is offered a few clocks after a kick (the request, or the byte before going out):
        # the index's clock, the reader's latency and the body byte's register.
        kick = Signal()
        settle = Signal(self.read_latency + 2)
        prepare = settle[-1]
        m.d.sync += settle.eq(Cat(kick, settle[:-1]))

        def offer(value):
            with m.If(prepare):
                m.d.sync += [self.bytes.payload.eq(value), self.bytes.valid.eq(1)]

        # The CRC covers every byte after the start byte and before the CRC.
        m.d.comb += crc_unit.data.eq(self.bytes.payload)
        with m.FSM():
            with m.State("idle"):
                m.d.comb += crc_unit.start.eq(1)
                with m.If(self.start):
                    m.d.comb += kick.eq(1)
                    m.d.sync += [
                        self.busy.eq(1),
                        header.eq(Cat(Const(START_OF_FRAME, 8), self.seq, kinds.word_select(kind, 8))),
                        header_at.eq(0), index.eq(0),
                        has_body.eq((kind != REPLY_ACK) & (kind != REPLY_NONE)),
                        is_error.eq(kind == REPLY_ERROR), is_descriptor.eq(kind == REPLY_DESCRIPTOR),
                        last_index.eq(Mux(kind == REPLY_ERROR, 0,
                                          Mux(kind == REPLY_DESCRIPTOR, len(self.descriptor) - 1,
                                              self.result_bytes - 1))),
                    ]
                    m.next = "header"
            with m.State("header"):
                offer(header[:8])
                m.d.comb += crc_unit.valid.eq(sent & (header_at != 0))
                with m.If(sent):
                    m.d.comb += kick.eq(1)
                    m.d.sync += [header.eq(header >> 8), header_at.eq(header_at + 1)]
                    with m.If(header_at == REPLY_HEADER_BYTES - 1):
                        with m.If(has_body):
                            m.next = "body"
                        with m.Else():
                            m.next = "crc_high"
            with m.State("body"):
                offer(body_byte)
                m.d.comb += crc_unit.valid.eq(sent)
                with m.If(sent):
                    m.d.comb += kick.eq(1)
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == last_index):
                        m.next = "crc_high"
            with m.State("crc_high"):
                offer(crc_unit.crc[8:])
                with m.If(sent):
                    m.d.comb += kick.eq(1)
                    m.next = "crc_low"
            with m.State("crc_low"):
                offer(crc_unit.crc[:8])
                with m.If(sent):
                    m.d.sync += self.busy.eq(0)
                    m.next = "idle"
        return m
