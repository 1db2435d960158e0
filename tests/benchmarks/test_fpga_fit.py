"""benchmarks/fpga_fit.py: the search for the largest array and the table it prints, on a simulated
device (a linear LUT cost per cell and per row and column) in place of Yosys and nextpnr, so the
search logic is checked in milliseconds against a known answer."""

import json
import os
import sys
import types

import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import fpga_fit  # noqa: E402
import report  # noqa: E402
from fpga.boards import board as get_board  # noqa: E402
from fpga.build import BuildError, dsp_cells  # noqa: E402
from tests.processes import still_running  # noqa: E402

BOARD = "orangecrab-25f"      # ECP5 LFE5U-25F: 24288 LUT4, 28 DSPs


def simulated_luts(config, dsp):
    """LUTs of a simulated build: fixed cost, a cost per row and column, cheaper cells on DSPs."""
    n_dsp = dsp_cells(get_board(BOARD), config, dsp)
    per_cell = 300 * config.alpha if config.mac_style.uses_terms else 100 + 20 * config.alpha
    return 1500 + 40 * (config.rows + config.cols) + (per_cell - 60) * n_dsp + per_cell * (
        config.rows * config.cols - n_dsp)


@pytest.fixture
def simulated(monkeypatch):
    """Replace the toolchain with the simulated device; returns the list of built configurations."""
    built = []

    def build(board, config, out, **kwargs):
        built.append((config.rows, config.cols, config.alpha, kwargs["dsp"]))
        clock = kwargs.get("clock_mhz") or 48.0
        luts = simulated_luts(config, kwargs["dsp"])
        if luts > 24288:
            raise BuildError(f"the design does not fit the {board.device}: it needs {luts} of 24288 TRELLIS_COMB")
        summary = {
            "config": config.as_dict(),
            "clock_mhz": clock,
            "pll": {"output_mhz": clock} if kwargs.get("clock_mhz") else None,
            "dsp_cells": dsp_cells(board, config, kwargs["dsp"]),
            "router": "router1",
            "timing_pass": True,
            "fmax": {"array_clk": {"achieved_mhz": 60.0 + clock, "constraint_mhz": clock, "pass": True}},
            "array_clock": "array_clk",
            "critical_path": {"clock": "array_clk", "from": "link.array.acc_mem.0.0", "to": "link.array.acc_mem.0.1",
                              "to_port": "DIB6", "delay_ns": 10.0, "logic_ns": 6.0, "routing_ns": 4.0,
                              "logic_levels": 2, "carry_steps": 26},
            "resources": {name: {"used": used, "available": available} for name, used, available in (
                ("luts", luts, 24288), ("flip_flops", 1000, 24288), ("block_ram", 4, 56),
                ("dsp", dsp_cells(board, config, kwargs["dsp"]), 28))},
        }
        return types.SimpleNamespace(summary=summary)

    monkeypatch.setattr(fpga_fit, "build", build)
    return built


def true_largest(alpha, mac="int"):
    config = lambda r: fpga_fit.ArrayConfig(rows=r, cols=r, alpha=alpha, **fpga_fit.parse_mac(mac))  # noqa: E731
    return max(r for r in range(1, 65) if simulated_luts(config(r), "auto") <= 24288)


@pytest.mark.parametrize("alpha,mac", [(1, "int"), (8, "int"), (1, "2x3"), (4, "2x3")])
def test_finds_the_largest_square_array_with_few_builds(tmp_path, simulated, alpha, mac):
    sweep = fpga_fit.Sweep(str(tmp_path / "results.json"), str(tmp_path / "work"), 115200)
    rows, fail = sweep.largest(BOARD, alpha, mac, max_rows=64)
    assert (rows, fail) == (true_largest(alpha, mac), true_largest(alpha, mac) + 1)
    # The model's small builds (and 3x3 without DSPs for int8), then a few around the prediction.
    assert len(simulated) <= len(fpga_fit.MODEL_SIZES) + (mac == "int") + 3, simulated


def test_results_are_cached_and_the_table_prints_from_them(tmp_path, simulated, capsys):
    results = str(tmp_path / "results.json")
    args = ["--boards", BOARD, "--alphas", "1", "--results", results, "--work-dir", str(tmp_path / "work")]
    assert fpga_fit.main(args) == 0
    table = capsys.readouterr().out.splitlines()
    n = true_largest(1)
    row = table[2].split(" | ")
    # Costs are symmetric in rows and columns here, so both rectangles fit; the one with more rows wins.
    assert row[1:4] == ["int8", "dense", f"{n + 1}x{n}"]
    config = lambda r, c: fpga_fit.ArrayConfig(rows=r, cols=c)  # noqa: E731
    luts = simulated_luts(config(n + 1, n), "auto")
    assert row[4] == f"{luts} / 24288 ({100 * luts / 24288:.0f}%)"
    # 108 MHz (60 above the 48 MHz clock) x cells x the cycle model's utilization on the reference layer.
    assert row[8] == "108.0"
    utilization = fpga_fit.reference_utilization(config(n + 1, n))
    assert row[9] == f"{(n + 1) * n * utilization * 108e6 / 1e9:.2f} ({100 * utilization:.0f}%)"
    # The dense int8 array against itself.
    assert row[10] == "1.00x"
    assert row[11] == f"{(luts - simulated_luts(config(1, 1), 'auto')) / ((n + 1) * n - 1):.0f}"
    assert row[12] == "link.array.acc_mem.0.0 → link.array.acc_mem.0.1 (DIB6): 10.0 ns, 40% routing, 2 levels + 26 carry"
    other = simulated_luts(config(n, n + 1), "auto")
    assert row[-1] == (f"{n + 1}x{n + 1}: needs {simulated_luts(config(n + 1, n + 1), 'auto')} of 24288 TRELLIS_COMB; "
                       f"{n}x{n + 1} fits too ({other} LUT4, {100 * other / 24288:.0f}%) |")
    n_builds = len(simulated)
    with open(results) as f:
        assert len(json.load(f)) == n_builds
    # --no-build prints the same table from the cache without building anything.
    assert fpga_fit.main(args + ["--no-build"]) == 0
    assert capsys.readouterr().out.splitlines() == table
    assert len(simulated) == n_builds


def test_rebuild_measures_a_sweep_again_and_keeps_the_others(tmp_path, simulated, capsys):
    """--rebuild drops that sweep's builds (every --dsp of it) and builds the search again; other
    alphas and clocks stay as they were."""
    results = str(tmp_path / "results.json")
    args = ["--boards", BOARD, "--rectangles", "0", "--results", results, "--work-dir", str(tmp_path / "work")]
    assert fpga_fit.main(args + ["--alphas", "1"]) == 0
    start = len(simulated)
    assert fpga_fit.main(args + ["--alphas", "2"]) == 0
    sweep_builds = simulated[start:]
    assert fpga_fit.main(args + ["--alphas", "2", "--clock-mhz", "60"]) == 0
    capsys.readouterr()
    with open(results) as f:
        before = json.load(f)
    simulated.clear()
    assert fpga_fit.main(args + ["--alphas", "2", "--rebuild"]) == 0
    # The same search again, from nothing: the same builds (3x3 without DSPs among them).
    assert sorted(simulated) == sorted(sweep_builds) and (3, 3, 2, "off") in simulated
    assert "dropped orangecrab-25f/3x3/a2/dsp-off" in capsys.readouterr().err
    with open(results) as f:
        after = json.load(f)
    assert set(after) == set(before)
    assert all(after[k] == before[k] for k in after if "/a1" in k or k.endswith("/60mhz"))
    with pytest.raises(SystemExit):
        fpga_fit.main(args + ["--alphas", "2", "--rebuild", "--no-build"])


def test_a_rectangle_worth_building_but_not_built_is_named(tmp_path, simulated, capsys):
    """--no-build on results without the (R+1) x R and R x (R+1) builds says so in the row."""
    results = str(tmp_path / "results.json")
    args = ["--boards", BOARD, "--alphas", "1", "--results", results, "--work-dir", str(tmp_path / "work")]
    assert fpga_fit.main(args + ["--rectangles", "0"]) == 0
    capsys.readouterr()
    assert fpga_fit.main(args + ["--no-build"]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    n = true_largest(1)
    assert f"; {n + 1}x{n} not built (the model predicts " in row and f"; {n}x{n + 1} not built" in row


def test_a_missing_measurement_is_reported_not_built(tmp_path, simulated, capsys):
    args = ["--boards", BOARD, "--alphas", "2", "--no-build", "--results", str(tmp_path / "none.json")]
    assert fpga_fit.main(args) == 0
    assert f"not measured ({BOARD}/1x1/a2 missing)" in capsys.readouterr().out
    assert simulated == []


def test_key_round_trip():
    for args in [(BOARD, 3, 4, 2, "int", "auto", None), ("icebreaker", 1, 1, 8, "2x3", "off", None),
                 (BOARD, 16, 16, 2, "int", 28, None), (BOARD, 2, 2, 4, "int", "auto", 60.0),
                 ("icebreaker", 2, 3, 2, "2x3", "off", 24.75)]:
        assert fpga_fit.parse_key(fpga_fit.key(*args)) == args
    assert fpga_fit.key(BOARD, 2, 2, 4, clock=60.0) == f"{BOARD}/2x2/a4/60mhz"
    assert fpga_fit.key(BOARD, 2, 2, 4) == f"{BOARD}/2x2/a4"      # the keys of builds at the board's clock


def test_a_sweep_at_a_pll_clock_is_its_own(tmp_path, simulated, capsys):
    """--clock-mhz builds every array at that PLL clock, keeps them apart from the board-clock
    builds and names the clock in the table."""
    results = str(tmp_path / "results.json")
    args = ["--boards", BOARD, "--alphas", "2", "--rectangles", "0", "--results", results,
            "--work-dir", str(tmp_path / "work")]
    assert fpga_fit.main(args + ["--clock-mhz", "60"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split(" | ")
    assert row[0] == f"| {BOARD} (LFE5U-25F, 60 MHz PLL)" and row[1] == "int8, 60 MHz PLL"
    with open(results) as f:
        assert all(k.endswith("/60mhz") for k in json.load(f))
    # At the board's clock nothing is measured yet.
    assert fpga_fit.main(args + ["--no-build"]) == 0
    assert f"not measured ({BOARD}/1x1/a2 missing)" in capsys.readouterr().out


def test_a_clock_the_pll_cannot_make_is_refused(tmp_path, simulated, capsys):
    with pytest.raises(SystemExit) as exit:
        fpga_fit.main(["--boards", "icebreaker", "--clock-mhz", "300", "--results", str(tmp_path / "r.json")])
    assert exit.value.code == 2 and simulated == []
    assert "the iCE40 PLL makes 16-275 MHz, not 300 MHz" in capsys.readouterr().err


def test_reference_utilization_follows_the_cycle_model():
    """Whole tiles with their weight loads hidden: close to 1; a layer that does not divide into
    tiles wastes the rest of the last ones; loads not hidden behind 64 vectors show."""
    ArrayConfig = fpga_fit.ArrayConfig
    assert 0.95 < fpga_fit.reference_utilization(ArrayConfig(rows=16, cols=16, alpha=4)) <= 1
    assert fpga_fit.reference_utilization(ArrayConfig(rows=17, cols=17, alpha=4)) <= (256 / 272) ** 2
    assert fpga_fit.reference_utilization(ArrayConfig(rows=64, cols=64)) < 0.75


def test_old_summaries_show_no_critical_path_and_their_one_clock():
    old = {"config": fpga_fit.ArrayConfig(rows=2, cols=2).as_dict(), "clock_mhz": 25.0,
           "fmax": {"cd_sync.clk": {"achieved_mhz": 50.0, "constraint_mhz": 25.0, "pass": True}}}
    assert fpga_fit.describe_critical_path(old) == fpga_fit.NO_VALUE
    assert fpga_fit.array_fmax(old)["achieved_mhz"] == 50.0
    assert fpga_fit.describe_board(get_board("ulx3s-85f"), old) == "ulx3s-85f (LFE5U-85F, 25 MHz)"


def test_a_sweep_without_dsps_builds_and_names_only_lut_multipliers(tmp_path, simulated, capsys):
    results = str(tmp_path / "results.json")
    args = ["--boards", BOARD, "--alphas", "2", "--dsp", "off", "--rectangles", "0", "--results", results,
            "--work-dir", str(tmp_path / "work")]
    assert fpga_fit.main(args) == 0
    row = capsys.readouterr().out.splitlines()[2].split(" | ")
    config = lambda r: fpga_fit.ArrayConfig(rows=r, cols=r, alpha=2)  # noqa: E731
    n = max(r for r in range(1, 65) if simulated_luts(config(r), "off") <= 24288)
    assert row[1:4] == ["int8, --dsp off", "2", f"{n}x{n}"]
    assert row[4].startswith(f"{simulated_luts(config(n), 'off')} / 24288")
    assert {dsp for *_, dsp in simulated} == {"off"}
    with open(results) as f:
        assert all(k.endswith("/dsp-off") for k in json.load(f))


def test_docs_page_and_plots_from_the_kept_results_without_building(tmp_path, simulated):
    """--no-build --docs writes docs/results/fpga.md and its two plots from the results in git."""
    out = tmp_path / "docs"
    assert fpga_fit.main(["--no-build", "--docs", str(out)]) == 0
    assert simulated == []
    page = (out / "fpga.md").read_text()
    assert page.startswith("# ")
    assert "*Generated by `python benchmarks/fpga_fit.py --no-build --docs`." in page.splitlines()[2]
    with open(fpga_fit.RESULTS) as f:
        results = json.load(f)
    # Which design each build is from, and how many builds each.
    finished = [entry["summary"] for entry in results.values() if entry["summary"]]
    revisions = {summary.get("source") or "not recorded" for summary in finished}
    line = " ".join(page.split("Design (git commit of the sources)\nof these builds: ", 1)[1].split("\n\n")[0].split())
    assert sorted(line.rstrip(".").split(", ")) == sorted(
        f"{r} ({sum((s.get('source') or 'not recorded') == r for s in finished)} builds)" for r in revisions)
    # Every build kept is a row of the page, with its outcome.
    for k, entry in results.items():
        board, rows, cols, alpha, mac, dsp, clock = fpga_fit.parse_key(k)
        cells = [board, f"{rows}x{cols}", str(alpha), fpga_fit.build_label(mac, dsp, clock)]
        assert "| " + " | ".join(cells) + " | " in page, k
    # Every sweep the results hold has its row in the table of largest arrays.
    for (board, mac, dsp, clock), alphas in fpga_fit.measured_sweeps(results).items():
        for alpha in alphas:
            cell, kind = fpga_fit.build_label(mac, dsp, clock), "dense" if alpha == 1 else str(alpha)
            assert any(line.startswith(f"| {board}") and f" | {cell} | {kind} | " in line
                       for line in page.splitlines()), (board, mac, dsp, alpha)
    for name in ("fpga_luts.png", "fpga_fmax.png"):
        assert f"]({name})" in page
        assert report.is_png(out / name)
        with Image.open(out / name) as image:
            image.verify()


def test_docs_page_of_a_sweep_just_built(tmp_path, simulated):
    """The page written after a sweep holds the same row the sweep printed."""
    results, out = str(tmp_path / "results.json"), tmp_path / "docs"
    args = ["--boards", BOARD, "--alphas", "1", "--results", results, "--work-dir", str(tmp_path / "work")]
    assert fpga_fit.main(args + ["--docs", str(out)]) == 0
    page = (out / "fpga.md").read_text()
    assert f"`python benchmarks/fpga_fit.py --no-build --docs --results {results}`" in page
    n = true_largest(1)
    assert f"| {BOARD} (LFE5U-25F, 48 MHz) | int8 | dense | {n + 1}x{n} | " in page
    assert "| critical path |" in page and "GMAC/s (utilization)" in page
    assert f"({len(simulated)} builds)" in page
    assert all(report.is_png(out / name) for name in ("fpga_luts.png", "fpga_fmax.png"))


def test_column_combining_array_against_the_dense_int8_array_per_lut(tmp_path, simulated, capsys):
    """The comparison column: useful MACs per second per LUT4 on the reference layer pruned so that
    4 columns combine into one, the alpha-4 array (holding the packed layer) over the dense int8
    array (multiplying every zero), each at its Fmax, computed here from the cycle model."""
    from software.golden.cycles import layer_cycles
    results = str(tmp_path / "results.json")
    args = ["--boards", BOARD, "--alphas", "1,4", "--rectangles", "0", "--results", results,
            "--work-dir", str(tmp_path / "work")]
    assert fpga_fit.main(args) == 0
    dense_row, comb_row = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:4]]
    layer = fpga_fit.REFERENCE_LAYER

    def per_lut(n, alpha):
        config = fpga_fit.ArrayConfig(rows=n, cols=n, alpha=alpha)
        tiles = -(-layer["outputs"] // n) * -(-(layer["inputs"] // alpha) // n)
        useful = layer["inputs"] * layer["outputs"] // 4 * layer["batch"]
        return useful / layer_cycles(config, [layer["batch"]] * tiles) * 108e6 / simulated_luts(config, "auto")

    n_dense, n_comb = true_largest(1), true_largest(4)
    assert dense_row[3] == f"{n_dense}x{n_dense}" and comb_row[3] == f"{n_comb}x{n_comb}"
    assert dense_row[10] == "1.00x"
    ratio = per_lut(n_comb, 4) / per_lut(n_dense, 1)
    assert comb_row[10] == f"{ratio:.2f}x"
    assert ratio > 1.5     # a 4-way cell costs 180 LUT4 here against 120 for a dense one


def test_the_docs_table_names_every_alpha_an_int8_sweep_lacks(tmp_path, simulated):
    """An int8 sweep of one alpha lists the other alphas at its clock as "not measured" on the
    docs page, so a reader sees what was not swept rather than no row."""
    results = str(tmp_path / "results.json")
    assert fpga_fit.main(["--boards", BOARD, "--alphas", "2", "--rectangles", "0", "--clock-mhz", "60",
                          "--results", results, "--work-dir", str(tmp_path / "work")]) == 0
    rows = [line for line in fpga_fit.docs_rows(results) if line.startswith(f"| {BOARD}")]
    assert len(rows) == len(fpga_fit.DOCS_ALPHAS)
    missing = [alpha for alpha in fpga_fit.DOCS_ALPHAS if f"not measured ({BOARD}/1x1/a{alpha}/60mhz missing)"
               in "".join(rows)]
    assert missing == [alpha for alpha in fpga_fit.DOCS_ALPHAS if alpha != 2]


def test_a_terminated_sweep_stops_the_tools_of_its_build(tmp_path):
    """SIGTERM to a sweep (kill, a batch scheduler) stops the tools of the build under way, which run
    in their own process group, and the sweep exits with one line; before, the tools ran on for the
    rest of their hour. The "toolchain" here is a shell that starts a long sleep in the build's
    process group through fpga.build's own runner."""
    import signal
    import subprocess
    import time

    placer = tmp_path / "placer.pid"
    script = f"""
import subprocess, sys
sys.path.insert(0, {os.path.dirname(fpga_fit.__file__)!r})
import fpga_fit
import fpga.build

def build(board, config, out, **kwargs):
    fpga.build._run_script(["sh", "-c", "sleep 120 & echo $! > {placer}; wait"], cwd={str(tmp_path)!r},
                           env=None, log_file=subprocess.DEVNULL, poll_seconds=0.2)

fpga_fit.build = build
sys.exit(fpga_fit.main(["--boards", "{BOARD}", "--alphas", "1", "--results", {str(tmp_path / "r.json")!r},
                        "--work-dir", {str(tmp_path / "work")!r}]))
"""
    sweep = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                             cwd=os.path.join(os.path.dirname(fpga_fit.__file__), ".."))
    for _ in range(300):
        if placer.exists() and placer.read_text().strip():
            break
        time.sleep(0.1)
    else:
        sweep.kill()
        pytest.fail(f"the simulated build never started: {sweep.communicate()[1]}")
    pid = int(placer.read_text())
    try:
        sweep.send_signal(signal.SIGTERM)
        _, stderr = sweep.communicate(timeout=30)
        assert sweep.returncode == 130
        assert stderr.strip().splitlines()[-1] == "fpga_fit: interrupted" and "Traceback" not in stderr, stderr
        assert not still_running([pid]), "the terminated sweep's tools are still running"
    finally:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)   # whatever a failed run left behind
        except ProcessLookupError:
            pass


def test_a_build_whose_tools_were_stopped_is_not_recorded(tmp_path, simulated, capsys, monkeypatch):
    """A build whose tools a signal stopped from outside says nothing about the design: the sweep
    stops with one line and records nothing for it (it once kept such a build as not fitting), so
    the next run builds it again."""
    from fpga.build import ToolsStopped
    results = tmp_path / "results.json"
    real_build = fpga_fit.build

    def stopped_at_3x3(board, config, out, **kwargs):
        if config.rows == 3:
            raise ToolsStopped("the ecp5 toolchain was stopped by SIGTERM from outside the build")
        return real_build(board, config, out, **kwargs)

    monkeypatch.setattr(fpga_fit, "build", stopped_at_3x3)
    args = ["--boards", BOARD, "--alphas", "1", "--results", str(results), "--work-dir", str(tmp_path / "work")]
    assert fpga_fit.main(args) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"fpga_fit: {BOARD}/3x3/a1: the ecp5 toolchain was stopped by SIGTERM from outside the build; not recorded")
    assert sorted(json.loads(results.read_text())) == [f"{BOARD}/1x1/a1", f"{BOARD}/2x2/a1"]


def test_no_comparison_with_a_dense_sweep_that_has_not_ended(tmp_path, simulated):
    """Until the dense search has found its largest array, the column-combining row compares with
    nothing: the largest dense array built so far (here 3x3) is not the baseline."""
    results = str(tmp_path / "results.json")
    assert fpga_fit.main(["--boards", BOARD, "--alphas", "4", "--rectangles", "0", "--results", results,
                          "--work-dir", str(tmp_path / "work")]) == 0
    sweep = fpga_fit.Sweep(results, str(tmp_path / "work"), 115200)
    for r in fpga_fit.MODEL_SIZES:
        assert sweep.measure(BOARD, r, 1)["fit"]
    sweep.save()
    comb_row = next(line for line in fpga_fit.docs_rows(results) if line.startswith(f"| {BOARD}") and " | 4 | " in line)
    assert comb_row.split(" | ")[10] == fpga_fit.NO_VALUE


def test_a_design_too_large_to_place_counts_as_not_fitting_and_for_the_model(tmp_path, simulated, monkeypatch):
    """A design under the device's LUT count that nextpnr cannot place (its reason gives the LUTs
    it packed) is too large: the model is fitted to its size, and no larger array is built."""
    build = fpga_fit.build
    limit = int(0.55 * 24288)       # a device that places only up to 55% of its LUTs

    def placed_up_to_the_limit(board, config, out, **kwargs):
        luts = simulated_luts(config, kwargs["dsp"])
        if limit < luts <= 24288:
            simulated.append((config.rows, config.cols, config.alpha, kwargs["dsp"]))
            raise BuildError("Unable to find legal placement for all cells, design is probably at utilisation "
                             f"limit. (packed {luts} of 24288 TRELLIS_COMB)")
        return build(board, config, out, **kwargs)
    monkeypatch.setattr(fpga_fit, "build", placed_up_to_the_limit)
    config = lambda r: fpga_fit.ArrayConfig(rows=r, cols=r, alpha=4)  # noqa: E731
    placeable = max(r for r in range(1, 65) if simulated_luts(config(r), "auto") <= limit)
    unplaceable = max(r for r in range(1, 65) if simulated_luts(config(r), "auto") <= 24288) - 1
    assert unplaceable > placeable + 1       # the device model leaves room for the test
    sweep = fpga_fit.Sweep(str(tmp_path / "results.json"), str(tmp_path / "work"), 115200)
    assert not sweep.measure(BOARD, unplaceable, 4)["fit"]
    assert sweep.largest(BOARD, 4, "int", max_rows=64) == (placeable, placeable + 1)
    # The model, which would predict the next size up, did not build it: the failure bounds the search.
    assert [r for r, *_ in simulated[1:] if r >= unplaceable] == [], simulated
    points, available = sweep.usage_points(BOARD, 4, "int")
    assert (unplaceable, unplaceable, dsp_cells(get_board(BOARD), config(unplaceable), "auto"),
            simulated_luts(config(unplaceable), "auto")) in points


def test_a_timing_limit_far_below_the_area_limit_is_found_by_halving(tmp_path, simulated, monkeypatch):
    """Arrays above 5x5 place but miss the clock, far below the size the area model predicts: once
    the model says the smallest failing size has room, the search halves the interval instead of
    building every size from the prediction down."""
    build, limit = fpga_fit.build, 5

    def slow_above_the_limit(board, config, out, **kwargs):
        result = build(board, config, out, **kwargs)
        if config.rows > limit:
            result.summary["timing_pass"] = False
            result.summary["fmax"]["array_clk"].update({"achieved_mhz": 40.0, "pass": False})
        return result
    monkeypatch.setattr(fpga_fit, "build", slow_above_the_limit)
    assert true_largest(1) >= limit + 7        # creeping down from the prediction would take 8+ builds
    sweep = fpga_fit.Sweep(str(tmp_path / "results.json"), str(tmp_path / "work"), 115200)
    assert sweep.largest(BOARD, 1, "int", max_rows=64) == (limit, limit + 1)
    searched = simulated[len(fpga_fit.MODEL_SIZES) + 1:]
    assert searched[0][0] == true_largest(1)   # the model's prediction first, then halving
    assert len(searched) <= 4, simulated
