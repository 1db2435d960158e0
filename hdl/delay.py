"""Free-running delay lines: what goes in at clock t comes out at t + depth. (The array replicates
the register after its skew lines, one copy per group of rows: hdl/systolic.py.)"""

import operator

from amaranth.hdl import Module, Mux, Shape, ShapeCastable, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .memories import collision_free_memory

# From this depth on, a delay line is a memory (LUT RAM or block RAM) with one write and one
# registered read per clock instead of a chain of registers: the array's input skew holds
# C (C - 1) / 2 delayed activation groups, most of its flip-flops when it is a chain.
MEMORY_FROM_DEPTH = 4


class DelayLine(wiring.Component):
    """`o` is `i` delayed by `depth` clocks (depth 0: a wire). No reset, no enable.

    Members
    -------
    i : In(shape)
    o : Out(shape)
    """

    def __init__(self, shape, depth):
        self.shape = shape if isinstance(shape, ShapeCastable) else Shape.cast(shape)
        self.depth = operator.index(depth)
        if self.depth < 0:
            raise ValueError(f"depth must be at least 0, not {depth}")
        super().__init__({"i": In(self.shape), "o": Out(self.shape)})

    @property
    def uses_memory(self):
        return self.depth >= MEMORY_FROM_DEPTH

    def elaborate(self, platform):
        m = Module()
        if self.depth == 0:
            m.d.comb += self.o.eq(self.i)
        elif not self.uses_memory:
            chain = [Signal(self.shape, name=f"stage_{k}", reset_less=True) for k in range(self.depth)]
            m.d.sync += chain[0].eq(self.i)
            for k in range(1, self.depth):
                m.d.sync += chain[k].eq(chain[k - 1])
            m.d.comb += self.o.eq(chain[-1])
        else:
            # Clock t writes entry t mod depth and reads, registered, entry (t + 1) mod depth,
            # last written at clock t + 1 - depth: that value comes out at t + 1, depth clocks
            # after it went in. The read and the write of one clock never share an entry.
            entries = self.depth
            m.submodules.storage = storage = collision_free_memory(shape=self.shape, depth=entries)
            write, read = storage.write_port(), storage.read_port()
            pointer = Signal(range(entries), reset_less=True)
            following = Signal(range(entries))
            m.d.comb += following.eq(Mux(pointer == entries - 1, 0, pointer + 1))
            m.d.sync += pointer.eq(following)
            m.d.comb += [
                write.addr.eq(pointer), write.data.eq(self.i), write.en.eq(1),
                read.addr.eq(following), read.en.eq(1),
            ]
            m.d.comb += self.o.eq(read.data)
        return m
