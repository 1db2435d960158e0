"""`python -m gen --model FILE` and `python -m sim.accel FILE`: outputs, and bad input in one line."""

import json

import pytest

from gen.cli import main as gen_main
from sim.accel import main as sim_main


def test_gen_model_writes_the_accelerator(colcomb, tmp_path, capsys):
    path, model, digest = colcomb
    out = tmp_path / "accel"
    assert gen_main(["--model", str(path), "--batch", "8", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["unit"] == "model_accelerator" and manifest["model_sha256"] == digest
    assert manifest["config"]["batch"] == 8 and manifest["derived"]["tiles"] == 134
    verilog = (out / manifest["verilog"]).read_text()
    assert "module sparsegen_model(" in verilog
    assert verilog.count("module sparsegen_model_cell(") == 1      # one cell module, instantiated
    assert verilog.count("module sparsegen_model_row(") == 1       # one row module, instantiated
    assert "134 tiles" in capsys.readouterr().out


@pytest.mark.parametrize("content,flags,message", [
    (b"not a zip", [], "corrupt packed model"),
    (None, ["--alpha", "2"], "cannot run it"),
    (None, ["--batch", "0"], "batch"),
    (None, ["--rows", "64", "--cols", "1"], "at most cols"),
])
def test_gen_model_bad_input(colcomb, tmp_path, capsys, content, flags, message):
    path = colcomb[0]
    if content is not None:
        path = tmp_path / "bad.npz"
        path.write_bytes(content)
    out = tmp_path / "out"
    with _exit_code() as code:
        code.value = gen_main(["--model", str(path), *flags, "-o", str(out)])
    assert code.value == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


class _exit_code:
    """Holds a main()'s return value; a SystemExit (argparse) counts as its code."""

    def __enter__(self):
        self.value = None
        return self

    def __exit__(self, kind, error, traceback):
        if kind is SystemExit:
            self.value = error.code
            return True
        return False


def test_sim_accel_command(colcomb, capsys):
    assert sim_main([str(colcomb[0]), "--images", "10", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "logits identical to the golden model" in out and "10 images" in out
