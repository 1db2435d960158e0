"""The model accelerator in Verilator, end to end: pixels in, logits out, bit-exact to the golden
integer model (which knows nothing of the accelerator) and cycle-exact to the cycle model of the
whole schedule (software/golden/model_cycles.py)."""

import numpy as np
import pytest

from sim.accel import run_accelerator
from software.packing.program import compile_program


def _run(packed, images, count, *, runtime_batch=None, stall=0.0, seed=0, reset_after=None, **shape):
    _, model, digest = packed
    program = compile_program(model, digest, **shape)
    x = model.quantize_input(images[:count]).reshape(count, -1)
    golden = model.run_golden(x)
    run = run_accelerator(program, golden, x, batch=runtime_batch, stall=stall, seed=seed, reset_after=reset_after,
                          name=f"accel_{program.config.design_name}")
    assert np.array_equal(run.logits, golden)
    return run


def test_colcomb_model_bit_exact_and_cycle_exact(colcomb, digits_images):
    """Three batches (4, 4, 2 images): weights of the next batch's first tiles load during this
    batch's last layer; the partial batch ends on `last`."""
    run = _run(colcomb, digits_images, 10, batch=4)
    assert run.cycles == run.model_cycles


def test_batches_smaller_than_the_accelerator_holds(colcomb, digits_images):
    """The host decides the batch (`last`): one image at a time on the batch-4 accelerator."""
    run = _run(colcomb, digits_images, 3, batch=4, runtime_batch=1)
    assert run.cycles == run.model_cycles


def test_random_stalls_and_a_mid_stream_reset(colcomb, digits_images):
    _run(colcomb, digits_images, 10, batch=4, stall=0.3, seed=7, reset_after=6)


def test_weights_loaded_at_start_up(colcomb, digits_images):
    """The weight memory starts empty (SPRAM): the weights stream in first, one beat per clock,
    and the cycle model counts them."""
    run = _run(colcomb, digits_images, 6, batch=4, weights_loaded=True)
    assert run.cycles == run.model_cycles


def test_weights_loaded_again_after_a_reset(colcomb, digits_images):
    """A reset drops the loaded weights: the replay loads them again, with random stalls on every stream."""
    _run(colcomb, digits_images, 6, batch=4, weights_loaded=True, stall=0.3, seed=5, reset_after=4)


@pytest.mark.slow
@pytest.mark.parametrize("packed,shape", [
    ("colcomb", dict(batch=16)),
    ("dense", dict(batch=16)),
    ("colcomb", dict(rows=8, cols=8, batch=32)),
    ("colcomb", dict(rows=4, cols=2, batch=1)),
    ("colcomb", dict(rows=3, cols=5, batch=5)),       # 40 lanes in 3 memories of 14, 13 and 13
])
def test_hundred_images(request, digits_images, packed, shape):
    """The issue's check: >= 100 test images, colcomb (alpha 8, gamma 0.5) and dense."""
    run = _run(request.getfixturevalue(packed), digits_images, 100, **shape)
    assert run.cycles == run.model_cycles


@pytest.mark.slow
def test_stalls_on_a_small_array(colcomb, digits_images):
    _run(colcomb, digits_images, 7, rows=2, cols=2, batch=3, stall=0.4, seed=2, reset_after=9)
