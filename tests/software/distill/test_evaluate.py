"""Embedding agreement and FFN tile counts of software/distill/evaluate.py."""

import numpy as np
import pytest

from software.distill.evaluate import agreement, array_config, matrix_cost, nearest_neighbours
from software.packing.colcomb import dense_grouping


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_identical_embeddings_agree_fully():
    e = unit_rows(np.random.default_rng(0).standard_normal((50, 16)))
    a = agreement(e, e)
    assert a.mean_cosine == pytest.approx(1.0) and a.p5_cosine == pytest.approx(1.0)
    assert a.neighbour_agreement == 1.0 and a.sentences == 50


def test_noise_lowers_cosine_and_neighbour_agreement():
    rng = np.random.default_rng(1)
    e = unit_rows(rng.standard_normal((200, 16)))
    noisy = unit_rows(e + 0.05 * rng.standard_normal(e.shape))
    a = agreement(e, noisy)
    assert 0.8 < a.p5_cosine < a.mean_cosine < 0.999
    assert a.neighbour_agreement < 1.0
    cosine = (e * noisy).sum(axis=1)
    assert a.mean_cosine == pytest.approx(cosine.mean()) and a.p5_cosine == pytest.approx(np.percentile(cosine, 5))
    assert a.neighbour_agreement == pytest.approx((nearest_neighbours(e) == nearest_neighbours(noisy)).mean())


def test_nearest_neighbour_is_never_the_sentence_itself():
    e = unit_rows(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    assert nearest_neighbours(e).tolist() == [1, 0, 1]


def test_tiles_dense_and_packed():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((1536, 384))
    dense = matrix_cost("dense", w, dense_grouping(384), array_config(1), tokens=8)
    assert dense.tiles == 48 * 12 == 576 and dense.groups == 384
    # 48 groups of 8 columns, one weight per (row, group): 48 row blocks x 2 group blocks.
    groups = [list(range(g * 8, g * 8 + 8)) for g in range(48)]
    sparse = np.zeros_like(w)
    sparse[np.arange(1536)[:, None], np.array(groups)[None, :, 0] + rng.integers(0, 8, (1536, 48))] = 1.0
    packed = matrix_cost("packed", sparse, groups, array_config(8), tokens=8)
    assert packed.tiles == 96 and packed.groups == 48 and packed.nonzeros == 1536 * 48
    assert packed.cycles < dense.cycles
    with pytest.raises(ValueError, match="does not hold every weight"):
        matrix_cost("bad", w, groups, array_config(8), tokens=8)
