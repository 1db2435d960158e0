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

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .replicas import replica
from spec.checks import positive_int

NO_COLLISION = "sparsegen_no_collision"
UNINITIALISED = "sparsegen_uninitialised"


def collision_free_memory(*, shape, depth):
    """A memory (one write port, one read port) whose user guarantees that they never address the
    same entry in the same clock."""
    return Memory(shape=shape, depth=depth, init=[], attrs={NO_COLLISION: 1})


def uninitialised_memory(*, shape, depth):
    """A memory whose initial contents do not matter: its user writes every entry before reading it.

    Amaranth gives every memory initial contents (zeros here), and Yosys maps no memory with
    initial contents into a RAM that the bitstream cannot initialise, such as the iCE40UP5K's
    SPRAM. The attribute UNINITIALISED (its value: the memory's bits) lets the board build drop
    them (`uninitialised_script`); a simulation of the Verilog starts from zeros."""
    memory = Memory(shape=shape, depth=depth, init=[])
    memory.attrs[UNINITIALISED] = Shape.cast(shape).width * depth
    return memory


def uninitialised_script(design_bits):
    """Yosys commands (after reading the design) that drop the initial contents of the memories made
    by `uninitialised_memory`, given their sizes in bits."""
    return "; ".join(f"setparam -set INIT {bits}'bx a:{UNINITIALISED}={bits}" for bits in sorted(set(design_bits)))


class BufferedFIFO(wiring.Component):
    """A synchronous FIFO of `depth` entries (at least 2) whose output is a register, with the
    interface and timing of amaranth.lib.fifo.SyncFIFOBuffered: `depth - 1` entries in a memory,
    one in the output register (`r_data`), a write visible at the output two clocks later at the
    earliest.

    The data is cut into `lanes` equal lanes, each a memory with its own output register whose
    enable comes from copies of the control registers of its own (hdl/replicas.py): one enable for
    a wide output register is a long net (a 512-bit result FIFO's was the ULX3S 16x16's critical
    path, 7.8 ns of routing). Its memories are collision-free: they are read only when they hold
    an entry and written only when they have room, so the pointers are equal only when empty (no
    read) or full (no write).

    Members
    -------
    w_data : In(width), w_en : In(1), w_rdy : Out(1)
    r_data : Out(width), r_en : In(1), r_rdy : Out(1)
    level  : Out(range(depth + 1))   entries held, the output register's included
    """

    def __init__(self, *, width, depth, lanes=1):
        self.width = positive_int("width", width)
        self.depth = positive_int("depth", depth)
        if self.depth < 2:
            raise ValueError(f"depth must be at least 2, not {depth}")
        self.lanes = positive_int("lanes", lanes)
        if self.width % self.lanes:
            raise ValueError(f"lanes must divide width {self.width}, not {lanes}")
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
            self.level.eq(held + self.r_rdy),
        ]
        held_next, r_rdy_next = Signal.like(held), Signal()
        produce_next, consume_next = Signal.like(produce), Signal.like(consume)
        m.d.comb += [
            held_next.eq(held + write - read),
            r_rdy_next.eq(read | (self.r_rdy & ~self.r_en)),
            produce_next.eq(Mux(write, following(produce), produce)),
            consume_next.eq(Mux(read, following(consume), consume)),
        ]
        m.d.sync += [held.eq(held_next), self.r_rdy.eq(r_rdy_next), produce.eq(produce_next),
                     consume.eq(consume_next)]
        # The lanes' flags for the next clock, from `held` and this clock's write and read rather
        # than from `held_next`, so that the count's adder is not in series with them (the
        # iCEBreaker 4x4's critical path ran from `held` through it). A read leaves room, a write
        # leaves an entry; otherwise the memory is full next clock only if it is full now or a write
        # fills its last entry, and empty only if it is empty now or a read takes its only entry.
        room_next, not_empty_next = Signal(), Signal()
        m.d.comb += [
            room_next.eq(read | ~((held == entries) | ((held == entries - 1) & write))),
            not_empty_next.eq(write | ~((held == 0) | ((held == 1) & read))),
        ]

        lane_width = self.width // self.lanes
        for k in range(self.lanes):
            storage = collision_free_memory(shape=lane_width, depth=entries)
            m.submodules[f"storage_{k}"] = storage
            write_port, read_port = storage.write_port(), storage.read_port()
            # This lane's copies of the control registers, so that its enables and addresses are
            # nets of its own (they equal the shared ones in every clock).
            room, not_empty = replica(1, f"room_{k}", init=1), replica(1, f"not_empty_{k}", init=0)
            ready = replica(1, f"r_rdy_{k}", init=0)
            lane_produce, lane_consume = replica(produce.shape(), f"produce_{k}", init=0), \
                replica(consume.shape(), f"consume_{k}", init=0)
            m.d.sync += [room.eq(room_next), not_empty.eq(not_empty_next), ready.eq(r_rdy_next),
                         lane_produce.eq(produce_next), lane_consume.eq(consume_next)]
            data = slice(k * lane_width, (k + 1) * lane_width)
            m.d.comb += [
                write_port.addr.eq(lane_produce),
                write_port.data.eq(self.w_data[data]),
                write_port.en.eq(self.w_en & room),
                read_port.addr.eq(lane_consume),
                read_port.en.eq(not_empty & (~ready | self.r_en)),
                self.r_data[data].eq(read_port.data),
            ]
        return m
