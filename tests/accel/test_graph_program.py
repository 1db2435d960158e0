"""The accelerator's program for layer graphs (software/packing/graph_program.py): residual CNNs run
through its memory layout -- im2col write rounds, zero padding, the residual buffer, the pool as a
matrix -- give the golden model's logits bit for bit, and it refuses what it cannot run in one line."""

import numpy as np
import pytest

from software.frontend.compress import main as software_main
from software.frontend.intmodel import golden_matmul
from software.packfile import load
from software.packing.graph_program import Geometry, ProgramFault, compile_graph, execute
from software.packing.program import ProgramError


def _compress(tmp_path, images, factory, *flags):
    x = np.asarray(images[:80]).reshape(80, 1, 8, 8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(80) % 10)
    assert software_main(["compress", "--model", factory, "--data", str(tmp_path / "d.npz"), "--rows", "4",
                          "--epochs", "1", "-q", *flags, "-o", str(tmp_path / "out")]) == 0
    model, _ = load(tmp_path / "out" / "model.npz")
    return model


@pytest.fixture(scope="module")
def resnet(resnet):
    return resnet[1]


def _inputs(model, images, count=24, seed=0):
    """Digits, then the extremes: all 0, all top, and uniform noise over the whole range."""
    digits = model.quantize_input(np.asarray(images[:count]).reshape(count, 1, 8, 8))
    top = (1 << model.config.act_width) - 1
    noise = np.random.default_rng(seed).integers(0, top + 1, size=(4, 1, 8, 8))
    return np.concatenate([digits, np.zeros((1, 1, 8, 8), np.int64), np.full((1, 1, 8, 8), top), noise])


def _golden(model, x):
    return model.run_with(golden_matmul(model.config), x)


@pytest.mark.parametrize("shape", [(4, 4, 8), (8, 8, 8), (4, 2, 8), (2, 4, 16)])
def test_residual_cnn_gives_the_golden_logits(resnet, digits_images, shape):
    rows, cols, alpha = shape
    x = _inputs(resnet, digits_images)
    program = compile_graph(resnet, rows=rows, cols=cols, alpha=alpha, batch=len(x))
    assert np.array_equal(execute(program, x), _golden(resnet, x))
    # In smaller batches too: the regions are sized for the largest.
    assert np.array_equal(execute(program, x[:3]), _golden(resnet, x[:3]))


def test_what_the_program_is_made_of(resnet):
    program = compile_graph(resnet, rows=4, cols=4, alpha=8, batch=4)
    names = [step.name for step in program.steps]
    kinds = {step.name: step for step in program.steps}
    # Two adds fused into the second convolution of each block; their other operands (the stem, the
    # downsampling 1x1) write the residual buffer; the downsampling convolution writes nothing else.
    fused = [step for step in program.steps if step.add]
    assert len(fused) == 2 and all(step.residual_out is None for step in fused)
    producers = [step for step in program.steps if step.residual_out]
    assert len(producers) == 2
    assert {p.residual_out["region"] for p in producers} == {f.add["region"] for f in fused}
    downsample = next(p for p in producers if p.layout.geometry.kernel == (1, 1))
    assert all(rounds == () for rounds in downsample.rounds)
    # The pool is a matrix of ones with a rounding shift by log2(16).
    pool = kinds[next(n for n in names if "pool" in n)]
    assert pool.synthetic and set(np.unique(pool.weights)) == {0, 1} and set(pool.shift) == {4}
    # Every beat of a 3x3 convolution's producer takes at least one round per tap.
    stem = program.steps[0]
    assert [(r.consumer, r.tap) for r in program.loader_rounds[0]] == [(0, t) for t in range(9)]
    assert all(len(rounds) >= 9 for rounds in stem.rounds)


def test_a_block_whose_shortcut_is_the_previous_add(tmp_path, digits_images):
    """ResNet's identity blocks: the residual operand is itself a fused add's value."""
    model = _compress(tmp_path, digits_images, "examples.models.resnet:digits_resnet_deep", "--method", "colcomb",
                      "--alpha", "8", "--gamma", "0.5", "--finetune-epochs", "1")
    program = compile_graph(model, rows=4, cols=4, alpha=8, batch=16)
    assert any(step.add and step.residual_out for step in program.steps)
    x = _inputs(model, digits_images, count=4)
    assert np.array_equal(execute(program, x), _golden(model, x))


@pytest.mark.parametrize("h, w, kernel, stride, padding", [
    (8, 8, (3, 3), (1, 1), (1, 1)), (8, 8, (3, 3), (2, 2), (1, 1)), (8, 8, (1, 1), (2, 2), (0, 0)),
    (5, 7, (3, 3), (1, 1), (1, 1)), (6, 6, (5, 5), (1, 1), (2, 2)), (4, 4, (4, 4), (1, 1), (0, 0)),
    (7, 7, (7, 7), (2, 2), (3, 3))])
def test_every_word_of_every_tap_is_written_once(h, w, kernel, stride, padding):
    """For each tap, each output position's word gets exactly one write: the value it reads, or a 0
    where the tap falls into the padding."""
    g = Geometry(1, h, w, kernel, stride, padding)
    for t, row in enumerate(g.spatial("test")):
        targets = [(p, zero, q) for q, (p, zero) in enumerate(row) if p >= 0]
        assert sorted(p for p, _, _ in targets) == list(range(g.positions))
        for p, zero, q in targets:
            assert (g.source(t, p) is None) == zero
            assert zero or g.source(t, p) == q


def test_padding_that_cannot_be_cleared_is_refused():
    # A 2x2 input read by a 3x3 window with padding 2: 4 x 4 outputs, most of whose taps are padding,
    # and only 4 inputs to write the zeros.
    with pytest.raises(ProgramError, match="padding"):
        Geometry(1, 2, 2, (3, 3), (1, 1), (2, 2)).spatial("node 'x'")


def test_the_executor_catches_a_broken_round(resnet, digits_images):
    """A round that writes one lane class twice is a compiler bug, and execute says so."""
    program = compile_graph(resnet, rows=4, cols=4, alpha=8, batch=2)
    stem = program.steps[0]
    rnd = next(r for r in stem.rounds[0] if len(r.writes) >= 2)
    (row0, word0, lane0), (row1, word1, _) = rnd.writes[:2]
    broken = type(rnd)(rnd.consumer, rnd.tap, ((row0, word0, lane0), (row1, word1, lane0)) + rnd.writes[2:])
    rounds = tuple(tuple(broken if r is rnd else r for r in block) for block in stem.rounds)
    object.__setattr__(stem, "rounds", rounds)
    with pytest.raises(ProgramFault, match="lane class twice"):
        execute(program, _inputs(resnet, digits_images, count=2)[:2])


def test_graphs_it_cannot_run_are_named(tmp_path, digits_images):
    """The depthwise-separable CNN: its grouped convolution is refused in one line naming the node."""
    model = _compress(tmp_path, digits_images, "examples.models.mobile:digits_separable", "--method", "dense")
    with pytest.raises(ProgramError) as error:
        compile_graph(model, rows=4, cols=4, alpha=8)
    message = str(error.value)
    assert "\n" not in message and "node '" in message and "grouped" in message

