"""Column-combining packing: the greedy grouping rule, conflict pruning and select indices."""

import math

import numpy as np
import pytest

from software.packing.colcomb import SECTION_COLUMNS, combine, dense_grouping, group_columns, pack


def conflicts(nonzero, group):
    counts = nonzero[:, group].sum(axis=1)
    return int(np.maximum(counts - 1, 0).sum())


def test_disjoint_columns_merge_without_loss():
    # Columns 0/1 and 2/3 have disjoint supports; merging with gamma 0 must keep every weight.
    w = np.array([[1, 0, 5, 0],
                  [0, 2, 0, 6],
                  [3, 0, 0, 7]])
    cc = combine(w, alpha=2, gamma=0)
    assert cc.groups == [[0, 1], [2, 3]]
    assert np.array_equal(cc.unpack(), w)            # no conflicts allowed, so nothing is pruned
    assert cc.packed.tolist() == [[1, 5], [2, 6], [3, 7]]
    assert cc.select.tolist() == [[0, 0], [1, 1], [0, 1]]


def test_greedy_rule_picks_partner_leaving_fewest_empty_rows():
    # Group 0 = column 0 (row 0). Feasible partners with gamma 0: column 1 (row 1) and column 2
    # (rows 1 and 2). Column 2 leaves fewer rows empty in both, so {0, 2} is formed first.
    nz = np.array([[1, 0, 0, 1],
                   [0, 1, 1, 1],
                   [0, 0, 1, 1]], dtype=bool)
    groups = group_columns(nz, alpha=2, gamma=0)
    assert groups[0] == [0, 2]
    assert [1] in groups and [3] in groups


def test_conflict_budget_and_alpha_are_respected():
    rng = np.random.default_rng(0)
    w = rng.integers(-9, 10, size=(20, 60)) * (rng.random((20, 60)) < 0.2)
    for alpha, gamma in [(2, 0.0), (4, 0.1), (8, 0.5)]:
        groups = group_columns(w != 0, alpha, gamma)
        assert sorted(c for g in groups for c in g) == list(range(60))
        for g in groups:
            assert len(g) <= alpha
            assert conflicts(w != 0, g) <= math.floor(gamma * 20)


def test_packing_keeps_largest_magnitude_and_selects_it():
    w = np.array([[3, -7, 0], [0, 2, -2], [0, 0, 0]])
    cc = pack(w, [[0, 1, 2]], alpha=4)
    assert cc.packed[:, 0].tolist() == [-7, 2, 0]          # ties keep the lower column (2 vs -2)
    assert cc.select[:, 0].tolist() == [1, 1, 0]
    assert cc.mask.tolist() == [[False, True, False], [False, True, False], [False, False, False]]


def test_more_groups_merge_with_more_sparsity():
    rng = np.random.default_rng(1)
    dense = rng.integers(1, 5, size=(32, 128))
    sparse = dense * (rng.random(dense.shape) < 0.1)
    assert len(group_columns(sparse != 0, 8, 0.5)) < len(group_columns(dense != 0, 8, 0.5))
    assert len(group_columns(dense != 0, 8, 0.0)) == 128     # dense columns always conflict


def test_sections_do_not_mix_columns():
    nz = np.zeros((4, SECTION_COLUMNS + 10), dtype=bool)
    groups = group_columns(nz, alpha=64, gamma=0)
    for g in groups:
        assert len({c // SECTION_COLUMNS for c in g}) == 1


def test_dense_grouping_is_identity():
    w = np.arange(12).reshape(3, 4)
    cc = pack(w, dense_grouping(4), 1)
    assert np.array_equal(cc.packed, w) and not cc.select.any()


@pytest.mark.parametrize("groups, message", [([[0, 1]], "cover every column"),
                                             ([[0, 1, 2]], "more than alpha")])
def test_pack_rejects_bad_groupings(groups, message):
    with pytest.raises(ValueError, match=message):
        pack(np.ones((2, 3)), groups, alpha=2)
