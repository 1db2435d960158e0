"""An 8N1 UART: a receiver and a transmitter with valid/ready byte streams.

The bit time is `divisor` clocks (the board clock divided by the baud rate, see `divisor_for`).
The receiver samples each bit in its middle, so it tolerates a bit-time mismatch of a few percent
between the two ends; it reports lost bytes (`overrun`), bad stop bits (`framing_error`) and a
line held low for a whole frame (`line_break`), which the host link uses as its reset command.
"""

import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

# Below 4 clocks per bit the receiver's mid-bit sampling leaves no margin for baud mismatch.
MIN_DIVISOR = 4
# Beyond this the baud rates of the two ends disagree enough to corrupt the last bits of a frame.
MAX_BAUD_ERROR = 0.02


def check_divisor(divisor):
    """The divisor as an int, or TypeError/ValueError with a clear message."""
    try:
        divisor = operator.index(divisor)
    except TypeError:
        raise TypeError(f"divisor must be an integer, not {divisor!r}") from None
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR} clocks per bit, not {divisor}")
    return divisor


def divisor_for(clk_frequency, baud):
    """Clocks per bit for `baud` on a `clk_frequency` Hz clock; ValueError if too inexact."""
    if baud <= 0:
        raise ValueError(f"baud rate must be positive, not {baud}")
    divisor = round(clk_frequency / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"{baud} baud is too fast for a {clk_frequency / 1e6:g} MHz clock "
                         f"(at most {clk_frequency / MIN_DIVISOR:.0f})")
    error = abs(clk_frequency / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"{baud} baud is {error:.1%} off on a {clk_frequency / 1e6:g} MHz clock "
                         f"(at most {MAX_BAUD_ERROR:.0%})")
    return divisor


class UARTReceiver(wiring.Component):
    """8N1 receiver.

    Members
    -------
    rx            : In(1)  the serial line (idle high); synchronized internally.
    data          : Out(stream.Signature(8))  received bytes, least significant bit first on the line.
    overrun       : Out(1)  one-clock strobe: a byte arrived while the previous one was still not
                    taken, and was dropped.
    framing_error : Out(1)  one-clock strobe: a byte with a low stop bit (not a break), dropped.
    line_break    : Out(1)  one-clock strobe: the line stayed low for a whole frame.
    """

    def __init__(self, *, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "overrun": Out(1),
            "framing_error": Out(1),
            "line_break": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor))
        bit = Signal(range(8))
        shift = Signal(8)
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    # Sample the start bit in its middle, then every bit one bit time later.
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "idle"            # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(self.divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    with m.If(self.data.valid & ~self.data.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                    m.next = "idle"
                with m.Else():
                    with m.If(shift == 0):
                        m.d.comb += self.line_break.eq(1)
                        # A break resets the link: the byte still waiting belongs to the old session.
                        m.d.sync += self.data.valid.eq(0)
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                    m.next = "wait_idle"
            with m.State("wait_idle"):
                # A low stop bit: wait for the line to go idle before looking for a start bit.
                with m.If(line):
                    m.next = "idle"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter.

    A byte first waits in a holding register, which takes it whenever it is empty, so that
    `data.ready` is a register (the sender's state does not wait on the bit timer through logic:
    the iCEBreaker's critical path ran from it into the reply encoder); the frame starts from the
    holding register as the line frees.

    Members
    -------
    data : In(stream.Signature(8))  bytes to send
    tx   : Out(1)  the serial line, registered, idle high.
    """

    def __init__(self, *, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        holding, holding_valid = Signal(8), Signal()
        m.d.comb += self.data.ready.eq(~holding_valid)
        timer = Signal(range(self.divisor))
        # `timer == 0`, kept in a register as the timer moves, so that the comparison is not in
        # series with the frame's start (the iCEBreaker's critical path ran through it).
        timer_zero = Signal(init=1)
        bits_left = Signal(range(11))       # bits of the current frame not yet finished
        frame = Signal(9)                   # data (LSB first) and stop bit, still to send
        last_bit_ends, start = Signal(), Signal()
        m.d.comb += [
            last_bit_ends.eq((bits_left == 1) & timer_zero),
            # The next frame starts as the stop bit ends, so back-to-back frames have no gap.
            start.eq(holding_valid & ((bits_left == 0) | last_bit_ends)),
        ]
        with m.If(self.data.valid & ~holding_valid):
            m.d.sync += [holding.eq(self.data.payload), holding_valid.eq(1)]
        with m.Elif(start):
            m.d.sync += holding_valid.eq(0)
        with m.If(start):
            m.d.sync += [
                self.tx.eq(0),                                   # start bit
                frame.eq(Cat(holding, 1)),
                bits_left.eq(10),
                timer.eq(self.divisor - 1),
                timer_zero.eq(0),                                # divisor - 1 >= 3
            ]
        with m.Elif(last_bit_ends):
            m.d.sync += bits_left.eq(0)
        with m.Elif(bits_left != 0):
            with m.If(timer_zero):
                m.d.sync += [
                    self.tx.eq(frame[0]),
                    frame.eq(frame[1:]),
                    bits_left.eq(bits_left - 1),
                    timer.eq(self.divisor - 1),
                    timer_zero.eq(0),
                ]
            with m.Else():
                m.d.sync += [timer.eq(timer - 1), timer_zero.eq(timer == 1)]
        return m
