"""`python -m gen`: outputs, determinism, manifest truthfulness and rejection of bad input."""

import json
import re
import subprocess
import sys

import pytest

from gen.cli import build_parser, main


def run_gen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    assert main(["--rows", "3", "--cols", "2", "--alpha", "4", "--no-act-signed", "-o", str(out)]) == 0
    return out


def verilog_ports(text, top):
    """{port name: width} of the top module, parsed from the Verilog."""
    body = text[text.index(f"module {top}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for _direction, rng, name in re.findall(r"^\s*(input|output)\s+(?:reg\s+)?(\[\d+:0\]\s+)?([\w$\\]+)\s*;", body, re.M):
        ports[name] = int(re.match(r"\[(\d+)", rng).group(1)) + 1 if rng else 1
    return ports


def test_manifest_describes_the_verilog(small):
    manifest = json.loads((small / "manifest.json").read_text())
    text = (small / manifest["verilog"]).read_text()
    ports = verilog_ports(text, manifest["top"])
    declared = {"clk": 1, "rst": 1}
    for port in manifest["ports"]:
        declared.update(port.get("signals", {port["name"]: port.get("width")}))
    assert ports == declared
    assert manifest["config"]["rows"] == 3 and manifest["config"]["cols"] == 2
    assert manifest["config"]["alpha"] == 4 and manifest["config"]["act_signed"] is False
    # payload fields tile their port exactly
    for port in manifest["ports"]:
        if "payload" in port:
            end = max(f["lsb"] + f["width"] * f.get("count", 1) for f in port["payload"])
            assert end == port["payload_width"]


def test_same_command_twice_is_byte_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert run_gen("--rows", "4", "--sparsity", "colcomb", "-o", str(out)).returncode == 0
    for name in ("sparsegen_array.v", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_default_output_directory(tmp_path):
    proc = run_gen("--rows", "2", "--sparsity", "dense", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "build" / "2x2_dense_a1" / "manifest.json").exists()


def test_help_documents_every_flag():
    text = build_parser().format_help()
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings
    proc = run_gen("--help")
    assert proc.returncode == 0 and "--sparsity" in proc.stdout and "--acc-width" in proc.stdout


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
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_gen(*args, "-o", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
