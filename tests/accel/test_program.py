"""The accelerator's program (software/packing/program.py): its layout keeps the hardware's rules
and, run without the hardware, it computes the golden model's logits."""

import numpy as np
import pytest

from software.packing.program import ProgramError, chain_of, compile_program, execute
from spec import ConfigError

SHA = "0" * 64


def _x(model, images, count=60):
    return model.quantize_input(images[:count]).reshape(count, -1)


@pytest.mark.parametrize("shape", [(4, 4, 8), (4, 2, 8), (2, 2, 8), (8, 8, 8), (16, 16, 8), (3, 5, 8), (32, 32, 8)])
def test_program_computes_the_golden_logits(colcomb, digits_images, shape):
    _, model, _ = colcomb
    rows, cols, alpha = shape
    program = compile_program(model, SHA, rows=rows, cols=cols, alpha=alpha)
    x = _x(model, digits_images)
    assert np.array_equal(execute(program, x), model.run_golden(x))


@pytest.mark.parametrize("shape", [(4, 4, 8), (8, 2, 8), (2, 4, 16)])
def test_dense_model(dense, digits_images, shape):
    _, model, _ = dense
    rows, cols, alpha = shape
    program = compile_program(model, SHA, rows=rows, cols=cols, alpha=alpha)
    x = _x(model, digits_images, 30)
    assert np.array_equal(execute(program, x), model.run_golden(x))


def test_every_row_writes_its_own_lane_class(colcomb):
    """Row r of every row block writes a lane congruent to r modulo rows: a result beat's rows
    never meet in one lane memory."""
    _, model, _ = colcomb
    program = compile_program(model, SHA, rows=4, cols=2, alpha=8)
    cfg = program.config
    for i, plan in enumerate(program.layers[:-1]):
        consumer = program.layers[i + 1].in_slots
        written = 0
        for position, f in enumerate(plan.rows):
            if f is not None and f in consumer:
                assert consumer[f][1] % cfg.rows == position % cfg.rows
                written += 1
        assert written == len(consumer)           # every input of the next layer is written once
    # The packed rows are the model's rows, reordered: nothing lost, nothing doubled.
    for plan, node in zip(program.layers, chain_of(model)):
        real = sorted(f for f in plan.rows if f is not None)
        assert real == list(range(node.parts[0].out_features))


def test_table_entries_decode(colcomb):
    _, model, _ = colcomb
    program = compile_program(model, SHA, rows=4, cols=4, alpha=8)
    cfg = program.config
    fields = cfg.table_fields
    width = sum(w for _, w in fields)
    plan = program.layers[0]
    entry = (program.table[0] >> (1 * width)) & ((1 << width) - 1)      # row block 0, row 1
    f = plan.rows[1]
    values, lsb = {}, 0
    for name, w in fields:
        values[name] = (entry >> lsb) & ((1 << w) - 1)
        lsb += w
    top = 1 << (cfg.bias_width - 1)
    bias = values["bias"] - 2 * top if values["bias"] >= top else values["bias"]
    assert cfg.bias_width == 15          # this model's biases: -6544 .. 10623
    assert cfg.shift_width == 4          # its hidden shifts 1 .. 11: pre-shifts up to 10
    assert cfg.left_width == 0 and "left" not in values   # no left shifts: the lanes have no left shifter
    assert cfg.acc_width == 19           # its worst-case row sums, pixels and activations at 255
    assert bias == plan.bias[f]
    assert values["pre_shift"] + values["round"] == plan.shift[f]


def test_weight_beats_cover_every_tile(colcomb):
    _, model, _ = colcomb
    program = compile_program(model, SHA, rows=4, cols=4, alpha=8)
    cfg = program.config
    assert len(program.weight_beats) == cfg.tiles * cfg.rows == cfg.weight_beats
    assert cfg.tiles == 134          # what python -m software compress reports for this model on 4x4


def test_refusals(colcomb):
    _, model, _ = colcomb
    with pytest.raises(ProgramError, match="an array with alpha 4 cannot run it"):
        compile_program(model, SHA, rows=4, cols=4, alpha=4)
    with pytest.raises(ProgramError, match="at most cols"):
        compile_program(model, SHA, rows=16, cols=1, alpha=8)
    with pytest.raises(ConfigError, match="batch"):
        compile_program(model, SHA, batch=0)


def test_graphs_the_sequencer_cannot_run_are_named(tmp_path, digits_images):
    """A residual CNN: refused in one line naming the first node the sequencer cannot run."""
    from software.frontend.compress import main
    from software.packfile import load
    x = np.asarray(digits_images[:80]).reshape(80, 1, 8, 8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(80) % 10)
    assert main(["compress", "--model", "examples.models.resnet:digits_resnet", "--method", "dense", "-q",
                 "--data", str(tmp_path / "d.npz"), "--epochs", "0", "--rows", "4", "-o", str(tmp_path / "out")]) == 0
    model, _ = load(tmp_path / "out" / "model.npz")
    with pytest.raises(ProgramError) as error:
        compile_program(model, SHA)
    message = str(error.value)
    assert "\n" not in message and "node '" in message and "conv" in message
