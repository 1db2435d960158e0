"""`python -m software compress` / `evaluate`: outputs, the printed table, and bad input."""
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from software.frontend.compress import main
from software.packfile import load

FAST = ["--epochs", "6", "--finetune-epochs", "6", "--rows", "8", "-q"]


def test_compress_writes_packed_model_and_prints_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compress", "--method", "colcomb", "--alpha", "8", "--gamma", "0.5", *FAST, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    for needle in ("float dense", "pruned float", "integer (int8)", "tiles", "cycles", "utilization",
                   "fewer tiles"):
        assert needle in text
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.npz", "report.json"]
    report = json.loads((out / "report.json").read_text())
    model, manifest = load(out / "model.npz")
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["info"] == report
    assert model.config.rows == 8 and model.config.alpha == 8 and model.config.act_signed is False
    assert report["packed"]["tiles"] < report["dense"]["tiles"] / 2.5
    assert report["sparsity"] > 0.7 and report["accuracy"]["integer"] > 0.85
    assert f"{report['accuracy']['integer']:.2%}" in text
    # What packing kept, per array layer (named as in the report) and per pruning event.
    layers = [layer["name"] for layer in report["layers"]] if "layers" in report else list(report["groups"])
    assert sorted(report["packing_kept"]) == sorted(layers)
    assert all(0 < kept <= 1 for events in report["packing_kept"].values() for kept in events)
    assert any(kept < 1 for events in report["packing_kept"].values() for kept in events)   # gamma 0.5 prunes
    # evaluate reproduces the integer accuracy from the file alone.
    assert main(["evaluate", str(out / "model.npz")]) == 0
    assert f"integer accuracy {report['accuracy']['integer']:.2%}" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["--method", "nm", "--nm", "2:4", "--alpha", "4"],
    ["--method", "tilewise", "--sparsity", "0.5"],
    ["--method", "dense", "--quant", "tq", "--weight-terms", "1", "--data-terms", "2"],
])
def test_other_methods(tmp_path, capsys, args):
    out = tmp_path / "out"
    assert main(["compress", *args, *FAST, "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"]["integer"] > 0.85
    if "nm" in args:
        model, _ = load(out / "model.npz")
        for layer in model.layers:
            w = layer.weight_matrix
            assert ((w.reshape(w.shape[0], -1, 4) != 0).sum(axis=2) <= 2).all()


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "software", *args], capture_output=True, text=True, cwd=cwd)


def test_bad_array_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    done = run_cli("compress", "--rows", "300", "-o", str(out))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "rows must be between 1 and 256" in done.stderr
    assert not out.exists()


class _ArgMax(nn.Module):
    """An op whose integer output cannot run in the integer model."""

    def forward(self, x):
        return x.argmax(dim=1, keepdim=True)


def _saved(tmp_path, model, name="model.pt"):
    path = tmp_path / name
    torch.save(model, path)
    return path


@pytest.mark.parametrize("case, message", [
    ("unsupported", "node 'argmax' (3) [aten.argmax.default] does not return one float tensor"),
    ("shape", "module '0' (Linear) does not take the (64,) input per sample"),
    ("classes", "the model outputs (3,) per sample; the data has 10 classes"),
    ("corrupt", "model.pt: not a readable torch model file"),
    ("state_dict", "holds a OrderedDict, not an nn.Module"),
    ("missing", "nothing.pt: no such model file"),
    ("alpha", "alpha must be between 1 and 64"),
    ("gamma", "--gamma must be a non-negative number"),
    ("tq", "must be a positive whole number of terms"),
    ("output", "exists and is not a directory"),
])
def test_bad_input_gets_one_line_naming_it(tmp_path, capsys, case, message):
    out = tmp_path / "out"
    args = ["compress", *FAST, "-o", str(out)]
    if case == "unsupported":
        args += ["--model", str(_saved(tmp_path, nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10),
                                                                  _ArgMax()))), "--trust-pickle"]
    elif case == "shape":
        args += ["--model", str(_saved(tmp_path, nn.Sequential(nn.Linear(100, 32), nn.ReLU(), nn.Linear(32, 10)))), "--trust-pickle"]
    elif case == "classes":
        args += ["--model", str(_saved(tmp_path, nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3)))), "--trust-pickle"]
    elif case == "corrupt":
        path = tmp_path / "model.pt"
        path.write_bytes(b"\x80\x04garbage" * 10)
        args += ["--model", str(path)]
    elif case == "state_dict":
        args += ["--model", str(_saved(tmp_path, nn.Linear(64, 10).state_dict()))]
    elif case == "missing":
        args += ["--model", str(tmp_path / "nothing.pt")]
    elif case == "alpha":
        args += ["--alpha", "100"]
    elif case == "gamma":
        args += ["--gamma", "-1"]
    elif case == "tq":
        args += ["--quant", "tq", "--weight-terms", "1.3"]
    elif case == "output":
        out.write_text("a file")
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert captured.err.startswith("python -m software compress: error:")
    if case != "output":
        assert not out.exists()


def test_a_model_file_is_fine_tuned_and_packed(tmp_path, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 36, 10))
    out = tmp_path / "out"
    assert main(["compress", "--model", str(_saved(tmp_path, model)), "--trust-pickle", "--epochs", "3", "--finetune-epochs", "3",
                 "--alpha", "4", "--rows", "4", "-q", "-o", str(out)]) == 0
    packed, manifest = load(out / "model.npz")
    ops = [(n["name"], n["op"]) for n in manifest["graph"]["nodes"]]
    assert ops == [("x", "input"), ("reshape", "reshape"), ("conv2d", "matmul"), ("flatten", "flatten"),
                   ("linear", "matmul")]
    assert manifest["graph"]["nodes"][1]["attrs"] == {"shape": [1, 8, 8]} and packed.layers[0].in_features == 9


class _Hostile:
    """Unpickling this runs `touch`: what a hostile model file can do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_model_file_runs_nothing_without_trust_pickle(tmp_path):
    """The file's code never runs: one line, exit 2, nothing written; the marker stays absent."""
    marker, out = tmp_path / "code-ran", tmp_path / "out"
    path = tmp_path / "hostile.pt"
    torch.save({"model": _Hostile(marker)}, path)
    done = run_cli("compress", *FAST, "--model", str(path), "-o", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "pass --trust-pickle only if you trust" in done.stderr
    assert not marker.exists() and not out.exists()


def test_a_pickled_module_needs_trust_pickle(tmp_path, capsys):
    path = _saved(tmp_path, nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    assert main(["compress", *FAST, "--model", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a pickled module, and unpickling it would run code" in err


def test_evaluate_rejects_a_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    done = run_cli("evaluate", str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and f"{bad}: corrupt packed model" in done.stderr


def test_argument_errors_are_one_line():
    done = run_cli("compress", "--method", "bogus", "-o", "x")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "invalid choice" in done.stderr
