"""The boards `python -m fpga` builds for, on top of amaranth-boards.

Each board's platform is used as amaranth-boards defines it, except that building never requires
a programming tool (`required_tools` lists only the YoWASP ones) and the OrangeCrab's post-build
`dfu-suffix` step is dropped: programming is a separate, optional step (fpga/program.py).

All boards are the entries of BOARDS: adding a board is adding one. A board's device resources
(LUTs, flip-flops, DSPs, on-chip memories) are the device's datasheet numbers, which the tests
check against nextpnr's report; its clock is its platform's default clock, which also feeds the
family's PLL when a build asks for another array clock. The registry imports
amaranth-boards only when a platform is asked for, so BOARD_NAMES (and `python -m fpga --help`)
work without it.
"""

import dataclasses
import importlib
from collections.abc import Callable

from .families import ECP5, ICE40, Family

KBIT = 1024


class UnknownBoardError(ValueError):
    """An unknown board name, or no board definitions (amaranth-boards missing)."""


@dataclasses.dataclass(frozen=True)
class Memory:
    """Blocks of one kind of on-chip memory."""
    kind: str       # "EBR" (embedded block RAM) or "SPRAM" (the iCE40UP5K's single-port RAM)
    count: int
    bits: int       # of each block

    @property
    def total_bits(self):
        return self.count * self.bits


@dataclasses.dataclass(frozen=True)
class Board:
    """A board: its FPGA (family and device, with the device's resources), its amaranth-boards
    platform, its programmers and its UART. Adding a board is one entry in BOARDS."""
    name: str
    family: Family
    device: str
    # The amaranth-boards platform class, "module:Class": imported when first needed, so that the
    # registry (and `python -m fpga --help`) loads without amaranth-boards.
    platform_class: str
    luts: int                # LUT4s of the device (iCE40: logic cells, each one LUT4 and one flip-flop)
    flip_flops: int          # logic flip-flops of the device
    dsps: int                # multiplier blocks of the device (Family.dsp_cell)
    memories: tuple          # Memory blocks on the device, one entry per kind
    programmers: tuple       # (tool, arguments before the bitstream), in order of preference
    uart_note: str           # where the host link's UART is on the board
    # A function returning the resources to add to the platform (a function because building
    # resources imports amaranth-boards); None: the platform's own suffice.
    extra_resources: Callable | None = None
    # The default clock's pin is the PLL's own input pad (iCE40: the PLL must then be the _PAD
    # variant, fed from the pin itself, not from the clock's global buffer).
    clock_pad_feeds_pll: bool = False
    # The default array clock by size: ((most array cells, MHz), ...), smallest first, each the
    # constraint that builds of that size closed (docs/fpga.md, "Default clocks"); larger arrays
    # run at the board's clock.
    clock_classes: tuple = ()

    def __post_init__(self):
        if not isinstance(self.family, Family):
            raise TypeError(f"{self.name}: family must be a fpga.families.Family, not {self.family!r}")
        for field in ("luts", "flip_flops", "dsps"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{self.name}: {field} must be positive")
        kinds = [memory.kind for memory in self.memories]
        if len(set(kinds)) != len(kinds) or not set(kinds) <= dict(self.family.memory_bels).keys():
            raise ValueError(f"{self.name}: memories must be one entry per kind of the {self.family.title} "
                             f"({', '.join(dict(self.family.memory_bels))}), not {kinds}")

    @property
    def platform(self):
        """The amaranth-boards platform class; UnknownBoardError when amaranth-boards is missing."""
        module, _, name = self.platform_class.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError as e:
            try:
                importlib.import_module("amaranth_boards")
            except ImportError:
                raise UnknownBoardError("amaranth-boards is not installed: pip install amaranth-boards "
                                        "(or pip install -e \".[fpga]\")") from None
            raise UnknownBoardError(f"cannot import the {self.name}'s platform {self.platform_class}: {e}") from None

    @property
    def clock_hz(self):
        """The frequency of the board's default clock, as its amaranth-boards platform gives it."""
        return self.platform().default_clk_frequency

    @property
    def clock_mhz(self):
        return self.clock_hz / 1e6

    def pll(self, target_hz):
        """The PLL setting (fpga.families.PLLSetting) that makes the clock nearest `target_hz` from
        the board's clock; fpga.families.PLLError (one line) if the family's PLL cannot."""
        return self.family.pll(self.clock_hz, target_hz, dedicated_pad=self.clock_pad_feeds_pll)

    @property
    def bitstream(self):
        """Suffix of the file a programmer loads."""
        return self.family.bitstream

    def default_clock_mhz(self, cells):
        """The array clock for an array of `cells` cells when none is asked for: its size class's,
        or None (the board's own clock) beyond the classes."""
        for most, mhz in self.clock_classes:
            if cells <= most:
                return mhz
        return None

    def memory(self, kind):
        """The Memory of `kind` ("EBR", "SPRAM"); KeyError if the device has none."""
        for memory in self.memories:
            if memory.kind == kind:
                return memory
        raise KeyError(f"the {self.device} has no {kind}")

    @property
    def memory_bits(self):
        """Bits of on-chip memory, all kinds together."""
        return sum(memory.total_bits for memory in self.memories)

    def make_platform(self):
        family_tools = self.family.required_tools
        base = self.platform

        class BuildOnlyPlatform(base):
            required_tools = family_tools

            @property
            def command_templates(self):
                # amaranth-boards' OrangeCrab appends a dfu-suffix step (a system tool); the
                # YoWASP flow ends with the packer.
                return [t for t in super().command_templates if "dfu-suffix" not in t]

        BuildOnlyPlatform.__name__ = base.__name__
        platform = BuildOnlyPlatform()
        if self.extra_resources:
            platform.add_resources(list(self.extra_resources()))
        return platform


def _feather_uart():
    # The OrangeCrab has no UART of its own (its USB port goes straight to the FPGA): put one on
    # the Feather header's RX/TX pins, where Feather boards have it.
    from amaranth.build import Attrs
    from amaranth_boards.resources import UARTResource
    return [UARTResource(0, rx="0", tx="1", conn=("io", 0), attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP"))]


BOARDS = {b.name: b for b in (
    Board(
        name="icebreaker", family=ICE40, device="iCE40UP5K",
        platform_class="amaranth_boards.icebreaker:ICEBreakerPlatform",
        luts=5280, flip_flops=5280, dsps=8,
        memories=(Memory("SPRAM", count=4, bits=256 * KBIT), Memory("EBR", count=30, bits=4 * KBIT)),
        programmers=(("iceprog", ()), ("openFPGALoader", ("-b", "icebreaker"))),
        uart_note="the FTDI's second channel (the board's USB port, e.g. /dev/ttyUSB1)",
        # The 12 MHz oscillator is on pin 35, the UP5K's PLL input pad.
        clock_pad_feeds_pll=True,
        # Measured: a bare 4x4 alpha 4 array (96% of the logic cells) 34.8 MHz at a 30 MHz constraint,
        # 32.6 at 33, 35.5-36.2 at 39.75; a bare 2x4 alpha 2 39.1 at 39.75 (the digits accelerators
        # 2x2 and 4x2 at 39.75: 44.3 and 42.1 MHz). The fit sweep at 30 MHz (docs/results/fpga.md):
        # every largest int8 and TQ array up to 5x4 closes it, at 34.6-44.7 MHz.
        clock_classes=((20, 30),)),
    Board(
        name="ulx3s-85f", family=ECP5, device="LFE5U-85F",
        platform_class="amaranth_boards.ulx3s:ULX3S_85F_Platform",
        luts=83640, flip_flops=83640, dsps=156,
        memories=(Memory("EBR", count=208, bits=18 * KBIT),),
        programmers=(("openFPGALoader", ("-b", "ulx3s", "-f")),),
        uart_note="the FT231X on the US1 USB port (e.g. /dev/ttyUSB0)",
        # Measured at a 100 MHz constraint: the digits accelerator 8x8, 107.7 MHz; the bare 16x16
        # alpha 4 array with the link's stream hops 119.98 / 118.54 / 115.17 MHz (nextpnr's default
        # router, seeds none, 2, 3; docs/fpga.md "Timing closure"). The fit sweep at 100 MHz
        # (docs/results/fpga.md): every alpha's largest array closes it, dense 24x24 (576 cells) at
        # 106.1, alpha 2 22x22 at 104.7, alpha 4 20x20 at 100.65 (the thinnest margin, on a design
        # before weights_ready got its copy for the rows), alpha 8 17x17 at 111.4 MHz.
        clock_classes=((576, 100),)),
    Board(
        name="orangecrab-25f", family=ECP5, device="LFE5U-25F",
        platform_class="amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
        luts=24288, flip_flops=24288, dsps=28,
        memories=(Memory("EBR", count=56, bits=18 * KBIT),),
        programmers=(("openFPGALoader", ("-b", "orangecrab")),),
        uart_note="a 3.3 V USB-serial adapter on the Feather header: board RX = pin 0, TX = pin 1",
        extra_resources=_feather_uart,
        # Measured at a 100 MHz constraint: the digits accelerators 4x4, 138.9 (colcomb) and 134.1 MHz
        # (dense); the fit sweep (docs/results/fpga.md): int8 arrays up to the largest that fits, 12x12
        # dense at 159.4 MHz and 10x10 alpha 8 at 144.7.
        clock_classes=((144, 100),)),
)}

BOARD_NAMES = tuple(BOARDS)


def board(name):
    """The Board called `name`; UnknownBoardError (with the known names) otherwise, or when
    amaranth-boards is missing."""
    if name not in BOARDS:
        raise UnknownBoardError(f"unknown board {name!r}: choose one of {', '.join(BOARD_NAMES)}")
    BOARDS[name].platform           # amaranth-boards missing: say so now, not halfway into a build
    return BOARDS[name]
