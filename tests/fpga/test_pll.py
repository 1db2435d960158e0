"""The PLLs that clock the array at `--clock-mhz`: the divider search of each family against the
datasheets' limits and the settings Lattice's and icestorm's/prjtrellis's tools give, the refusal
of frequencies a PLL cannot make, the reset that waits for lock, and the board top's use of them.

Fast: no tool runs here (tests/fpga/test_build.py builds bitstreams with a PLL).
"""

import math
import re

import pytest

from amaranth.hdl import ClockDomain, Module, Signal
from amaranth.sim import Simulator

from fpga import families
from fpga.boards import BOARD_NAMES, board as get_board
from fpga.families import ECP5, ECP5_PLL_LIMITS, ICE40, ICE40_PLL_LIMITS, PLLError, ice40_filter_range
from fpga.top import ARRAY_CLOCK, BoardTop, LockReset
from spec import ArrayConfig

MHZ = 1e6


def within(value, limits):
    return limits[0] <= value <= limits[1]


# (input MHz, output MHz) -> (DIVR, DIVF, DIVQ, FILTER_RANGE), as icestorm's icepll prints them.
ICEPLL = {
    (12, 24): (0, 63, 5, 1),
    (12, 30): (0, 79, 5, 1),
    (12, 96): (0, 63, 3, 1),
    (48, 60): (0, 19, 4, 4),
    (48, 100): (2, 49, 3, 1),
    (48, 150): (1, 24, 2, 2),
    (96, 20): (2, 19, 5, 3),
    (100, 30): (4, 47, 5, 2),
}


@pytest.mark.parametrize("given, expected", ICEPLL.items())
def test_ice40_dividers_are_icepll_s(given, expected):
    fin, fout = given
    setting = ICE40.pll(fin * MHZ, fout * MHZ)
    assert tuple(dict(setting.dividers).values()) == expected
    divr, divf, divq, _ = expected
    assert setting.output_hz == pytest.approx(fin * MHZ * (divf + 1) / ((divr + 1) * 2 ** divq))
    assert setting.primitive == "SB_PLL40_CORE" and not setting.from_pin


# (input MHz, output MHz) -> (CLKI_DIV, CLKFB_DIV, CLKOP_DIV, VCO MHz), as Lattice's Clarity Designer
# chose them (the table in prjtrellis's ecppll.cpp) or ecppll prints them.
ECPPLL = {
    (12, 48): (1, 4, 12, 576),
    (12, 60): (1, 5, 10, 600),
    (20, 30): (2, 3, 20, 600),
    (45, 30): (3, 2, 20, 600),
    (100, 400): (1, 4, 1, 400),
    (12, 36): (1, 3, 17, 612),          # Clarity: 1, 3, 18 (VCO 648); ecppll, as here, the VCO nearer 600
    (16, 64): (1, 4, 9, 576),
    (25, 100): (1, 4, 6, 600),
}


@pytest.mark.parametrize("given, expected", ECPPLL.items())
def test_ecp5_dividers_are_lattice_s(given, expected):
    fin, fout = given
    setting = ECP5.pll(fin * MHZ, fout * MHZ)
    dividers = dict(setting.dividers)
    assert (dividers["CLKI_DIV"], dividers["CLKFB_DIV"], dividers["CLKOP_DIV"]) == expected[:3]
    assert setting.vco_hz == expected[3] * MHZ and setting.output_hz == fout * MHZ
    assert dividers["CLKOP_CPHASE"] == expected[2] // 2 and setting.primitive == "EHXPLLL"


@pytest.mark.parametrize("name", BOARD_NAMES)
def test_every_setting_keeps_to_the_datasheet(name):
    """For each board's clock and targets across the PLL's range: the nearest frequency, within 2%,
    with the phase detector, the VCO and the output inside the family's limits, and the
    frequencies the dividers say."""
    board = get_board(name)
    limits = {ICE40: ICE40_PLL_LIMITS, ECP5: ECP5_PLL_LIMITS}[board.family]
    lo, hi = limits.output
    # From 16 MHz (the iCE40's lowest): the ECP5 makes its lowest outputs (3.125 MHz up) in coarse
    # steps of the board's clock divided by CLKI_DIV.
    lo = max(lo, 16 * MHZ)
    for target in [lo, hi] + [lo + (hi - lo) * i / 23 for i in range(1, 23)]:
        setting = board.pll(target)
        assert setting.input_hz == board.clock_hz and setting.requested_hz == round(target)
        assert abs(setting.output_hz - target) <= 0.02 * target, setting.describe()
        for value, limit in ((setting.pfd_hz, limits.pfd), (setting.vco_hz, limits.vco),
                             (setting.output_hz, limits.output)):
            assert within(value, limit), setting.describe()
        d = dict(setting.dividers)
        if board.family == ICE40:
            assert setting.pfd_hz == pytest.approx(board.clock_hz / (d["DIVR"] + 1))
            assert setting.vco_hz == pytest.approx(setting.pfd_hz * (d["DIVF"] + 1))
            assert setting.output_hz == pytest.approx(setting.vco_hz / 2 ** d["DIVQ"])
            assert 0 <= d["DIVR"] < 16 and 0 <= d["DIVF"] < 128 and 1 <= d["DIVQ"] <= 6
            assert d["FILTER_RANGE"] == ice40_filter_range(setting.pfd_hz)
        else:
            # CLKOP is fed back; the array's clock is CLKOP or, with a CLKOS_DIV, CLKOS.
            clkop = setting.pfd_hz * d["CLKFB_DIV"]
            assert setting.pfd_hz == pytest.approx(board.clock_hz / d["CLKI_DIV"])
            assert setting.vco_hz == pytest.approx(clkop * d["CLKOP_DIV"]) and within(clkop, limits.output)
            assert setting.output_hz == pytest.approx(setting.vco_hz / d.get("CLKOS_DIV", d["CLKOP_DIV"]))
            assert all(1 <= d[n] <= 128 for n in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV")) and d["CLKFB_DIV"] <= 80
            assert 1 <= d.get("CLKOS_DIV", 1) <= 128


def test_nearest_frequency_is_taken_and_said():
    setting = ICE40.pll(12 * MHZ, 100 * MHZ)        # 12 MHz x 67 / 8
    assert setting.output_hz == 100.5 * MHZ and setting.requested_hz == 100 * MHZ
    assert setting.describe() == ("SB_PLL40_CORE 12 MHz -> 100.5 MHz (DIVR 0, DIVF 66, DIVQ 3, FILTER_RANGE 1; "
                                  "VCO 804 MHz)")
    assert setting.as_dict()["output_mhz"] == 100.5 and setting.as_dict()["requested_mhz"] == 100


def test_filter_range_is_icepll_s():
    assert [ice40_filter_range(f * MHZ) for f in (10, 16.9, 17, 25.9, 26, 43.9, 44, 65.9, 66, 100.9, 101, 133)] == \
        [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


@pytest.mark.parametrize("family, fin, fout, message", [
    (ICE40, 12, 300, "the iCE40 PLL makes 16-275 MHz, not 300 MHz"),
    (ICE40, 12, 12, "the iCE40 PLL makes 16-275 MHz, not 12 MHz"),
    (ICE40, 8, 48, "the iCE40 PLL needs a reference clock of 10-133 MHz, not 8 MHz"),
    (ECP5, 25, 500, "the ECP5 PLL makes 3.125-400 MHz, not 500 MHz"),
    (ECP5, 25, 1, "the ECP5 PLL makes 3.125-400 MHz, not 1 MHz"),
])
def test_unreachable_frequencies_are_one_line(family, fin, fout, message):
    with pytest.raises(PLLError) as error:
        family.pll(fin * MHZ, fout * MHZ)
    assert str(error.value) == message and "\n" not in message


def test_a_frequency_too_far_from_any_setting_is_refused(monkeypatch):
    monkeypatch.setattr(families, "PLL_TOLERANCE", 0.001)
    with pytest.raises(PLLError, match=r"^the iCE40 PLL cannot make 100 MHz from 12 MHz within 0\.1% "
                                       r"\(closest: 100\.5 MHz\)$"):
        ICE40.pll(12 * MHZ, 100 * MHZ)


def test_ecp5_reaches_between_its_feedback_steps_with_clkos():
    """From the OrangeCrab's 48 MHz, CLKOP fed back makes nothing between 48 and 51.2 MHz (the phase
    detector needs 3.125 MHz or more); 50 MHz comes from the VCO through CLKOS."""
    setting = ECP5.pll(48 * MHZ, 50 * MHZ)
    d = dict(setting.dividers)
    assert setting.output_hz == 50 * MHZ and setting.vco_hz == d["CLKOS_DIV"] * 50 * MHZ
    assert "CLKOS_DIV" not in dict(ECP5.pll(48 * MHZ, 60 * MHZ).dividers)      # CLKOP where it is exact


def test_the_icebreaker_clock_pin_is_the_pll_pad():
    """The iCEBreaker's 12 MHz oscillator is on pin 35, the UP5K PLL's own input pad: only the _PAD
    PLL may take it (a _CORE PLL fed from it does not place). The ECP5 boards take any pin."""
    assert get_board("icebreaker").pll(24 * MHZ).primitive == "SB_PLL40_PAD"
    assert get_board("icebreaker").pll(24 * MHZ).from_pin
    assert not any(get_board(name).pll(60 * MHZ).from_pin for name in ("ulx3s-85f", "orangecrab-25f"))


def simulate_lock_reset(cycles, script):
    """Run LockReset on a 1-domain design: `script(ctx, locked, reset)` drives `locked`."""
    m = Module()
    m.domains.sync = sync = ClockDomain("sync")
    m.submodules.dut = dut = LockReset(cycles=cycles)
    reset = Signal()
    m.d.comb += reset.eq(sync.rst)
    sim = Simulator(m)
    sim.add_clock(1e-8, domain="sync")

    async def testbench(ctx):
        await script(ctx, dut.locked, reset)
    sim.add_testbench(testbench)
    sim.run()


def test_lock_reset_waits_for_lock_and_the_startup_time():
    seen = {}

    async def script(ctx, locked, reset):
        for _ in range(20):                 # no lock yet: held in reset
            await ctx.tick()
            assert ctx.get(reset) == 1
        ctx.set(locked, 1)
        released = None
        for n in range(40):
            await ctx.tick()
            if released is None and ctx.get(reset) == 0:
                released = n
        seen["released"] = released
        assert ctx.get(reset) == 0
        ctx.set(locked, 0)                  # lock lost: reset again at once, for as long again
        await ctx.tick()
        await ctx.tick()
        assert ctx.get(reset) == 1
    simulate_lock_reset(10, script)
    # Two synchronizer stages, then 10 clocks of startup time, then the register.
    assert 10 <= seen["released"] <= 14


def test_lock_reset_wants_a_positive_time():
    with pytest.raises(ValueError, match="cycles must be at least 1, not 0"):
        LockReset(cycles=0)


@pytest.mark.parametrize("name, mhz, primitive", [("icebreaker", 24, "SB_PLL40_PAD"),
                                                  ("orangecrab-25f", 60, "EHXPLLL")])
def test_board_top_with_a_pll(tmp_path, name, mhz, primitive):
    """The build plan of a board top at a PLL clock: the PLL with the search's dividers, fed from
    the board's clock pin, the constraint on its output net at the PLL's frequency, the UART divisor
    of that frequency, and the startup time of the family."""
    board = get_board(name)
    setting = board.pll(mhz * MHZ)
    platform = board.make_platform()
    top = BoardTop(ArrayConfig(rows=1, cols=1), clk_frequency=platform.default_clk_frequency, pll=setting,
                   family=board.family)
    assert top.clk_frequency == mhz * MHZ and top.divisor == round(mhz * MHZ / 115200)
    assert top.startup_cycles == max(math.ceil(board.family.startup_us * mhz), 1)
    files = platform.build(top, name="top", do_build=False).files
    rtlil = files["top.il"]
    cell = re.search(rf"cell \\{primitive} \\pll\n(.*?)\n  end", rtlil, re.S)[1]
    for parameter, value in setting.dividers:
        assert re.search(rf"parameter \\{parameter} (\d+')?0*{value:b}\b" if board.family == ICE40 else
                         rf"parameter \\{parameter} {value}\b", cell), (parameter, cell)
    if setting.from_pin:
        assert "connect \\PACKAGEPIN \\clk12_0__io" in cell
    else:
        assert "connect \\CLKI " in cell
    constraints = files["top.pcf"] if board.family == ICE40 else files["top.lpf"]
    assert (f"set_frequency {ARRAY_CLOCK} {mhz:.1f}" if board.family == ICE40
            else f'FREQUENCY NET "{ARRAY_CLOCK}" {mhz * MHZ:.1f} HZ;') in constraints
    assert re.search(rf"attribute \\keep 1\n\s*wire width 1 \\{ARRAY_CLOCK}\b", rtlil)


def test_board_top_with_a_pll_needs_the_family():
    with pytest.raises(TypeError, match="needs the family"):
        BoardTop(ArrayConfig(rows=1, cols=1), clk_frequency=12e6, pll=ICE40.pll(12 * MHZ, 24 * MHZ))
