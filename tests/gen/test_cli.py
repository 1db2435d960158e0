"""`python -m gen [--unit NAME]`: for every unit, the manifest describes the Verilog, output is
deterministic, the help documents every flag, and bad input is one line with exit status 2 and
nothing written. One file for all units: a new unit is a line in each table below."""

import json
import os
import re
import subprocess
import sys

import pytest

from gen import cli, design
from spec import ArrayConfig, AttentionConfig, TQConfig, config_from_manifest

# (unit flags, the configuration they must produce)
SMALL = {
    "array": (["--rows", "3", "--cols", "2", "--alpha", "4", "--no-act-signed"],
              ArrayConfig(rows=3, cols=2, alpha=4, act_signed=False)),
    "array_tq": (["--rows", "3", "--cols", "2", "--alpha", "2", "--mac", "tq", "--weight-terms", "2",
                  "--data-terms", "3"],
                 ArrayConfig(rows=3, cols=2, alpha=2, mac="tq", weight_terms=2, data_terms=3)),
    "tq_serial": (["--unit", "tq", "--width", "6", "--no-signed", "--weight-terms", "3"],
                  TQConfig(width=6, signed=False, weight_terms=3, data_terms=3, form="serial")),
    "tq_parallel": (["--unit", "tq", "--form", "parallel"], TQConfig(form="parallel")),
    "attention": (["--unit", "attention", "--head-dim", "4", "--max-len", "6", "--top-k", "2"],
                  AttentionConfig(head_dim=4, max_len=6, prune="topk", top_k=2)),
}


def run_gen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module", params=list(SMALL))
def small(request, tmp_path_factory):
    args, config = SMALL[request.param]
    out = tmp_path_factory.mktemp(request.param)
    assert cli.main([*args, "-o", str(out)]) == 0
    return out, config


def verilog_ports(text, top):
    """{port name: width} of the top module, parsed from the Verilog."""
    body = text[text.index(f"module {top}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for _direction, rng, name in re.findall(r"^\s*(input|output)\s+(?:reg\s+)?(\[\d+:0\]\s+)?([\w$\\]+)\s*;", body, re.M):
        ports[name] = int(re.match(r"\[(\d+)", rng).group(1)) + 1 if rng else 1
    return ports


def test_manifest_describes_the_verilog(small):
    out, config = small
    manifest = json.loads((out / "manifest.json").read_text())
    assert config_from_manifest(manifest) == config
    text = (out / manifest["verilog"]).read_text()
    declared = {}
    for port in manifest["ports"]:
        declared.update(port.get("signals", {port["name"]: port.get("width")}))
    assert verilog_ports(text, manifest["top"]) == declared
    assert sorted(os.listdir(out)) == sorted([manifest["verilog"], "manifest.json"])   # no staging left


@pytest.mark.parametrize("unit", ["array", "tq_parallel", "attention"])
def test_same_command_twice_is_byte_identical(tmp_path, unit):
    args, config = SMALL[unit]
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        proc = run_gen(*args, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
    for name in os.listdir(a):
        assert (a / name).read_bytes() == (b / name).read_bytes()


@pytest.mark.parametrize("args, directory", [
    (["--rows", "2", "--sparsity", "dense"], "2x2_dense_a1"),
    (["--rows", "2", "--sparsity", "dense", "--mac", "tq"], "2x2_dense_a1_tq2x3"),
    (["--rows", "2", "--acc-width", "24", "--no-double-buffer"], "2x2_colcomb_a8_acc24_sb"),
    (["--unit", "tq"], "tq_serial_w8_t2x3"),
    (["--unit", "attention", "--head-dim", "2", "--max-len", "4", "--threshold", "3", "--top-k", "2"],
     "attention_d2_L4_t3_k2"),
])
def test_default_output_directory_is_the_design_name(tmp_path, args, directory):
    proc = run_gen(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "build" / directory / "manifest.json").read_text())
    assert manifest["design"] == directory


@pytest.mark.parametrize("unit, flags", [("array", ["--sparsity", "--acc-width", "--mac"]),
                                         ("tq", ["--form", "--weight-terms"]),
                                         ("attention", ["--head-dim", "--threshold"])])
def test_help_documents_every_flag(unit, flags):
    parser = cli.build_parser(unit)
    text = parser.format_help()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings
    proc = run_gen("--unit", unit, "--help")
    assert proc.returncode == 0 and all(f in proc.stdout for f in flags + ["--unit", "-o"])
    assert "term-quantization" in proc.stdout and "attention" in proc.stdout     # --unit lists the units


@pytest.mark.parametrize("args, message", [
    (["--rows", "0"], "rows must be between"),
    (["--rows", "-3"], "rows must be between"),
    (["--rows", "4", "--act-width", "-8"], "act_width must be between"),
    (["--rows", "4", "--weight-width", "4096"], "weight_width must be between"),
    (["--rows", "4", "--alpha", "0"], "alpha"),
    (["--rows", "4", "--alpha", "1000"], "alpha must be between"),
    (["--rows", "4", "--sparsity", "dense", "--alpha", "4"], "dense means alpha 1"),
    (["--rows", "4", "--sparsity", "banana"], "invalid choice"),
    (["--rows", "4", "--acc-width", "12"], "acc_width 12 is too narrow"),
    (["--rows", "four"], "invalid int value"),
    (["--rows", "4", "--max-batch", "0"], "max_batch"),
    (["--rows", "4", "--weight-terms", "2"], "--weight-terms applies only to --mac tq"),
    (["--rows", "4", "--mac", "tq", "--data-terms", "9"], "data_terms must be between 1 and 5"),
    (["--rows", "4", "--mac", "tq", "--no-weight-signed", "--weight-terms", "7"], "weight_terms must be between 1 and 6"),
    (["--rows", "4", "--mac", "tq", "--acc-width", "17"], "acc_width 17 is too narrow"),
    (["--rows", "4", "--mac", "float"], "invalid choice"),
    (["--unit", "gpu"], "--unit must be one of array, tq, attention, model, graph-model, not 'gpu'"),
    (["--unit"], "--unit must be one of"),
    (["--unit", "tq", "--width", "1"], "width must be between 2 and 32"),
    (["--unit", "tq", "--weight-terms", "0"], "weight_terms must be between 1 and 5"),
    (["--unit", "tq", "--no-signed", "--data-terms", "7"], "data_terms must be between 1 and 6"),
    (["--unit", "tq", "--form", "banana"], "invalid choice"),
    (["--unit", "attention", "--head-dim", "0"], "head_dim must be between"),
    (["--unit", "attention", "--max-len", "-1"], "max_len must be between"),
    (["--unit", "attention", "--data-width", "64"], "data_width must be between"),
    (["--unit", "attention", "--prune", "threshold"], "prune threshold needs a threshold"),
    (["--unit", "attention", "--prune", "none", "--top-k", "4"], "top_k is only used with prune topk or both"),
    (["--unit", "attention", "--top-k", "65"], "top_k must be between 1 and 64"),
    (["--unit", "attention", "--threshold", "99"], "threshold must be between"),
    (["--unit", "attention", "--prune", "banana"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    try:
        status = cli.main([*args, "-o", str(out)])
    except SystemExit as e:         # argparse's own errors (OneLineParser: one line, status 2)
        status = e.code
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists()


def test_a_file_in_the_way_of_the_output_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("not a directory")
    for out in (tmp_path / "taken", tmp_path / "taken" / "below"):
        proc = run_gen("--rows", "2", "-o", str(out))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "not a directory" in proc.stderr
    assert (tmp_path / "taken").read_text() == "not a directory"


def test_a_failed_write_leaves_the_previous_design_untouched(tmp_path, monkeypatch):
    """The Verilog and its manifest are written as a set (software.output_set): if moving the new
    directory into place fails, or writing its manifest does, the old Verilog and manifest are
    there as they were and no staging directory is left."""
    from software import output_set
    out = tmp_path / "out"
    assert cli.main(["--rows", "2", "--sparsity", "dense", "-o", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    new = design.generate(ArrayConfig(rows=2, cols=2, act_width=4))
    real_rename = os.rename

    def failing_rename(src, dst):
        if ".partial-" in str(src):         # moving the new directory in
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(output_set.os, "rename", failing_rename)
    with pytest.raises(output_set.OutputError, match="No space left on device"):
        design.write(new, str(out))
    monkeypatch.undo()
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert sorted(os.listdir(tmp_path)) == ["out"]

    real_open = open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith("manifest.json") and ".partial-" in str(path):
            raise OSError(28, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(OSError):
        design.write(new, str(out))
    monkeypatch.undo()
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert sorted(os.listdir(tmp_path)) == ["out"]
