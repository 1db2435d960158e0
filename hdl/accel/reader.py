"""A memory read as a stream: addresses in, what they hold out, one beat per clock, none lost."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class MemoryReader(wiring.Component):
    """Reads a memory with a synchronous read (`mem_addr` and `mem_en` out at clock t, `mem_data` in
    at t + 1: one amaranth.lib.memory read port, or several memories read at one address) at each
    address offered on `addresses` and offers the data, with the address's tag, on `data`.

    The memory's own output register is the pipeline stage: a read is issued only when its data
    will be taken (nothing is offered, or what is offered is taken in this clock), and otherwise
    the read enable is low, so the memory holds the offered word. No buffer of words: the model
    accelerator's 128-bit activation reader spent 531 flip-flops of the iCEBreaker's 5,280 logic
    cells on one. An address taken at clock t has its data offered at t + READER_LATENCY = 1
    (spec/model.py), a beat per clock. `data.ready` must come from a register (the array's readies
    do): it reaches the memory's enable and the address producer through one gate.

    Members
    -------
    addresses : In(stream.Signature({addr, tag}))
    data      : Out(stream.Signature({data, tag}))
    mem_addr  : Out(addr_width)
    mem_en    : Out(1)
    mem_data  : In(data_width)
    """

    def __init__(self, addr_width, data_width, tag_shape):
        self.request = data.StructLayout({"addr": addr_width, "tag": tag_shape})
        self.response = data.StructLayout({"data": data_width, "tag": tag_shape})
        super().__init__({
            "addresses": In(stream.Signature(self.request)),
            "data": Out(stream.Signature(self.response)),
            "mem_addr": Out(addr_width),
            "mem_en": Out(1),
            "mem_data": In(data_width),
        })

    def elaborate(self, platform):
        m = Module()
        offered = Signal()
        tag = Signal(self.request["tag"].shape, reset_less=True)
        advance = Signal()                # the word on the memory's output is gone (or was never there)
        m.d.comb += [
            advance.eq(~offered | self.data.ready),
            self.addresses.ready.eq(advance),
            self.mem_addr.eq(self.addresses.payload.addr),
            self.mem_en.eq(advance),
            self.data.valid.eq(offered),
            self.data.payload.data.eq(self.mem_data),
            self.data.payload.tag.eq(tag),
        ]
        with m.If(advance):
            m.d.sync += [offered.eq(self.addresses.valid), tag.eq(self.addresses.payload.tag)]
        return m
