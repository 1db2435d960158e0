"""The model accelerator behind the UART host link: the host driver (software.host.ModelBoard) sends
pixels and reads logits through the generated Verilog in Verilator, over a clean line and over one
that damages frames both ways; and the FPGA commands' handling of models."""

import numpy as np
import pytest

from fpga.cli import main as fpga_main
from software.host import HostLinkError, ModelDescriptor
from software.packing.program import compile_program

DIVISOR = 4


@pytest.fixture(scope="module")
def link(colcomb, tmp_path_factory):
    from fpga.build import write_link_verilog
    from sim.runner import build
    path, model, digest = colcomb
    program = compile_program(model, digest, batch=4)
    out = tmp_path_factory.mktemp("model_link") / "link"
    manifest = write_link_verilog(program.config, out, divisor=DIVISOR, program=program)
    return build(out), manifest, program


def _images(colcomb, digits_images, count):
    _, model, _ = colcomb
    x = model.quantize_input(digits_images[:count]).reshape(count, -1)
    return x, model.run_golden(x)


def test_images_over_the_link(link, colcomb, digits_images):
    from sim.hostlink import run_model_session
    built, manifest, program = link
    x, golden = _images(colcomb, digits_images, 6)            # a batch of 4, then 2
    report = run_model_session(built, x, skew=1.01)
    assert report["error"] is None
    assert np.array_equal(np.array(report["logits"]), golden)
    assert report["descriptor"]["model_sha256"] == program.config.model_sha256
    assert report["stats"]["retries"] == 0


def test_images_over_a_damaging_line(link, colcomb, digits_images):
    from sim.hostlink import run_model_session
    built, _, _ = link
    x, golden = _images(colcomb, digits_images, 5)
    report = run_model_session(built, x, skew=0.99, faults={"seed": 3, "probability": 0.1})
    assert report["error"] is None and report["faults"]          # faults were injected ...
    assert np.array_equal(np.array(report["logits"]), golden)     # ... and the logits are exact


def test_descriptor_names_the_model(link, colcomb):
    _, manifest, program = link
    descriptor = ModelDescriptor.parse(bytes.fromhex(manifest["link"]["descriptor"]))
    assert descriptor.mismatches(program.config) == []
    other = compile_program(colcomb[1], "1" * 64, batch=4)          # the same shape, another model
    wrong = descriptor.mismatches(other.config)
    assert len(wrong) == 1 and "holds model" in wrong[0]
    with pytest.raises(HostLinkError, match="not a sparsegen model accelerator"):
        ModelDescriptor.parse(bytes(20))


@pytest.fixture(scope="module")
def loading_link(colcomb, tmp_path_factory):
    """An accelerator whose weight memory the host fills after each reset (the iCE40's SPRAM)."""
    from fpga.build import write_link_verilog
    from sim.runner import build
    path, model, digest = colcomb
    program = compile_program(model, digest, batch=4, weights_loaded=True)
    out = tmp_path_factory.mktemp("model_link_loading") / "link"
    manifest = write_link_verilog(program.config, out, divisor=DIVISOR, program=program)
    return build(out), manifest, program


def test_weights_loaded_over_the_link(loading_link, colcomb, digits_images):
    """connect() resets the board and sends the program's weight beats in 'W' frames; then images."""
    from sim.hostlink import run_model_session
    built, manifest, program = loading_link
    x, golden = _images(colcomb, digits_images, 5)
    report = run_model_session(built, x, skew=1.01, weights=program.weight_beats)
    assert report["error"] is None
    assert report["descriptor"]["max_weight_beats"] > 0
    assert np.array_equal(np.array(report["logits"]), golden)
    weight_bytes = len(program.weight_beats) * ((program.config.array.weight_beat_width + 7) // 8)
    assert report["bytes"][0] > weight_bytes          # the weights went over the line


@pytest.mark.slow
def test_weights_loaded_over_a_damaging_line(loading_link, colcomb, digits_images):
    """A 'W' frame sent again after a lost reply is answered, not applied again: a weight written
    twice would shift every later one, and the logits would be wrong."""
    from sim.hostlink import run_model_session
    built, _, program = loading_link
    x, golden = _images(colcomb, digits_images, 3)
    report = run_model_session(built, x, skew=0.99, faults={"seed": 11, "probability": 0.1},
                               weights=program.weight_beats)
    assert report["error"] is None and report["stats"]["retries"] > 0
    assert np.array_equal(np.array(report["logits"]), golden)


def test_a_loading_board_needs_the_weights(loading_link, link):
    from software.host import ModelBoard
    _, manifest, program = loading_link
    with pytest.raises(ValueError, match="weight beats"):
        ModelBoard(None, program.config)
    descriptor = ModelDescriptor.parse(bytes.fromhex(manifest["link"]["descriptor"]))
    assert descriptor.mismatches(program.config) == []
    on_chip = link[2].config                                   # the same model with its weights on the chip
    assert any("weights: board loads them" in w for w in descriptor.mismatches(on_chip))


def test_board_without_room_for_the_model_is_refused(colcomb, tmp_path, capsys):
    """The iCEBreaker's 30 block RAMs cannot hold the 4x4 accelerator's 32 activation lanes."""
    out = tmp_path / "build"
    assert fpga_main(["build", "--board", "icebreaker", "--model", str(colcomb[0]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not fit the iCE40UP5K" in err and "the device has 30" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_run_needs_the_model_file(tmp_path, capsys):
    import json
    (tmp_path / "summary.json").write_text(json.dumps({"unit": "model", "config": {}, "baud": 115200}))
    assert fpga_main(["run", str(tmp_path), "--port", "/dev/null"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_model_accelerator_builds_for_the_icebreaker(colcomb, tmp_path, capsys):
    """The whole digits model on the iCE40UP5K: a 2x1 array, batch 4, its clock constrained at 24 MHz,
    its weights in SPRAM (loaded over the link: the default on a board with SPRAM)."""
    import json
    out = tmp_path / "build"
    assert fpga_main(["build", "--board", "icebreaker", "--model", str(colcomb[0]), "--rows", "2", "--cols", "1",
                      "--batch-images", "4", "--clock-mhz", "24", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unit"] == "model" and summary["config"]["model_sha256"] == colcomb[2]
    assert summary["timing_pass"] and (out / summary["bitstream"]).stat().st_size > 0
    used = summary["resources"]
    assert all(v["used"] <= v["available"] for v in used.values())
    from fpga.accel_fit import spram_needed
    from fpga.boards import BOARDS
    from spec import ModelConfig
    config = ModelConfig.from_dict(summary["config"])
    assert config.weights_loaded and used["spram"]["used"] == spram_needed(BOARDS["icebreaker"], config) >= 1


def test_a_residual_cnn_over_the_link(resnet, digits_images, tmp_path):
    """The graph accelerator behind the same link: a batch of 2 and one of 1, logits bit-exact."""
    from fpga.build import write_link_verilog
    from sim.hostlink import run_model_session
    from sim.runner import build
    from software.packing.graph_program import compile_model
    _, model, digest = resnet
    program = compile_model(model, digest, batch=2)
    manifest = write_link_verilog(program.config, tmp_path / "link", divisor=DIVISOR, program=program)
    assert ModelDescriptor.parse(bytes.fromhex(manifest["link"]["descriptor"])).mismatches(program.config) == []
    x = model.quantize_input(np.asarray(digits_images[:3]).reshape(3, 1, 8, 8))
    report = run_model_session(build(tmp_path / "link"), x.reshape(3, -1), skew=1.01)
    assert report["error"] is None
    assert np.array_equal(np.array(report["logits"]), model.run_golden(x))
