"""The graph model accelerator (hdl/accel/graph.py) in Verilator, end to end: a residual CNN from the
bring-your-own-model path, pixels in, logits out, bit-exact to the golden integer model and
cycle-exact to the cycle model of the whole schedule (software/golden/model_cycles.py)."""

import json

import numpy as np
import pytest

from gen.cli import main as gen_main
from sim.accel import run_accelerator
from software.packing.graph_program import compile_model
from spec import GraphModelConfig, config_from_manifest


def _images(model, digits_images, count):
    x = model.quantize_input(np.asarray(digits_images[:count]).reshape(count, 1, 8, 8))
    top = (1 << model.config.act_width) - 1
    if count >= 4:      # the extremes too: all dark, all bright
        x[-2], x[-1] = 0, top
    return x


def _run(packed, digits_images, count, *, batch, stall=0.0, seed=0, reset_after=None, **shape):
    _, model, sha = packed
    program = compile_model(model, sha, batch=batch, **shape)
    assert isinstance(program.config, GraphModelConfig)
    x = _images(model, digits_images, count)
    golden = model.run_golden(x)
    run = run_accelerator(program, golden, x.reshape(count, -1), stall=stall, seed=seed, reset_after=reset_after,
                          name=f"graph_{program.config.design_name}")
    assert np.array_equal(run.logits, golden)
    return run


def test_residual_cnn_bit_exact_and_cycle_exact(resnet, digits_images):
    """Two batches (8 and 2 images): convolutions, residual adds, the pool, the logits; a row block's
    8 logits beats come one per clock, more than the post-processing pipeline holds."""
    run = _run(resnet, digits_images, 10, batch=8, rows=4, cols=4)
    assert run.cycles == run.model_cycles


def test_random_stalls_and_a_mid_stream_reset(resnet, digits_images):
    _run(resnet, digits_images, 6, batch=4, rows=4, cols=4, stall=0.3, seed=3, reset_after=5)


def test_gen_writes_the_graph_accelerator(resnet, tmp_path):
    path, _, sha = resnet
    assert gen_main(["--model", str(path), "--batch", "2", "-o", str(tmp_path / "g")]) == 0
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    config = config_from_manifest(manifest)
    assert isinstance(config, GraphModelConfig) and config.model_sha256 == sha
    assert manifest["unit"] == "graph_model_accelerator" and (tmp_path / "g" / manifest["verilog"]).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("shape", [dict(rows=4, cols=4, batch=8), dict(rows=8, cols=8, batch=16),
                                   dict(rows=4, cols=2, batch=3)])
def test_hundred_images(resnet, digits_images, shape):
    """The issue's check for the bring-your-own-model path: >= 100 test images of a residual CNN."""
    run = _run(resnet, digits_images, 100, **shape)
    assert run.cycles == run.model_cycles


def test_a_board_it_does_not_fit_is_refused_before_synthesis(resnet, tmp_path, capsys):
    """The iCE40UP5K's 30 block RAMs cannot hold the residual CNN's im2col buffers: one line, needed
    against available, exit status 2, nothing written."""
    from fpga.cli import main as fpga_main
    path, _, _ = resnet
    out = tmp_path / "build"
    assert fpga_main(["build", "--board", "icebreaker", "--model", str(path), "--batch-images", "1",
                      "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "does not fit the iCE40UP5K" in err and "the device has 30" in err
    assert not out.exists()
