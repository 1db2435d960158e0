"""`python -m gen --unit attention`: outputs, determinism, manifest truthfulness, bad input."""

import json
import subprocess
import sys

import pytest

from gen import cli
from spec.attention import AttentionConfig

from .test_cli import verilog_ports


def run_gen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gen", "--unit", "attention", *args],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("attention_small")
    assert cli.main(["--unit", "attention", "--head-dim", "4", "--max-len", "6", "--top-k", "2", "-o", str(out)]) == 0
    return out


def test_manifest_describes_the_verilog(small):
    manifest = json.loads((small / "manifest.json").read_text())
    ports = verilog_ports((small / manifest["verilog"]).read_text(), manifest["top"])
    declared = {}
    for port in manifest["ports"]:
        declared.update(port.get("signals", {port["name"]: port.get("width")}))
    assert ports == declared
    config = AttentionConfig.from_dict(manifest["config"])
    assert (config.head_dim, config.max_len, config.prune, config.top_k) == (4, 6, "topk", 2)
    assert manifest["derived"]["exp_table"] == list(config.exp_table)
    for port in manifest["ports"]:
        if "payload" in port:
            end = max(f["lsb"] + f["width"] * f.get("count", 1) for f in port["payload"])
            assert end == port["payload_width"]


def test_same_command_twice_is_byte_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert run_gen("--head-dim", "4", "--max-len", "8", "--threshold", "3", "-o", str(out)).returncode == 0
    for name in ("sparsegen_attention.v", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_default_output_directory_names_the_configuration(tmp_path):
    proc = run_gen("--head-dim", "2", "--max-len", "4", "--threshold", "3", "--top-k", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "build" / "attention_d2_L4_t3_k2" / "manifest.json").read_text())
    assert manifest["config"]["prune"] == "both"


def test_help_documents_every_flag():
    parser = cli.build_parser("attention")
    text = parser.format_help()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings
    proc = run_gen("--help")
    assert proc.returncode == 0 and "--head-dim" in proc.stdout and "--threshold" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--head-dim", "0"], "head_dim must be between"),
    (["--max-len", "-1"], "max_len must be between"),
    (["--data-width", "64"], "data_width must be between"),
    (["--prune", "threshold"], "prune threshold needs a threshold"),
    (["--prune", "none", "--top-k", "4"], "top_k is only used with prune topk or both"),
    (["--top-k", "65"], "top_k must be between 1 and 64"),
    (["--threshold", "99"], "threshold must be between"),
    (["--prune", "banana"], "invalid choice"),
    (["--head-dim", "x"], "invalid int value"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_gen(*args, "-o", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
