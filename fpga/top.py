"""The board top: the host link (UART + command decoder + array or model accelerator, hdl/hostlink.py)
on a board's UART, clocked by the board's clock or by the FPGA's PLL at another frequency."""

import math
import operator

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from hdl.hostlink import HostLink
from hdl.uart import divisor_for

DEFAULT_BAUD = 115200
# The name of the PLL's output net: the clock constraint names it, and the build finds its Fmax
# in nextpnr's report by it.
ARRAY_CLOCK = "array_clk"


def make_link(config, *, divisor, rx_buffer=None, frame_timeout=64, dsp_cells=0, program=None):
    """The host link of an array configuration, or of a model accelerator's compiled `program`."""
    if program is not None:
        from hdl.accel.link import model_link
        return model_link(program.config, program, divisor=divisor, rx_buffer=rx_buffer, frame_timeout=frame_timeout,
                          dsp_cells=dsp_cells)
    return HostLink(config, divisor=divisor, rx_buffer=rx_buffer, frame_timeout=frame_timeout, dsp_cells=dsp_cells)


class LockReset(Elaboratable):
    """Holds `domain` in reset while `locked` is low and `cycles` clocks of the domain after it
    has risen, from a register.

    `locked` (a PLL's LOCK, asynchronous to everything) goes through a reset synchronizer into a
    local "startup" domain on the same clock; a counter there releases the register that drives
    the domain's reset. Losing lock resets the domain again within the synchronizer's two clocks.
    """

    def __init__(self, *, cycles, domain="sync"):
        self.cycles = operator.index(cycles)
        if self.cycles < 1:
            raise ValueError(f"cycles must be at least 1, not {cycles}")
        self.domain = domain
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.startup = ClockDomain("startup", local=True)
        m.d.comb += ClockSignal("startup").eq(ClockSignal(self.domain))
        m.submodules.lock_sync = ResetSynchronizer(~self.locked, domain="startup")
        timer = Signal(range(self.cycles + 1))
        hold = Signal(init=1)
        with m.If(timer == self.cycles):
            m.d.startup += hold.eq(0)
        with m.Else():
            m.d.startup += timer.eq(timer + 1)
        m.d.comb += ResetSignal(self.domain).eq(hold)
        return m


class BoardTop(Elaboratable):
    """The array talking to the host over the board's UART 0, in the "sync" domain.

    Without `pll` the "sync" domain is the platform's, on the board's default clock
    (`clk_frequency` Hz). With `pll` (a fpga.families.PLLSetting, from `Board.pll`) the board's
    clock feeds the `family`'s PLL and "sync" runs at the PLL's output frequency, constrained at
    that frequency so that nextpnr optimises for it; the UART divisor follows that frequency. The
    domain stays in reset until the PLL reports lock and the family's `startup_us` longer (iCE40
    block RAMs read zeroes for a while after configuration): see LockReset.
    """

    def __init__(self, config, *, clk_frequency, baud=DEFAULT_BAUD, pll=None, family=None, rx_buffer=None,
                 dsp_cells=0, program=None):
        if pll is not None and family is None:
            raise TypeError("a BoardTop with a PLL needs the family that builds it")
        self.baud = baud
        self.pll, self.family = pll, family
        self.clk_frequency = pll.output_hz if pll is not None else clk_frequency
        self.divisor = divisor_for(self.clk_frequency, baud)
        self.link = make_link(config, divisor=self.divisor, rx_buffer=rx_buffer, dsp_cells=dsp_cells,
                              program=program)

    @property
    def startup_cycles(self):
        """Clocks of the array clock that the array stays in reset after the PLL has locked."""
        return max(math.ceil(self.family.startup_us * 1e-6 * self.clk_frequency), 1)

    def elaborate(self, platform):
        m = Module()
        if self.pll is not None:
            self._clock_from_pll(m, platform)
        m.submodules.link = self.link
        uart = platform.request("uart", 0)
        m.d.comb += [
            self.link.rx.eq(uart.rx.i),
            uart.tx.o.eq(self.link.tx),
        ]
        return m

    def _clock_from_pll(self, m, platform):
        pin = platform.request(platform.default_clk, dir="-")
        # `keep`: Yosys would otherwise drop this name among the net's aliases (it does on the
        # ECP5), and nextpnr would ignore the constraint on it.
        clock_in, clock = Signal(), Signal(name=ARRAY_CLOCK, attrs={"keep": 1})
        if not self.pll.from_pin:
            m.submodules.clock_buffer = buffer = io.Buffer("i", pin)
            m.d.comb += clock_in.eq(buffer.i)
        m.submodules.lock_reset = lock_reset = LockReset(cycles=self.startup_cycles)
        m.submodules.pll = self.family.pll_instance(self.pll, pin.io if self.pll.from_pin else None, clock_in,
                                                    clock, lock_reset.locked)
        platform.add_clock_constraint(clock, self.pll.output_hz)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clock)
