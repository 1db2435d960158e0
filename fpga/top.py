"""The board top: the host link (UART + command decoder + array, hdl/hostlink.py) on a board's UART."""

from amaranth.hdl import Elaboratable, Module

from hdl.hostlink import HostLink
from hdl.uart import divisor_for

DEFAULT_BAUD = 115200


class BoardTop(Elaboratable):
    """The array on the board's default clock, talking to the host over the board's UART 0."""

    def __init__(self, config, *, clk_frequency, baud=DEFAULT_BAUD, rx_buffer=32, tx_buffer=512):
        self.baud = baud
        self.divisor = divisor_for(clk_frequency, baud)
        self.link = HostLink(config, divisor=self.divisor, rx_buffer=rx_buffer, tx_buffer=tx_buffer)

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        uart = platform.request("uart", 0)
        m.d.comb += [
            self.link.rx.eq(uart.rx.i),
            uart.tx.o.eq(self.link.tx),
        ]
        return m
