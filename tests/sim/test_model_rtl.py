"""End to end: the digits MLP, pruned by column combining and quantized to int8, runs layer by layer
through the generated array in Verilator, and its logits equal the golden integer model's bit for bit.

A 4x4 array with alpha 8 keeps the Verilator build short while still cutting every layer into many
tiles (row blocks and group blocks, accumulated across group blocks). The benchmark
(benchmarks/digits.py --rtl) runs the whole test split on the 32x32 array.
"""
import copy

import numpy as np
import pytest

from sim.model import build_array, main, run_model
from spec import ArrayConfig
from software.frontend.intmodel import export_model
from software.frontend.jointopt import ColumnCombiningSchedule
from software.models.digits import build_model, load_digits_split, train
from software.packfile import save

CONFIG = ArrayConfig(rows=4, cols=4, alpha=8, act_signed=False)
IMAGES = 24


@pytest.fixture(scope="module")
def int_model():
    dense = build_model(seed=0)
    train(dense, epochs=10, progress=False)
    model = copy.deepcopy(dense)
    schedule = ColumnCombiningSchedule(epochs=10, alpha=8, gamma=0.5)
    train(model, epochs=10, masks_hook=schedule, progress=False)
    return export_model(model, CONFIG, load_digits_split().x_train, groups=schedule.groups)


@pytest.fixture(scope="module")
def built():
    return build_array(CONFIG)


@pytest.fixture(scope="module")
def images(int_model):
    split = load_digits_split()
    return int_model.quantize_input(split.x_test[:IMAGES]), split.y_test[:IMAGES].numpy()


def test_rtl_logits_and_cycles_on_two_images(int_model, built, images):
    """The fast set's model run: two images through every layer, bit-exact and cycle-exact."""
    x_int, _ = images
    logits, runs = run_model(int_model, x_int[:2], built, name="digits_two")
    assert np.array_equal(logits, int_model.run_golden(x_int[:2]))
    assert [r.name for r in runs] == [layer.name for layer in int_model.layers]
    for r in runs:
        assert r.tiles > 1 and r.cycles == r.model_cycles, r


@pytest.mark.slow
def test_rtl_logits_equal_the_golden_integer_model(int_model, built, images):
    x_int, labels = images
    golden = int_model.run_golden(x_int)
    logits, runs = run_model(int_model, x_int, built, name="digits")
    assert np.array_equal(logits, golden)
    assert (logits.argmax(1) == labels).mean() >= 0.8
    assert [r.name for r in runs] == [layer.name for layer in int_model.layers]
    for r in runs:
        assert r.tiles > 1 and r.cycles == r.model_cycles, r


@pytest.mark.slow
def test_rtl_with_random_stalls(int_model, built, images):
    x_int, _ = images
    logits, _ = run_model(int_model, x_int[:5], built, stall=0.3, seed=5, name="digits_stall")
    assert np.array_equal(logits, int_model.run_golden(x_int[:5]))


def test_packed_file_through_the_command(int_model, built, tmp_path, capsys):
    path = tmp_path / "model.npz"
    save(int_model, path)
    assert main([str(path), "--images", "6"]) == 0
    out = capsys.readouterr().out
    assert "logits identical" in out and "6 images: RTL accuracy" in out
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    assert main([str(bad)]) == 2
    assert f"{bad}: corrupt packed model" in capsys.readouterr().err


def test_missing_build_tools_are_one_line_with_status_2(int_model, tmp_path, capsys, monkeypatch):
    """The command on a machine without a C++ compiler, make or perl: one line, no traceback."""
    path = tmp_path / "model.npz"
    save(int_model, path)
    monkeypatch.setenv("SPARSEGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("shutil.which", lambda name, *args, **kwargs: None)
    assert main([str(path), "--images", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "python -m sim.model: error: Verilator needs a C++ compiler (c++, g++ or clang++), make and perl, not "
        "found on PATH; install them (Debian/Ubuntu: sudo apt-get install g++ make perl)"]
    assert not (tmp_path / "cache").exists()
