"""Tiling, the stream-level golden model, beat packing and the cycle model, in software only."""

import numpy as np
import pytest

from software.packing import beats
from software.packing.colcomb import combine
from spec import ArrayConfig, ConfigError
from software.golden.cycles import layer_cycles
from software.golden.array import ArrayModel, reference_layer, wrap
from software.packing.schedule import ScheduleError, schedule_layer


def test_wrap_is_twos_complement():
    assert wrap([127, 128, -129, 2**40], 8).tolist() == [127, -128, 127, 0]


@pytest.mark.parametrize("cfg", [dict(rows=4, cols=3, alpha=2), dict(rows=5, cols=2, alpha=4, max_batch=3),
                                 dict(rows=2, cols=2, alpha=1, act_signed=False)])
def test_golden_streams_equal_matrix_product(cfg):
    config = ArrayConfig(**cfg)
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(11, 37)) * (rng.random((11, 37)) < 0.3)
    layer = combine(w, config.alpha, 0.3)
    lo, hi = config.act_range
    x = rng.integers(lo, hi + 1, size=(7, 37))
    sched = schedule_layer(config, layer, x)
    assert np.array_equal(sched.assemble(ArrayModel(config).run(sched)),
                          reference_layer(layer.unpack(), x, config.acc_width))
    assert sched.useful_macs == np.count_nonzero(layer.packed) * 7


def test_tile_counts_and_flags():
    config = ArrayConfig(rows=4, cols=2, alpha=2, max_batch=5)
    layer = combine(np.ones((9, 10), dtype=int), 2, 0)       # dense: 10 groups of 1 column
    sched = schedule_layer(config, layer, np.ones((12, 10), dtype=int))
    # 3 chunks (5 + 5 + 2 vectors) x 3 row blocks x 5 group blocks
    assert len(sched.tiles) == 3 * 3 * 5
    assert [t.clear for t in sched.tiles[:5]] == [True, False, False, False, False]
    assert [t.emit for t in sched.tiles[:5]] == [False, False, False, False, True]
    assert sched.tile_batches[-1] == 2


def test_schedule_rejects_what_does_not_fit():
    config = ArrayConfig(rows=2, cols=2, alpha=2)
    layer = combine(np.full((2, 4), 100), 2, 0)
    with pytest.raises(ScheduleError, match="inputs must be N x 4"):
        schedule_layer(config, layer, np.zeros((3, 5)))
    with pytest.raises(ScheduleError, match="activations outside"):
        schedule_layer(config, layer, np.full((1, 4), 1000))
    with pytest.raises(ScheduleError, match="weights outside"):
        schedule_layer(ArrayConfig(rows=2, cols=2, alpha=2, weight_width=4, acc_width=16), layer, np.zeros((1, 4)))
    with pytest.raises(ScheduleError, match="alpha=4"):
        schedule_layer(config, combine(np.eye(4, dtype=int), 4, 0), np.zeros((1, 4)))


def test_beat_packing_round_trip():
    config = ArrayConfig(rows=3, cols=2, alpha=3, act_width=4)
    word = beats.activation_beat(config, [-8, 7, 0, 1, -1, 3], last=True, clear=False, emit=True)
    assert beats.unpack_fields(word, 4, 6, signed=True) == [-8, 7, 0, 1, -1, 3]
    assert word >> 24 == 0b101
    w = beats.weight_beat(config, [-128, 127], [2, 1])
    assert beats.unpack_fields(w, 8, 2, signed=True) == [-128, 127]
    assert beats.unpack_fields(w >> 16, 2, 2, signed=False) == [2, 1]
    assert beats.result_values(config, beats.pack_fields([-1, 5, -2**31], 32)) == [-1, 5, -2**31]


def test_cycle_model_closed_forms():
    c = ArrayConfig(rows=4, cols=3)
    # one tile: R loads, n vectors, latency C + 7 (edge, skew, 4 cell stages with the pipelined
    # multiplier, add, result FIFO 2)
    assert c.latency == 3 + 7
    assert ArrayConfig(rows=4, cols=3, multiplier="parallel").latency == 3 + 6
    assert layer_cycles(c, [5]) == 4 + 5 - 1 + 3 + 7 + 1
    # double buffering hides loads once n >= R + C
    n = 7
    assert layer_cycles(c, [n] * 4) == 4 + 4 * n - 1 + 3 + 7 + 1
    # single buffering cannot
    single = ArrayConfig(rows=4, cols=3, double_buffer=False)
    assert layer_cycles(single, [n] * 4) > layer_cycles(c, [n] * 4)


@pytest.mark.parametrize("fields, message", [
    (dict(rows=4, cols=4, acc_width=16), "acc_width 16 is too narrow"),
    (dict(rows=4, cols=4, multiplier="serial"), "multiplier must be one of"),
    (dict(rows=4, cols=4, act_signed=1), "act_signed must be True or False"),
    (dict(rows=4.5, cols=4), "rows must be an integer"),
])
def test_config_validation(fields, message):
    with pytest.raises(ConfigError, match=message):
        ArrayConfig(**fields)
