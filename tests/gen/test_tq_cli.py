"""`python -m gen --unit tq`: outputs, manifest truthfulness, help and rejection of bad input."""

import json
import subprocess
import sys

import pytest

from gen import cli
from spec.tq import FORMS, TOP, TQConfig
from tests.gen.test_cli import verilog_ports


def run_gen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gen", "--unit", "tq", *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize("form", FORMS)
def test_manifest_describes_the_verilog(tmp_path, form):
    assert cli.main(["--unit", "tq", "--form", form, "--width", "6", "--no-signed", "--weight-terms", "3", "-o", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    text = (tmp_path / manifest["verilog"]).read_text()
    declared = {}
    for port in manifest["ports"]:
        declared.update(port.get("signals", {port["name"]: port.get("width")}))
    assert verilog_ports(text, manifest["top"]) == declared
    config = TQConfig.from_dict(manifest["config"])
    assert config == TQConfig(width=6, signed=False, weight_terms=3, data_terms=3, form=form)
    operands = next(p for p in manifest["ports"] if p["name"] == "operands")
    assert operands["payload_width"] == config.operands_width == 3 * config.weight_term_width + 6
    assert manifest["derived"]["product_width"] == config.product_width
    assert manifest["latency"] == config.latency


def test_same_command_twice_is_byte_identical(tmp_path):
    for out in (tmp_path / "a", tmp_path / "b"):
        assert run_gen("--form", "parallel", "-o", str(out)).returncode == 0
    for name in (f"{TOP}.v", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_help_documents_every_flag():
    parser = cli.build_parser("tq")
    text = parser.format_help()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings
    proc = run_gen("--help")
    assert proc.returncode == 0 and "--weight-terms" in proc.stdout and "--form" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--width", "1"], "width must be between 2 and 32"),
    (["--weight-terms", "0"], "weight_terms must be between 1 and 5"),
    (["--no-signed", "--data-terms", "7"], "data_terms must be between 1 and 6"),
    (["--form", "banana"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_gen(*args, "-o", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


# The array with --mac tq (python -m gen without --unit).

def run_array_gen(*args):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True)


def test_tq_array_manifest_describes_the_verilog(tmp_path):
    from spec import ArrayConfig
    assert cli.main(["--rows", "3", "--cols", "2", "--alpha", "2", "--mac", "tq", "--weight-terms", "2",
                       "--data-terms", "3", "-o", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    text = (tmp_path / manifest["verilog"]).read_text()
    declared = {}
    for port in manifest["ports"]:
        declared.update(port.get("signals", {port["name"]: port.get("width")}))
    assert verilog_ports(text, manifest["top"]) == declared
    config = ArrayConfig.from_dict(manifest["config"])
    assert (config.mac, config.weight_terms, config.data_terms) == ("tq", 2, 3)
    weights = next(p for p in manifest["ports"] if p["name"] == "weights")
    assert weights["payload_width"] == 2 * (2 * config.weight_term_width + 1)
    for port in manifest["ports"]:
        if "payload" in port:
            end = max(f["lsb"] + f["width"] * f.get("count", 1) for f in port["payload"])
            assert end == port["payload_width"]


def test_tq_array_default_budgets_and_output_directory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gen", "--rows", "2", "--sparsity", "dense", "--mac", "tq"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "build" / "2x2_dense_a1_tq2x3" / "manifest.json").read_text())
    assert manifest["config"]["weight_terms"] == 2 and manifest["config"]["data_terms"] == 3


@pytest.mark.parametrize("args, message", [
    (["--rows", "4", "--weight-terms", "2"], "--weight-terms applies only to --mac tq"),
    (["--rows", "4", "--mac", "tq", "--data-terms", "9"], "data_terms must be between 1 and 5"),
    (["--rows", "4", "--mac", "tq", "--no-weight-signed", "--weight-terms", "7"], "weight_terms must be between 1 and 6"),
    (["--rows", "4", "--mac", "tq", "--acc-width", "17"], "acc_width 17 is too narrow"),
    (["--rows", "4", "--mac", "float"], "invalid choice"),
])
def test_tq_array_bad_input(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_array_gen(*args, "-o", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
