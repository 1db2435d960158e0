"""Column combining under joint optimization (DESIGN.md §2) and the other gradual pruning schedules."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from software.packing.colcomb import pack
from software.frontend.jointopt import (
    ColumnCombiningSchedule,
    MagnitudeSchedule,
    NMSchedule,
    TileWiseSchedule,
    event_epochs,
    pruning_rate,
    weight_matrix,
)
from software.models.digits import build_model, evaluate, train
from software.frontend.pruning import prunable_layers


@pytest.fixture(scope="module")
def dense():
    model = build_model(seed=0)
    train(model, epochs=12, progress=False)
    return model


def finetune(dense, schedule, epochs):
    model = copy.deepcopy(dense)
    train(model, epochs=epochs, masks_hook=schedule, progress=False)
    return model


@pytest.fixture(scope="module")
def combined(dense):
    schedule = ColumnCombiningSchedule(epochs=16, alpha=8, gamma=0.5)
    return finetune(dense, schedule, 16), schedule


def test_rate_schedule_and_event_epochs():
    rates = [pruning_rate(k) for k in range(1, 11)]
    assert rates[-1] == pytest.approx(0.8) and rates[0] == pytest.approx(0.8 * (1 - 0.9 ** 3))
    assert all(a < b for a, b in zip(rates, rates[1:]))
    with pytest.raises(ValueError):
        pruning_rate(0)
    for epochs in (1, 7, 20, 30, 61):
        at = event_epochs(epochs)
        assert len(at) == 10 and at[0] == 0 and at == sorted(at)
        assert all(e < max(1, epochs / 2) for e in at), "all events in the first half of training"
    assert event_epochs(40) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_joint_optimization_packs_losslessly_by_its_last_grouping(combined):
    model, schedule = combined
    assert [k for k, _, _ in schedule.log] == list(range(1, 11))
    sparsities = [s for _, _, s in schedule.log]
    assert sparsities == sorted(sparsities)
    for name, module in prunable_layers(model):
        # torch.nn.utils.prune's bookkeeping: trainable weight_orig, mask buffer, masked weight.
        assert hasattr(module, "weight_orig") and hasattr(module, "weight_mask")
        weight = weight_matrix(module).numpy()
        groups = schedule.groups[name]
        assert all(1 <= len(g) <= 8 for g in groups)
        assert sorted(c for g in groups for c in g) == list(range(weight.shape[1]))
        # At most one surviving weight per (row, group): packing by the grouping loses nothing.
        counts = np.stack([(weight[:, g] != 0).sum(axis=1) for g in groups], axis=1)
        assert counts.max() <= 1
        assert np.array_equal(pack(weight, groups, 8).unpack(), weight)
        # At least the magnitude schedule's final sparsity, rate 0.8 * (1 - 1/alpha).
        assert (weight == 0).mean() >= 0.8 * (1 - 1 / 8) - 1e-3
        # Each re-pack's kept fraction of the magnitude-pruned nonzeros (what the report shows): the
        # conflicts (gamma 0.5) prune some.
        kept = schedule.kept[name]
        assert len(kept) == 10 and all(0 < k <= 1 for k in kept) and min(kept) < 1


def test_joint_optimization_keeps_accuracy(dense, combined):
    model, _ = combined
    assert evaluate(dense) >= 0.95
    assert evaluate(model) >= evaluate(dense) - 0.04


def test_retraining_with_masks_beats_one_shot_packing(dense, combined):
    """Joint optimization's point: the same packing applied to the dense model at once, without
    retraining, costs more accuracy."""
    model, schedule = combined
    one_shot = copy.deepcopy(dense)
    for name, module in prunable_layers(one_shot):
        weight = module.weight.detach().numpy()
        module.weight.data = torch.from_numpy(pack(weight, schedule.groups[name], 8).unpack())
    assert evaluate(model) > evaluate(one_shot)


def test_alpha_one_is_dense(dense):
    schedule = ColumnCombiningSchedule(epochs=2, alpha=1, gamma=0.5)
    model = finetune(dense, schedule, 2)
    for name, module in prunable_layers(model):
        assert int((module.weight_mask == 0).sum()) == 0
        assert schedule.groups[name] == [[c] for c in range(module.in_features)]


def test_gamma_zero_prunes_only_by_magnitude(dense):
    """With gamma 0 only columns without a shared nonzero row combine: no conflict is pruned."""
    schedule = ColumnCombiningSchedule(epochs=2, alpha=4, gamma=0.0)
    model = finetune(dense, schedule, 2)
    for _, module in prunable_layers(model):
        assert float((module.weight_mask == 0).float().mean()) == pytest.approx(0.8 * 0.75, abs=2e-3)


def test_conv2d_layers_are_combined_on_their_matrix_view():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4, 10))
    schedule = ColumnCombiningSchedule(epochs=1, alpha=4, gamma=0.5)
    for epoch in range(2):
        schedule(model, epoch)
    conv = model[0]
    assert conv.weight_mask.shape == conv.weight.shape
    weight = weight_matrix(conv).numpy()
    assert weight.shape == (16, 36)
    counts = np.stack([(weight[:, g] != 0).sum(axis=1) for g in schedule.groups["0"]], axis=1)
    assert counts.max() <= 1


def test_other_schedules_reach_their_targets(dense):
    magnitude = finetune(dense, MagnitudeSchedule(epochs=2, sparsity=0.6), 2)
    for _, module in prunable_layers(magnitude):
        assert float((module.weight_mask == 0).float().mean()) == pytest.approx(0.6, abs=2e-3)
    nm = finetune(dense, NMSchedule(epochs=2, n=2, m=4), 2)
    for _, module in prunable_layers(nm):
        kept = module.weight_mask.reshape(module.weight.shape[0], -1, 4).sum(dim=2)
        assert bool((kept == 2).all())
    tiles = finetune(dense, TileWiseSchedule(epochs=2, sparsity=0.5, tile_size=32), 2)
    zeros = sum(int((m.weight_mask == 0).sum()) for _, m in prunable_layers(tiles))
    total = sum(m.weight.numel() for _, m in prunable_layers(tiles))
    assert zeros / total == pytest.approx(0.5, abs=0.1)


def test_bad_parameters():
    with pytest.raises(ValueError, match="alpha"):
        ColumnCombiningSchedule(epochs=10, alpha=0)
    with pytest.raises(ValueError, match="gamma"):
        ColumnCombiningSchedule(epochs=10, gamma=-1)
    with pytest.raises(ValueError, match="at least 1 epoch"):
        ColumnCombiningSchedule(epochs=0)
