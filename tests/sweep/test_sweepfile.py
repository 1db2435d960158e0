"""The sweep file: expansion into points, and every malformed file refused in one line with status 2."""
import subprocess
import sys

import pytest

from sweep import cli
from sweep.sweepfile import SweepFileError, load, parse

GOOD = """
name = "t"
stages = ["compress", "cycles"]
[fixed]
epochs = 1
[axes]
alpha = [1, 8]
rows = [8, 16, 32]
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_is_every_combination_with_fixed_settings_and_defaults(tmp_path):
    plan = load(write(tmp_path, GOOD))
    assert plan.stages == ("compress", "cycles")
    combos = [(p.settings["alpha"], p.settings["rows"]) for p in plan.points]
    assert combos == [(1, 8), (1, 16), (1, 32), (8, 8), (8, 16), (8, 32)]
    assert all(p.settings["epochs"] == 1 and p.settings["method"] == "colcomb" for p in plan.points)
    assert plan.points[4].label == "alpha=8 rows=16"
    assert [p.index for p in plan.points] == list(range(6))
    assert len({p.point_id for p in plan.points}) == 6


def test_points_are_crossed_with_the_axes_and_override_fixed_settings():
    plan = parse({"fixed": {"method": "dense", "alpha": 1},
                  "points": [{"label": "dense"}, {"label": "cc8", "method": "colcomb", "alpha": 8, "gamma": 0.5}],
                  "axes": {"seed": [0, 1]}})
    got = [(p.label, p.settings["method"], p.settings["alpha"], p.settings["seed"]) for p in plan.points]
    assert got == [("dense", "dense", 1, 0), ("dense", "dense", 1, 1), ("cc8", "colcomb", 8, 0),
                   ("cc8", "colcomb", 8, 1)]
    assert plan.points[2].options().gamma == 0.5


def test_random_sample_is_a_reproducible_subset():
    data = {"axes": {"alpha": [1, 2, 4, 8], "rows": [4, 8, 16]}, "sample": {"mode": "random", "n": 5, "seed": 3}}
    a, b = parse(data), parse(data)
    assert len(a.points) == 5 and [p.settings for p in a.points] == [p.settings for p in b.points]
    everything = {p.point_id for p in parse({"axes": data["axes"]}).points}
    assert {p.point_id for p in a.points} <= everything
    assert [p.index for p in a.points] == list(range(5))


def test_float_settings_take_integers_and_nm_a_pair():
    plan = parse({"fixed": {"gamma": 1, "nm": [1, 4], "method": "nm", "cols": "none"}})
    settings = plan.points[0].settings
    assert settings["gamma"] == 1.0 and isinstance(settings["gamma"], float)
    assert settings["nm"] == (1, 4) and settings["cols"] is None


BAD = [
    ("name = [", "not valid TOML"),
    ("colour = 1", "unknown key 'colour'"),
    ("[fixed]\nalhpa = 8", "unknown setting 'alhpa'"),
    ("[fixed]\nalpha = 'eight'", "alpha must be an integer"),
    ("[fixed]\nalpha = true", "alpha must be an integer"),
    ("[fixed]\nmethod = 'colcom'", "method 'colcom' is not one of"),
    ("[fixed]\nboard = 'de10'", "board 'de10' is not one of"),
    ("[fixed]\nnm = [2]", "nm must be two integers"),
    ("[fixed]\ndsp = 'many'", "--dsp wants auto, on, off or a number"),
    ("[axes]\nalpha = []", "[axes] alpha must be a non-empty list"),
    ("[axes]\nalpha = 8", "[axes] alpha must be a non-empty list"),
    ("[axes]\nalpha = [8, 8]", "lists a value twice"),
    ("[fixed]\nalpha = 8\n[axes]\nalpha = [1, 8]", "'alpha' is both fixed and an axis"),
    ("[axes]\nalpha = [1]\n[[points]]\nalpha = 8", "'alpha' is also an axis"),
    ("[[points]]\nlabel = 'a'\n[[points]]\nlabel = 'b'", "is listed twice"),
    ("stages = ['rtl']", "stage 'rtl' needs stage 'compress'"),
    ("stages = ['compress', 'synth']", "unknown stage 'synth'"),
    ("stages = []", "stages must be a non-empty list"),
    ("[sample]\nmode = 'halving'", "mode must be one of grid, random"),
    ("[sample]\nmode = 'random'", "n must be a positive integer"),
    ("[[pareto]]\nx = 'cycles'\ny = 'accuracy'", "y = 'accuracy' is not an objective"),
    ("[[pareto]]\nx = 'lut4'\ny = 'int_accuracy'", "'lut4' comes from stage 'fpga'"),
    ("[[pareto]]\nx = 'cycles'", "needs exactly the keys x and y"),
    ("page = 'lenet'", "page must be one of digits"),
    ("name = 'a/b'", "name must be a non-empty string without '/'"),
]


@pytest.mark.parametrize("text, reason", BAD, ids=[r for _, r in BAD])
def test_malformed_file_is_one_line_with_exit_status_2(tmp_path, capsys, text, reason):
    path = write(tmp_path, text)
    with pytest.raises(SweepFileError, match=None) as error:
        load(path)
    assert reason in str(error.value) and "\n" not in str(error.value)
    assert cli.main([str(path), "-o", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m sweep: error: ") and reason in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_command_line_refusal_has_no_traceback(tmp_path):
    missing = tmp_path / "missing.toml"
    proc = subprocess.run([sys.executable, "-m", "sweep", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == f"python -m sweep: error: {missing}: no such sweep file\n"
    bad = write(tmp_path, "[axes]\nrows = ['x']")
    proc = subprocess.run([sys.executable, "-m", "sweep", str(bad), "--workers", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "rows must be an integer" in proc.stderr


def test_docs_needs_a_page(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert cli.main([str(path), "--docs", str(tmp_path / "docs"), "--cache", str(tmp_path / "cache")]) == 2
    assert capsys.readouterr().err == f"python -m sweep: error: --docs: {path} names no result page (page = ...)\n"
    assert not (tmp_path / "docs").exists()


def test_examples_parse():
    smoke = load("examples/sweeps/smoke.toml")
    assert 1 <= len(smoke.points) <= 4 and smoke.stages == ("compress", "cycles")
    digits = load("examples/sweeps/digits.toml")
    assert len(digits.points) == 70 and digits.page == "digits" and digits.stages == ("compress", "cycles", "rtl")
    assert [p.settings["rtl_images"] for p in digits.points].count(450) == 5
    assert len(load("examples/sweeps/scaling.toml").points) == 12
