"""The host link's two byte memories: received frames that apply only once checked, and results kept
until the host has them.

Both are one block RAM each on an iCE40 (512 bytes by default) with power-of-two depths, so that
their pointers wrap by dropping a bit.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

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
        m.submodules.memory = memory = Memory(shape=8, depth=self.depth, init=[])
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
        # The reader's byte sits in the read port's register; it is refilled as it is taken.
        fetch = Signal()
        m.d.comb += [
            fetch.eq((read != committed) & (~self.r_stream.valid | self.r_stream.ready)),
            read_port.addr.eq(read[:bits]),
            read_port.en.eq(fetch),
            self.r_stream.payload.eq(read_port.data),
        ]
        with m.If(fetch):
            m.d.sync += [read.eq(read + 1), self.r_stream.valid.eq(1)]
        with m.Elif(self.r_stream.ready):
            m.d.sync += self.r_stream.valid.eq(0)
        return m


class ResultStore(wiring.Component):
    """Result beats as bytes, kept until the host has acknowledged them.

    The array's result beats are written a byte per clock (least significant byte first, zero
    padding in the top byte). The oldest beat, the head, is read byte by byte by the reply encoder
    as often as the host asks for it again; `pop` drops it once the host has shown that it has it.
    `capacity` beats fit: the host's credits.

    Members
    -------
    results   : In(stream.Signature(result_width))
    available : Out(1)                  the head is a whole beat
    read_index: In(range(beat_bytes))   byte of the head to read ...
    read_data : Out(8)                  ... here a clock later
    pop       : In(1)                   strobe: drop the head (only while `available`)
    """

    def __init__(self, *, result_width, depth):
        self.result_width = positive_int("result_width", result_width)
        self.depth = power_of_two("depth", depth)
        self.beat_bytes = (self.result_width + 7) // 8
        if self.beat_bytes > self.depth:
            raise ValueError(f"a result buffer of {self.depth} bytes cannot hold a result beat of "
                             f"{self.beat_bytes} bytes")
        self.capacity = self.depth // self.beat_bytes
        super().__init__({
            "results": In(stream.Signature(self.result_width)),
            "available": Out(1),
            "read_index": In(range(self.beat_bytes)),
            "read_data": Out(8),
            "pop": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bits, n = self.depth.bit_length() - 1, self.beat_bytes
        m.submodules.memory = memory = Memory(shape=8, depth=self.depth, init=[])
        write_port = memory.write_port()
        read_port = memory.read_port()
        head = Signal(bits)                           # first byte of the oldest beat
        tail = Signal(bits)                           # where the next beat goes
        stored = Signal(range(self.capacity + 1))     # whole beats
        m.d.comb += [
            self.available.eq(stored != 0),
            read_port.addr.eq(head + self.read_index),
            self.read_data.eq(read_port.data),
        ]

        # Writing: the byte is selected into a register and written a clock later, so the wide
        # result never reaches the memory's data pins through the byte multiplexer in one clock.
        index = Signal(range(n))
        writing = Signal()
        byte, byte_valid, byte_addr = Signal(8), Signal(), Signal(bits)
        padded = Signal(8 * n)
        m.d.comb += padded.eq(self.results.payload)
        m.d.sync += [
            byte.eq(padded.word_select(index, 8)),
            byte_valid.eq(writing),
            byte_addr.eq(tail + index),
        ]
        m.d.comb += [
            write_port.addr.eq(byte_addr),
            write_port.data.eq(byte),
            write_port.en.eq(byte_valid),
        ]
        finished = Signal()
        with m.If(~writing):
            # `finished`: the beat whose last byte is being written, not yet in `stored`.
            with m.If(self.results.valid & (stored + finished < self.capacity)):
                m.d.sync += [writing.eq(1), index.eq(0)]
        with m.Elif(index == n - 1):
            # The beat is taken with its last byte; it counts as stored once that byte is written.
            m.d.comb += self.results.ready.eq(1)
            m.d.sync += [writing.eq(0), tail.eq(tail + n)]
        with m.Else():
            m.d.sync += index.eq(index + 1)
        m.d.sync += finished.eq(self.results.valid & self.results.ready)
        with m.If(self.pop):
            m.d.sync += head.eq(head + n)
        m.d.sync += stored.eq(stored + finished - self.pop)
        return m
