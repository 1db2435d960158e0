"""Memories whose read port never reads the entry its write port writes in the same clock, and the
buffered FIFO built on one.

Amaranth's memories promise the old value to a read that meets a write of the same entry in the
same clock (Yosys: COLLISION_X_MASK 0). An iCE40 block RAM leaves that case undefined, so Yosys
emulates the promise with a register of the written data, an address comparator and a multiplexer
on every read bit: a 128-bit result FIFO cost 262 flip-flops and 134 LUT4 more than its block RAMs
on the iCEBreaker, where the 4x4 array fills the device. Where the design guarantees that the case
never occurs, the memory carries the attribute NO_COLLISION, and the board build (fpga/build.py)
declares the collision undefined for it, which removes the emulation; a simulation of the Verilog
behaves the same either way.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spec.checks import positive_int

NO_COLLISION = "sparsegen_no_collision"


def collision_free_memory(*, shape, depth):
    """A memory (one write port, one read port) whose user guarantees that they never address the
    same entry in the same clock."""
    return Memory(shape=shape, depth=depth, init=[], attrs={NO_COLLISION: 1})


class BufferedFIFO(wiring.Component):
    """A synchronous FIFO of `depth` entries (at least 2) whose output is a register, with the
    interface and timing of amaranth.lib.fifo.SyncFIFOBuffered: `depth - 1` entries in a memory,
    one in the output register (`r_data`), a write visible at the output two clocks later at the
    earliest.

    Its memory is collision-free: it is read only when it holds an entry and written only when it
    has room, so the two pointers are equal only when it is empty (no read) or full (no write).

    Members
    -------
    w_data : In(width), w_en : In(1), w_rdy : Out(1)
    r_data : Out(width), r_en : In(1), r_rdy : Out(1)
    level  : Out(range(depth + 1))   entries held, the output register's included
    """

    def __init__(self, *, width, depth):
        self.width = positive_int("width", width)
        self.depth = positive_int("depth", depth)
        if self.depth < 2:
            raise ValueError(f"depth must be at least 2, not {depth}")
        super().__init__({
            "w_data": In(self.width),
            "w_en": In(1),
            "w_rdy": Out(1),
            "r_data": Out(self.width),
            "r_en": In(1),
            "r_rdy": Out(1),
            "level": Out(range(self.depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        entries = self.depth - 1
        m.submodules.storage = storage = collision_free_memory(shape=self.width, depth=entries)
        write_port, read_port = storage.write_port(), storage.read_port()
        held = Signal(range(entries + 1))            # entries in the memory
        produce, consume = Signal(range(entries)), Signal(range(entries))
        write, read = Signal(), Signal()

        def following(pointer):
            return Mux(pointer == entries - 1, 0, pointer + 1)

        m.d.comb += [
            self.w_rdy.eq(held != entries),
            write.eq(self.w_en & self.w_rdy),
            # The memory's entry moves into the output register when that is empty or emptying.
            read.eq((held != 0) & (~self.r_rdy | self.r_en)),
            write_port.addr.eq(produce),
            write_port.data.eq(self.w_data),
            write_port.en.eq(write),
            read_port.addr.eq(consume),
            read_port.en.eq(read),
            self.r_data.eq(read_port.data),
            self.level.eq(held + self.r_rdy),
        ]
        with m.If(write):
            m.d.sync += produce.eq(following(produce))
        with m.If(read):
            m.d.sync += consume.eq(following(consume))
        m.d.sync += held.eq(held + write - read)
        with m.If(read):
            m.d.sync += self.r_rdy.eq(1)
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        return m
