"""Column-combining packing: the greedy grouping rule, conflict pruning and select indices."""

import math
import os
import sys

import numpy as np
import pytest

from software.packing.colcomb import (GROUPINGS, SECTION_COLUMNS, combine, dense_grouping, group_columns,
                                      kept_fraction, magnitude, pack)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "benchmarks"))
from packer import combinable_matrix, random_matrix  # noqa: E402


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


@pytest.mark.parametrize("grouping", list(GROUPINGS))
def test_without_pruning_partner_leaving_fewest_empty_rows_wins(grouping):
    # Group 0 = column 0 (row 0). Feasible partners with gamma 0: column 1 (row 1) and column 2
    # (rows 1 and 2). Neither prunes anything; column 2 leaves fewer rows empty, so {0, 2} is formed first.
    nz = np.array([[1, 0, 0, 1],
                   [0, 1, 1, 1],
                   [0, 0, 1, 1]], dtype=bool)
    groups = group_columns(nz, alpha=2, gamma=0, grouping=grouping)
    assert groups[0] == [0, 2]
    assert [1] in groups and [3] in groups


def test_least_pruned_rule_ranks_partners_by_pruned_magnitude():
    # Column 0 may merge with column 1 or 2 (one conflict each, budget 1). Column 1 leaves no row
    # empty but its merge prunes 9 (row 0: 9 vs 10); column 2's prunes only 1.
    w = np.array([[10, 9, 1],
                  [0, 5, 0],
                  [0, 0, 0]])
    assert group_columns(w, alpha=2, gamma=0.34, grouping="fewest-empty")[0] == [0, 1]
    assert group_columns(w, alpha=2, gamma=0.34, grouping="least-pruned")[0] == [0, 2]
    assert group_columns(w, alpha=2, gamma=0.34)[0] == [0, 2]          # the default: same width, more kept


def test_unknown_grouping_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown column grouping 'nope'; known: least-pruned"):
        group_columns(np.ones((2, 2)), 2, 0.5, grouping="nope")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_most_negative_value_keeps_its_place(dtype):
    # The repro: abs(-128) overflows in int8 and the -128s lost to 5 and 0.
    low = np.iinfo(dtype).min
    w = np.array([[low, 5], [low, 0], [3, np.iinfo(dtype).max]], dtype)
    cc = pack(w, [[0, 1]], 2)
    assert cc.packed[:, 0].tolist() == [low, low, np.iinfo(dtype).max]
    assert cc.select[:, 0].tolist() == [0, 0, 1]
    assert magnitude(np.array([low], dtype))[0] == -int(low)


def test_magnitude_is_wide_for_every_dtype():
    for dtype in (np.uint8, np.uint64, np.float16, np.float32, bool):
        values = np.array([0, 1], dtype)
        assert magnitude(values).tolist() == [0, 1]
    assert magnitude(np.array([np.iinfo(np.uint64).max], np.uint64))[0] == np.iinfo(np.uint64).max
    assert magnitude(np.array([-2.5]))[0] == 2.5


def test_combinable_by_construction_matrices_are_kept_whole():
    # The case: 256 x 1024, alpha-groups of disjoint-support columns, shuffled.
    for seed in range(1):
        w = combinable_matrix(np.random.default_rng(seed), 256, 1024, 8)
        old = kept_fraction(w, combine(w, 8, 0.5, grouping="fewest-empty"))
        new = combine(w, 8, 0.5)
        assert kept_fraction(w, new) >= 0.98 > old
        assert len(new.groups) == 128


def test_default_keeps_no_fewer_than_the_original_rule_on_random_matrices():
    rng = np.random.default_rng(3)
    for density in (0.05, 0.1, 0.2):
        w = random_matrix(rng, 96, 384, density)
        old = combine(w, 8, 0.5, grouping="fewest-empty")
        new = combine(w, 8, 0.5)
        assert len(new.groups) <= len(old.groups)
        if len(new.groups) == len(old.groups):
            assert np.abs(new.packed).sum() >= np.abs(old.packed).sum()


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


def test_original_rule_searches_in_sections():
    nz = np.zeros((4, SECTION_COLUMNS + 10), dtype=bool)
    groups = group_columns(nz, alpha=48, gamma=0, grouping="fewest-empty")
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
