"""Pruning through torch.nn.utils.prune: exact masks, composition, permanence, bad input."""
import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from software.frontend.pruning import (
    apply_mask,
    global_magnitude_prune,
    magnitude_prune,
    make_permanent,
    nm_prune,
    sparsity,
    tile_wise_prune,
    weight_mask,
)


def linear_with(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def random_linear(out_features=12, in_features=20, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


# --- magnitude ----------------------------------------------------------------------------------


def test_magnitude_prune_uses_torch_reparametrization_and_keeps_largest():
    layer = random_linear()
    original = layer.weight.detach().clone()
    magnitude_prune(layer, 0.6)
    assert prune.is_pruned(layer)
    assert {n for n, _ in layer.named_parameters()} == {"weight_orig", "bias"}
    assert {n for n, _ in layer.named_buffers()} == {"weight_mask"}
    mask = layer.weight_mask
    assert int((mask == 0).sum()) == round(0.6 * original.numel())  # 144 of 240
    assert torch.equal(layer.weight, original * mask)
    # Every kept magnitude is at least every pruned magnitude.
    assert original.abs()[mask == 1].min() >= original.abs()[mask == 0].max()


def test_magnitude_prune_rounds_counts_half_up():
    layer = random_linear(1, 10)
    magnitude_prune(layer, 0.25)  # 2.5 weights -> 3
    assert int((layer.weight_mask == 0).sum()) == 3


def test_magnitude_prune_ties_keep_lower_index():
    layer = linear_with(torch.ones(2, 4))
    magnitude_prune(layer, 0.5)
    assert layer.weight_mask.flatten().tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_magnitude_prune_is_cumulative_and_monotone():
    layer = random_linear()
    magnitude_prune(layer, 0.3)
    first = layer.weight_mask.clone()
    magnitude_prune(layer, 0.7)
    second = layer.weight_mask.clone()
    assert int((second == 0).sum()) == round(0.7 * second.numel())
    assert bool((second <= first).all()), "previously pruned weights must stay pruned"
    magnitude_prune(layer, 0.5)  # below the current sparsity: nothing changes
    assert torch.equal(layer.weight_mask, second)


def test_magnitude_prune_ranks_current_weights_not_stale_forward_copy():
    layer = linear_with(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    magnitude_prune(layer, 0.0)  # reparametrize only
    with torch.no_grad():  # what an optimizer step does: weight_orig changes, weight is stale
        layer.weight_orig.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    magnitude_prune(layer, 0.5)
    assert layer.weight_mask.tolist() == [[1, 1, 0, 0]]


def test_remove_makes_pruning_permanent():
    layer = random_linear()
    x = torch.randn(5, 20)
    magnitude_prune(layer, 0.5)
    expected = layer(x)
    mask = layer.weight_mask.clone()
    make_permanent(layer)
    assert not prune.is_pruned(layer)
    assert {n for n, _ in layer.named_parameters()} == {"weight", "bias"}
    assert not hasattr(layer, "weight_mask") and not hasattr(layer, "weight_orig")
    assert isinstance(layer.weight, nn.Parameter)
    assert bool((layer.weight[mask == 0] == 0).all())
    assert torch.allclose(layer(x), expected)
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_training_keeps_masked_weights_at_zero():
    layer = random_linear()
    magnitude_prune(layer, 0.5)
    mask = layer.weight_mask.clone()
    before = layer.weight_orig.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        layer(torch.randn(8, 20)).pow(2).sum().backward()
        optimizer.step()
    layer(torch.zeros(1, 20))  # the forward pre-hook refreshes `weight`
    assert bool((layer.weight[mask == 0] == 0).all())
    assert not torch.equal(layer.weight_orig[mask == 1], before[mask == 1])
    assert torch.equal(layer.weight_orig[mask == 0], before[mask == 0]), "masked weights get zero gradient"


def test_global_magnitude_prune_shares_one_threshold():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 30), nn.ReLU(), nn.Linear(30, 5))
    weights = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
    global_magnitude_prune(model, 0.7)
    masks = [model[0].weight_mask, model[2].weight_mask]
    total = sum(w.numel() for w in weights)
    assert sum(int((m == 0).sum()) for m in masks) == round(0.7 * total)
    kept = torch.cat([w.abs()[m == 1] for w, m in zip(weights, masks)])
    pruned = torch.cat([w.abs()[m == 0] for w, m in zip(weights, masks)])
    assert kept.min() >= pruned.max()
    report = sparsity(model)
    assert report.fraction("0") != pytest.approx(report.fraction("2")), "global pruning is not per-layer"
    assert report.overall == pytest.approx(round(0.7 * total) / total)


def test_global_magnitude_prune_on_top_of_existing_masks():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4))
    nm_prune(model[0], 1, 4)  # 75% of layer 0
    before = model[0].weight_mask.clone()
    global_magnitude_prune(model, 0.6)
    assert sparsity(model).zeros == round(0.6 * (128 + 64))
    assert bool((model[0].weight_mask <= before).all())


# --- N:M ----------------------------------------------------------------------------------------


def reference_nm_mask(matrix: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Loop reference: per row, per group of m, keep the n largest |w|, lower index on ties."""
    mask = torch.zeros_like(matrix)
    for r in range(matrix.shape[0]):
        for start in range(0, matrix.shape[1], m):
            idx = list(range(start, min(start + m, matrix.shape[1])))
            ranked = sorted(idx, key=lambda i: (-abs(float(matrix[r, i])), i))
            for i in ranked[:n]:
                mask[r, i] = 1
    return mask


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (3, 3)])
def test_nm_linear_matches_reference(n, m):
    layer = random_linear(16, 24, seed=n * 10 + m)
    original = layer.weight.detach().clone()
    nm_prune(layer, n, m)
    assert torch.equal(layer.weight_mask, reference_nm_mask(original, n, m))
    assert torch.equal(layer.weight, original * layer.weight_mask)      # the forward pass uses the mask


def test_nm_conv_groups_along_flattened_input_axis():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, kernel_size=(2, 2))  # K = 3 * 2 * 2 = 12
    original = conv.weight.detach().clone()
    nm_prune(conv, 2, 4)
    assert conv.weight_mask.shape == original.shape
    expected = reference_nm_mask(original.reshape(5, -1), 2, 4).reshape(original.shape)
    assert torch.equal(conv.weight_mask, expected)


def test_nm_ties_keep_lower_index():
    layer = linear_with(torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.5, 2.0, 2.0, -2.0]]))
    nm_prune(layer, 2, 4)
    assert layer.weight_mask.tolist() == [[1, 1, 0, 0, 0, 1, 1, 0]]


def test_nm_partial_last_group():
    layer = linear_with(torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.1, 0.2, 5.0, 6.0, 7.0, 0.3]]))
    nm_prune(layer, 2, 4)  # groups [0:4], [4:8], tail [8:10] keeps its 2 largest
    assert layer.weight_mask.tolist() == [[1, 1, 0, 0, 0, 0, 1, 1, 1, 1]]
    layer = linear_with(torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.1, 0.9, 0.3]]))
    nm_prune(layer, 1, 4)  # tail of 3 keeps 1
    assert layer.weight_mask.tolist() == [[1, 0, 0, 0, 0, 1, 0]]


def test_nm_respects_previous_mask():
    layer = random_linear(8, 16, seed=4)
    magnitude_prune(layer, 0.7)
    before = layer.weight_mask.clone()
    nm_prune(layer, 2, 4)
    after = layer.weight_mask
    assert bool((after <= before).all())
    assert bool((after.reshape(8, 4, 4).sum(-1) <= 2).all())
    # Where a group still had >= 2 survivors, exactly 2 remain.
    survivors = before.reshape(8, 4, 4).sum(-1)
    assert torch.equal(after.reshape(8, 4, 4).sum(-1), survivors.clamp(max=2))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: nm_prune(nn.Linear(8, 4), 5, 4), "n=5 must be <= m=4"),
        (lambda: nm_prune(nn.Linear(8, 4), 0, 4), "n must be at least 1"),
        (lambda: nm_prune(nn.Linear(8, 4), 2, 2.5), "m must be an integer"),
        (lambda: nm_prune(nn.BatchNorm1d(4), 2, 4), "unsupported layer BatchNorm1d"),
        (lambda: magnitude_prune(nn.Linear(8, 4), 1.5), "sparsity must be in [0, 1]"),
        (lambda: magnitude_prune(nn.Embedding(4, 4), 0.5), "unsupported layer Embedding"),
        (lambda: tile_wise_prune(nn.Linear(8, 4), 0.5, tile_size=0), "tile_size must be at least 1"),
        (lambda: tile_wise_prune(nn.Linear(8, 4), -0.1), "sparsity must be in [0, 1]"),
        (lambda: global_magnitude_prune([], 0.5), "no nn.Linear"),
        (lambda: global_magnitude_prune([nn.Linear(2, 2), nn.ReLU()], 0.5), "unsupported layer ReLU"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- tile-wise ----------------------------------------------------------------------------------


def test_tile_wise_hand_example():
    # B = W.T is K x F (rows: inputs k, columns: output channels f).
    b = torch.tensor(
        [
            [1.0, 1.0, 0.01, 5.0],
            [4.0, 4.0, 0.01, 0.1],
            [0.5, 0.5, 0.01, 3.0],
            [3.0, 3.0, 0.01, 4.0],
        ]
    )
    layer = linear_with(b.T)
    # sparsity 7/16: stage rate 1 - sqrt(9/16) = 1/4 -> 1 of 4 columns (f=2, the weakest).
    # Survivors [0, 1, 3] -> tiles {0, 1} and {3}; target kept = 9 of 16. Segment scores
    # (L2 / width): tile{3} row1 = 0.1, tile{0,1} row2 = 0.35, row0 = 0.71, ...; pruning row1 of
    # tile{3} (12 -> 11) and row2 of tile{0,1} (11 -> 9) reaches the target.
    tile_wise_prune(layer, 7 / 16, tile_size=2)
    expected_b = torch.tensor(
        [
            [1, 1, 0, 1],
            [1, 1, 0, 0],
            [0, 0, 0, 1],
            [1, 1, 0, 1],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(layer.weight_mask.T, expected_b)


def test_tile_wise_ties_keep_lower_index():
    # One tile of two equal rows; target kept 2 of 4 -> exactly one segment goes: the later row.
    layer = linear_with(torch.ones(2, 2))
    tile_wise_prune(layer, 0.4, tile_size=2)  # stage rate 0.23 -> no column of 2 pruned
    assert layer.weight_mask.T.tolist() == [[1, 1], [0, 0]]
    # Two tiles with equal segments: the later tile's segment goes.
    layer = linear_with(torch.ones(4, 1))
    tile_wise_prune(layer, 0.2, tile_size=2)  # target 3 of 4 -> prune one segment of width 2
    assert layer.weight_mask.T.tolist() == [[1, 1, 0, 0]]
    # Equal columns: the higher-index columns go first.
    layer = linear_with(torch.ones(4, 3))
    tile_wise_prune(layer, 0.75, tile_size=4)  # stage rate 0.5 -> 2 of 4 columns
    assert layer.weight_mask.any(dim=1).tolist() == [True, True, False, False]


@pytest.mark.parametrize("target, tile_size, row_norm", [(0.75, 16, 2), (0.5, 8, 1), (0.9, 32, 2), (0.3, 7, 2)])
def test_tile_wise_structure_and_sparsity(target, tile_size, row_norm):
    layer = random_linear(96, 64, seed=5)
    tile_wise_prune(layer, target, tile_size=tile_size, row_norm=row_norm)
    b = layer.weight_mask.T  # K x F
    n_rows, n_cols = b.shape
    column_alive = b.any(dim=0)
    # Column stage: exactly round(s1 * F) whole columns are gone.
    stage_rate = 1 - math.sqrt(1 - target)
    assert int((~column_alive).sum()) == math.floor(stage_rate * n_cols + 0.5)
    # Row stage: inside each tile of `tile_size` surviving columns, a row is all kept or all pruned.
    survivors = torch.nonzero(column_alive).flatten()
    tiles = [survivors[i:i + tile_size] for i in range(0, len(survivors), tile_size)]
    for tile in tiles:
        block = b[:, tile]
        assert bool(((block.sum(dim=1) == 0) | (block.sum(dim=1) == len(tile))).all())
    # Sparsity within half a segment of the target.
    kept = int(b.sum())
    assert abs(kept - round((1 - target) * b.numel())) <= tile_size / 2


def test_tile_wise_prunes_weakest_column_and_segments():
    layer = random_linear(32, 16, seed=6)
    with torch.no_grad():
        layer.weight[7] *= 1e-3  # output channel 7 is the weakest column of B
    tile_wise_prune(layer, 0.1, tile_size=8)  # stage rate ~0.051 -> 2 columns of 32
    pruned_columns = torch.nonzero(~layer.weight_mask.bool().any(dim=1)).flatten().tolist()
    assert 7 in pruned_columns and len(pruned_columns) == 2


def test_tile_wise_conv_and_composition():
    torch.manual_seed(7)
    conv = nn.Conv2d(4, 16, 3)
    nm_prune(conv, 2, 4)
    before = conv.weight_mask.clone()
    tile_wise_prune(conv, 0.5, tile_size=4)
    assert conv.weight_mask.shape == conv.weight_orig.shape
    assert bool((conv.weight_mask <= before).all())


# --- external masks, reporting --------------------------------------------------------------------


def test_apply_mask_uses_custom_from_mask_and_composes():
    layer = random_linear(4, 6)
    mask = torch.tensor([[1, 0, 1, 0, 1, 0]] * 4)
    apply_mask(layer, mask)
    assert torch.equal(layer.weight_mask, mask.float())
    assert bool((layer.weight[mask == 0] == 0).all())
    apply_mask(layer, mask)  # re-applying during joint optimization is idempotent
    assert torch.equal(layer.weight_mask, mask.float())
    second = torch.ones(4, 6)
    second[:, 0] = 0
    apply_mask(layer, second)
    assert torch.equal(layer.weight_mask, mask.float() * second)


def test_apply_mask_accepts_matrix_shape_for_conv():
    conv = nn.Conv2d(2, 3, 2)
    mask = torch.zeros(3, 8)
    mask[:, ::2] = 1
    apply_mask(conv, mask)
    assert torch.equal(conv.weight_mask, mask.reshape(3, 2, 2, 2))


@pytest.mark.parametrize(
    "mask, message",
    [(torch.ones(4, 5), "does not match weight shape (4, 6)"), (torch.full((4, 6), 0.5), "only 0 and 1")],
)
def test_apply_mask_rejects_bad_masks(mask, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_mask(nn.Linear(6, 4), mask)


def test_sparsity_report_counts_masked_and_zero_weights():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Conv2d(1, 2, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[0, :3] = 0  # exact zeros count too
        model[2].weight.fill_(1.0)
    apply_mask(model[2], torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1))
    report = sparsity(model)
    assert report.layers == {"0": (3, 16), "2": (1, 2)}
    assert report.overall == pytest.approx(4 / 18)
    assert "all" in str(report)
    assert torch.equal(weight_mask(model[2]).flatten(), torch.tensor([0.0, 1.0]))


def test_make_permanent_on_model():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    nm_prune(model[0], 1, 2)
    magnitude_prune(model[2], 0.5)
    x = torch.randn(4, 6)
    expected = model(x)
    make_permanent(model)
    assert not any(prune.is_pruned(m) for m in model)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert torch.allclose(model(x), expected)
    assert sparsity(model).zeros == 24 + 12


def test_every_nm_pattern_small_exhaustive():
    # Every distinct-magnitude ordering of a 4-group: the two largest survive.
    for perm in itertools.permutations([1.0, 2.0, 3.0, 4.0]):
        layer = linear_with(torch.tensor([perm]))
        nm_prune(layer, 2, 4)
        assert layer.weight_mask.flatten().tolist() == [1.0 if v >= 3 else 0.0 for v in perm]
