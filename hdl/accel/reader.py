"""A memory read as a stream: addresses in, what they hold out, one beat per clock, none lost."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.checks import positive_int


class PrefetchReader(wiring.Component):
    """Reads a memory with a synchronous read (`mem_addr` out at clock t, `mem_data` in at t + 1;
    one amaranth.lib.memory read port, or several memories read at one address) at each address
    offered on `addresses` and offers the data, with the address's tag, on `data`.

    An address is taken only when the buffer is sure to have room for what it reads (a credit:
    buffered beats plus the read in flight), so the memory's read is never stalled and `data`'s
    ready reaches no further than this buffer. With `depth` >= READER_LATENCY + 1 it sustains a
    beat per clock: address taken at clock t, its data offered at t + READER_LATENCY
    (spec/model.py): the read (1), the buffer's write and its output register (2).

    Members
    -------
    addresses : In(stream.Signature({addr, tag}))
    data      : Out(stream.Signature({data, tag}))
    mem_addr  : Out(addr_width)
    mem_data  : In(data_width)
    """

    def __init__(self, addr_width, data_width, tag_shape, *, depth):
        self.depth = positive_int("depth", depth)
        self.request = data.StructLayout({"addr": addr_width, "tag": tag_shape})
        self.response = data.StructLayout({"data": data_width, "tag": tag_shape})
        super().__init__({
            "addresses": In(stream.Signature(self.request)),
            "data": Out(stream.Signature(self.response)),
            "mem_addr": Out(addr_width),
            "mem_data": In(data_width),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=self.response.size, depth=self.depth)
        returning = Signal()                          # a read issued last clock: its data is on the port
        tag = Signal(self.request["tag"].shape, reset_less=True)
        m.d.comb += [
            self.addresses.ready.eq(returning + buffer.level < self.depth),
            self.mem_addr.eq(self.addresses.payload.addr),
        ]
        m.d.sync += [returning.eq(self.addresses.valid & self.addresses.ready),
                     tag.eq(self.addresses.payload.tag)]
        response = Signal(self.response)
        m.d.comb += [
            response.data.eq(self.mem_data),
            response.tag.eq(tag),
            buffer.w_data.eq(response.as_value()),
            buffer.w_en.eq(returning),
            self.data.valid.eq(buffer.r_rdy),
            self.data.payload.eq(buffer.r_data),
            buffer.r_en.eq(self.data.ready),
        ]
        return m
