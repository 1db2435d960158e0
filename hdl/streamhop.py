"""A stream across the device: its handshake crosses as registered toggles.

The host link's decoder and the array it feeds sit where the placer puts them, on the ULX3S up to
the width of the device apart; a valid or ready bit that crosses in series with the logic at
either end does not fit a 10 ns clock (a 16x16 array build's critical path was the decoder's
`weights.valid` -> the array's bank logic -> its `weights_ready`, 13.2 ns, 87% routing). Here each
crossing is one register to one register, with no logic: the source's beat is announced by
flipping a toggle, which a register beside the sink copies; the sink's taking it flips another,
which a register beside the source copies. A beat takes four clocks from the source's valid to
its ready, which the link (a byte per clock at best, many bytes per beat) does not notice.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .platforms import family_of
from spec.checks import positive_int


def hops_for(platform):
    """Whether the host link's beats cross to the array through hops (and its bytes to their lanes
    through two registers) on `platform`: not on the iCE40, whose devices are small enough that no
    crossing is long, and where every hop register takes a logic cell of its own (with them the
    iCEBreaker 4x4 filled 94.5% of its logic cells instead of 93.3% and missed 40 MHz with one seed
    of five); elsewhere, and with no platform (gen and simulation), yes."""
    return family_of(platform) != "ice40"


class StreamHop(wiring.Component):
    """Passes the beats of `sink` to `source` one at a time, payload unregistered.

    The payload goes straight through: the source must hold it from its valid until its ready
    (as Amaranth's streams require), and its ready rises only once the sink has taken the beat.

    Members
    -------
    sink   : In(stream.Signature(width))   beats from the source
    source : Out(stream.Signature(width))  the same beats, towards the sink
    """

    def __init__(self, width):
        self.width = positive_int("width", width)
        super().__init__({
            "sink": In(stream.Signature(self.width)),
            "source": Out(stream.Signature(self.width)),
        })

    def elaborate(self, platform):
        m = Module()
        offered = Signal()          # flips when a beat is offered (beside the source)
        offered_seen = Signal()     # its copy beside the sink
        taken = Signal()            # flips when the sink takes a beat (beside the sink)
        taken_seen = Signal()       # its copy beside the source
        pending = Signal()          # the source's beat is offered and its ready not yet given
        m.d.sync += [offered_seen.eq(offered), taken_seen.eq(taken)]
        m.d.comb += [
            self.source.payload.eq(self.sink.payload),
            self.source.valid.eq(offered_seen != taken),
            self.sink.ready.eq(pending & (taken_seen == offered)),
        ]
        with m.If(self.source.valid & self.source.ready):
            m.d.sync += taken.eq(~taken)
        with m.If(self.sink.valid & ~pending):
            m.d.sync += [offered.eq(~offered), pending.eq(1)]
        with m.Elif(self.sink.ready):
            m.d.sync += pending.eq(0)
        return m
