"""The host link's frame buffer: received frames, applied only once checked.

One block RAM on an iCE40 (512 bytes by default), with a power-of-two depth, so that its pointers
wrap by dropping a bit.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .memories import collision_free_memory
from spec.checks import positive_int


def power_of_two(name, value):
    """`value` as an int that is a power of two, or a one-line ValueError."""
    value = positive_int(name, value)
    if value & (value - 1):
        raise ValueError(f"{name} must be a power of two, not {value}")
    return value


class FrameBuffer(wiring.Component):
    """A byte FIFO whose writes stay invisible to the reader until committed.

    A frame's bytes are written as they arrive; only when its CRC has checked does `commit` make
    them readable, and `rollback` forgets every byte written since the last commit. So a corrupted
    or repeated frame never reaches the array, however far it got.

    Members
    -------
    write_data : In(8), write : In(1)  a byte to append (ignored while `full`)
    full       : Out(1)                no room for another byte (committed and tentative)
    commit     : In(1)                 strobe: bytes written so far become readable
    rollback   : In(1)                 strobe: bytes written since the last commit are dropped
    r_stream   : Out(stream.Signature(8))  committed bytes, in order
    """

    def __init__(self, *, depth):
        self.depth = power_of_two("depth", depth)
        super().__init__({
            "write_data": In(8),
            "write": In(1),
            "full": Out(1),
            "commit": In(1),
            "rollback": In(1),
            "r_stream": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        bits = self.depth.bit_length() - 1
        # Collision-free: it reads only committed bytes, which are never being written.
        m.submodules.memory = memory = collision_free_memory(shape=8, depth=self.depth)
        write_port = memory.write_port()
        read_port = memory.read_port()
        # One bit more than an address: full and empty differ by the top bit.
        written, committed, read = Signal(bits + 1), Signal(bits + 1), Signal(bits + 1)
        m.d.comb += self.full.eq((written - read)[bits])
        m.d.comb += [
            write_port.addr.eq(written[:bits]),
            write_port.data.eq(self.write_data),
            write_port.en.eq(self.write & ~self.full),
        ]
        with m.If(self.rollback):
            m.d.sync += written.eq(committed)
        with m.Elif(write_port.en):
            m.d.sync += written.eq(written + 1)
        with m.If(self.commit):
            m.d.sync += committed.eq(written)
        # Two registers between the block RAM and the reader: the read port's own (the byte fetched)
        # and an output register with a skid slot, so that neither the block RAM's slow clock-to-out
        # reaches the reader's logic nor the reader's `ready` reaches the block RAM's enable and
        # the pointers (the ULX3S 16x16's critical path was frame_buffer.memory -> decoder, 13.1 ns).
        # One byte per clock while the reader takes one per clock.
        fetched = Signal()                        # the read port holds a byte not yet passed on
        skid = Signal(8, reset_less=True)         # a byte the output register had no room for
        skid_valid = Signal()
        fetch = Signal()
        m.d.comb += [
            # Only registers decide a fetch: there is room for the read port's byte if the skid
            # slot is empty (it takes the byte if the output register cannot).
            fetch.eq((read != committed) & (~fetched | ~skid_valid)),
            read_port.addr.eq(read[:bits]),
            read_port.en.eq(fetch),
        ]
        with m.If(fetch):
            m.d.sync += read.eq(read + 1)
        arriving = fetched & ~skid_valid          # the read port's byte moves on this clock
        m.d.sync += fetched.eq(fetch | (fetched & skid_valid))
        with m.If(~self.r_stream.valid | self.r_stream.ready):
            # The output register is free: it takes the skid's byte first, else the read port's.
            m.d.sync += [
                self.r_stream.payload.eq(Mux(skid_valid, skid, read_port.data)),
                self.r_stream.valid.eq(skid_valid | arriving),
                skid_valid.eq(0),
            ]
        with m.Elif(arriving):
            m.d.sync += [skid.eq(read_port.data), skid_valid.eq(1)]
        return m
