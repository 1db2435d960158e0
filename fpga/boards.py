"""The boards `python -m fpga` builds for, on top of amaranth-boards.

Each board's platform is used as amaranth-boards defines it, except that building never requires
a programming tool (`required_tools` lists only the YoWASP ones) and the OrangeCrab's post-build
`dfu-suffix` step is dropped: programming is a separate, optional step (fpga/program.py).
"""

import dataclasses

from .families import ECP5, ICE40, Family


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    family: Family
    device: str
    platform: type           # an amaranth-boards platform class
    dsps: int                # multiplier blocks of the device (SB_MAC16 / MULT18X18D)
    flip_flops: int          # logic flip-flops of the device
    bitstream: str           # suffix of the file a programmer loads
    programmers: tuple       # (tool, arguments before the bitstream), in order of preference
    uart_note: str           # where the host link's UART is on the board
    extra_resources: tuple = ()

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
            platform.add_resources(list(self.extra_resources))
        return platform


class UnknownBoardError(ValueError):
    """An unknown board name, or no board definitions (amaranth-boards missing)."""


def _boards():
    from amaranth.build import Attrs
    try:
        from amaranth_boards.icebreaker import ICEBreakerPlatform
        from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform
        from amaranth_boards.resources import UARTResource
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
    except ImportError:
        raise UnknownBoardError("amaranth-boards is not installed: pip install amaranth-boards "
                                "(or pip install -e \".[fpga]\")") from None
    return {
        "icebreaker": Board(
            name="icebreaker", family=ICE40, device="iCE40UP5K", platform=ICEBreakerPlatform,
            dsps=8, flip_flops=5280, bitstream="bin",
            programmers=(("iceprog", ()), ("openFPGALoader", ("-b", "icebreaker"))),
            uart_note="the FTDI's second channel (the board's USB port, e.g. /dev/ttyUSB1)"),
        "ulx3s-85f": Board(
            name="ulx3s-85f", family=ECP5, device="LFE5U-85F", platform=ULX3S_85F_Platform,
            dsps=156, flip_flops=83640, bitstream="bit",
            programmers=(("openFPGALoader", ("-b", "ulx3s", "-f")),),
            uart_note="the FT231X on the US1 USB port (e.g. /dev/ttyUSB0)"),
        "orangecrab-25f": Board(
            name="orangecrab-25f", family=ECP5, device="LFE5U-25F", platform=OrangeCrabR0_2_25FPlatform,
            dsps=28, flip_flops=24288, bitstream="bit",
            programmers=(("openFPGALoader", ("-b", "orangecrab")),),
            uart_note="a 3.3 V USB-serial adapter on the Feather header: board RX = pin 0, TX = pin 1",
            # The OrangeCrab has no UART of its own (its USB port goes straight to the FPGA):
            # put one on the Feather header's RX/TX pins, where Feather boards have it.
            extra_resources=(UARTResource(0, rx="0", tx="1", conn=("io", 0),
                                          attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")),)),
    }


BOARD_NAMES = ("icebreaker", "ulx3s-85f", "orangecrab-25f")


def board(name):
    """The Board called `name`; UnknownBoardError (with the known names) otherwise."""
    boards = _boards()
    if name not in boards:
        raise UnknownBoardError(f"unknown board {name!r}: choose one of {', '.join(BOARD_NAMES)}")
    return boards[name]
