"""The attention unit's configuration, golden model, cycle model, quantization and beat packing."""

import math

import numpy as np
import pytest

from software.packing import attention_beats as beats
from spec.attention import QUERY_OVERHEAD
from software.golden.attention import (dense_head_cycles, float_attention, golden_head,
                                head_cycles, quantize_head, ranks, score_scale, unit_attention)
from spec.attention import AttentionConfig, ConfigError


def scalar_reference(config, q, k, v, mul, shift):
    """The specification again, one query and one position at a time in Python integers (no
    int64, no vectorization): a check on golden_head's numpy formulation."""
    F, E, P, N = config.exp_frac_bits, config.exp_bits, config.prob_bits, config.recip_shift
    outs, kepts, cands = [], [], []
    for qi, m, s in zip(q, mul, shift):
        scores = [sum(int(a) * int(b) for a, b in zip(qi, row)) for row in k]
        top = max(scores)
        z = [((top - sj) * int(m)) >> int(s) for sj in scores]
        e = [0 if zj >= (E + 1) << F else round(2 ** (E - (zj % (1 << F)) / (1 << F))) >> (zj >> F)
             for zj in z]
        keep = []
        for j, sj in enumerate(scores):
            rank = sum(1 for i, si in enumerate(scores) if si > sj or (si == sj and i < j))
            ok = True
            if config.prune in ("threshold", "both"):
                ok &= z[j] <= config.threshold << F
            if config.prune in ("topk", "both"):
                ok &= rank < config.top_k
            keep.append(ok)
        candidate = []
        for j, sj in enumerate(scores):
            ok = True
            if config.prune in ("threshold", "both"):
                ok &= ((max(scores[:j + 1]) - sj) * int(m)) >> int(s) <= config.threshold << F
            if config.prune in ("topk", "both"):
                ok &= sum(1 for si in scores[:j] if si >= sj) < config.top_k
            candidate.append(ok)
            assert ok or not keep[j]                # a kept position is always a candidate
        cands.append(sum(candidate))
        total = sum(ej for ej, kj in zip(e, keep) if kj)
        r = (1 << N) // total
        p = [(ej * r + (1 << (N - P - 1))) >> (N - P) if kj else 0 for ej, kj in zip(e, keep)]
        lo, hi = config.out_range
        outs.append([min(hi, max(lo, (sum(pj * int(v[j][c]) for j, pj in enumerate(p)) + (1 << (P - 1))) >> P))
                     for c in range(config.head_dim)])
        kepts.append(sum(keep))
    return outs, kepts, cands


def random_case(rng, config, n, m):
    lo, hi = config.data_range
    q, k, v = (rng.integers(lo, hi + 1, size=(rows, config.head_dim)) for rows in (m, n, n))
    mul = rng.integers(0, 1 << config.scale_width, size=m)
    typical = (config.head_dim * hi * hi // 4 + 1) << config.scale_width
    shift = np.clip(typical.bit_length() - config.exp_frac_bits - 3 + rng.integers(-3, 3, size=m), 0, 63)
    return q, k, v, mul, shift


@pytest.mark.parametrize("fields", [
    dict(head_dim=5, max_len=9, data_width=6),
    dict(head_dim=3, max_len=12, prune="threshold", threshold=2, exp_frac_bits=2, exp_bits=5, prob_bits=4),
    dict(head_dim=4, max_len=10, prune="topk", top_k=3, out_width=5),
    dict(head_dim=2, max_len=7, prune="both", threshold=4, top_k=2, data_width=4, scale_width=20),
    # The widest datapath the configuration allows: the scalar model has no int64 to overflow.
    dict(head_dim=256, max_len=6, data_width=16, scale_width=21, exp_bits=20, prob_bits=16, out_width=32),
])
def test_golden_matches_the_scalar_specification(fields):
    config = AttentionConfig(**fields)
    rng = np.random.default_rng(0)
    for n in (1, config.max_len // 2, config.max_len):
        q, k, v, mul, shift = random_case(rng, config, n, 3)
        if fields.get("data_width") == 16:
            lo, _ = config.data_range
            q[0], k[:], v[:] = lo, lo, lo           # the largest products everywhere
            mul[0], shift[0] = (1 << config.scale_width) - 1, 0
        r = golden_head(config, q, k, v, mul, shift)
        outs, kepts, cands = scalar_reference(config, q, k, v, mul, shift)
        assert r.out.tolist() == outs and r.kept.tolist() == kepts and r.candidates.tolist() == cands


def test_probabilities_are_normalized_and_close_to_softmax():
    config = AttentionConfig(head_dim=8, max_len=16, exp_frac_bits=8, exp_bits=16, prob_bits=14)
    rng = np.random.default_rng(1)
    q, k, v = (rng.normal(size=(16, 8)) for _ in range(3))
    head = quantize_head(config, q, k, v)
    r = golden_head(config, head.q, head.k, head.v, head.mul, head.shift)
    P = config.prob_bits
    assert (np.abs(r.p.sum(axis=1) - (1 << P)) <= 16).all()
    # Against float softmax of the same integer scores, scaled as the unit was told to scale them.
    factor = head.mul / 2.0 ** (config.exp_frac_bits + head.shift) / math.log2(math.e)
    s = r.scores * factor[:, None]
    soft = np.exp(s - s.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    assert np.abs(r.p / (1 << P) - soft).max() < 2e-3


def test_unit_attention_tracks_float_attention():
    config = AttentionConfig(head_dim=32, max_len=64)
    rng = np.random.default_rng(2)
    q, k, v = (rng.normal(size=(20, 32)) * 2 for _ in range(3))
    out, result = unit_attention(config, q, k, v)
    ref = float_attention(q, k, v)
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()
    assert (result.kept == 20).all() and (result.candidates == 20).all()


def test_all_equal_scores_give_uniform_probabilities():
    config = AttentionConfig(head_dim=4, max_len=8, prune="topk", top_k=3)
    k = np.arange(32).reshape(8, 4) % 7 - 3
    v = np.arange(32).reshape(8, 4) - 16
    r = golden_head(config, np.zeros((1, 4), int), k, v, [100], [0])
    assert r.keep[0].tolist() == [True] * 3 + [False] * 5         # ties: the first k positions
    assert len(set(r.p[0, :3])) == 1 and r.p[0, 3:].sum() == 0
    assert r.out[0].tolist() == [int(math.floor(v[:3, c].mean() + 0.5)) for c in range(4)]


def test_threshold_keeps_exactly_the_positions_near_the_max():
    config = AttentionConfig(head_dim=1, max_len=8, prune="threshold", threshold=2, exp_frac_bits=2)
    k = np.array([[0], [1], [2], [3], [4], [5], [6], [7]])
    # mul / 2**(F + shift) = 1: z_j = (7 - j) log2 units, so positions 5, 6, 7 are within 2.
    r = golden_head(config, [[1]], k, k, [4], [0])
    assert r.keep[0].tolist() == [False] * 5 + [True] * 3
    assert r.z[0].tolist() == [(7 - j) * 4 for j in range(8)]
    assert r.e[0, -1] == 1 << config.exp_bits and r.e[0, -2] == 1 << (config.exp_bits - 1)


def test_ranks_break_ties_by_position():
    assert ranks(np.array([[3, 5, 3, 5, 1]])).tolist() == [[2, 0, 3, 1, 4]]


def test_extremes_saturate_and_never_overflow():
    config = AttentionConfig(head_dim=32, max_len=64, out_width=4)
    lo, hi = config.data_range
    full = np.full((64, 32), lo)
    r = golden_head(config, np.full((1, 32), lo), full, full, [(1 << 16) - 1], [0])
    assert (r.out == config.out_range[0]).all() and r.kept[0] == 64
    r = golden_head(config, np.full((1, 32), lo), full, np.full((64, 32), hi), [1], [0])
    assert (r.out == config.out_range[1]).all()


def test_score_scale_uses_the_full_multiplier():
    config = AttentionConfig()
    for factor in (1e-5, 3.7e-4, 0.02, 0.9):
        (m,), (s,) = score_scale(config, factor)
        assert 1 << (config.scale_width - 1) <= m < 1 << config.scale_width
        assert abs(m / 2.0 ** (config.exp_frac_bits + s) / factor - 1) < 2.0 ** -(config.scale_width - 1)
    (m,), (s,) = score_scale(config, 1e6)          # too large for any shift: saturate
    assert s == 0 and m == (1 << config.scale_width) - 1


def test_cycle_model():
    config = AttentionConfig(prune="threshold", threshold=4)
    D = config.divide_cycles
    assert D == 4                        # 15 reciprocal bits, 4 per clock
    assert head_cycles(config, 10, [10, 5], [10, 3]) == 10 + (30 + D + QUERY_OVERHEAD) + (18 + D + QUERY_OVERHEAD)
    assert dense_head_cycles(config, 10, 2) - head_cycles(config, 10, [10, 5], [10, 3]) == 12


@pytest.mark.parametrize("fields, message", [
    (dict(head_dim=0), "head_dim must be between 1 and 256"),
    (dict(max_len=5000), "max_len must be between"),
    (dict(data_width=1), "data_width must be between"),
    (dict(prune="random"), "prune must be one of none, threshold, topk, both"),
    (dict(prune="threshold"), "prune threshold needs a threshold"),
    (dict(threshold=3), "a threshold is only used with prune threshold or both"),
    (dict(prune="topk", top_k=65), "top_k must be between 1 and 64"),
    (dict(prune="both", threshold=2), "prune both needs top_k"),
    (dict(prune="threshold", threshold=14), "threshold must be between 0 and 13"),
    (dict(head_dim=256, data_width=16, scale_width=24), "at most 62 bits"),
    (dict(head_dim="32"), "head_dim must be an integer"),
])
def test_bad_configurations_are_one_line_errors(fields, message):
    with pytest.raises(ConfigError) as info:
        AttentionConfig(**fields)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_round_trips_through_a_dict():
    config = AttentionConfig(prune="both", threshold=3, top_k=5)
    assert AttentionConfig.from_dict(config.as_dict()) == config
    with pytest.raises(ConfigError, match="unknown attention configuration field"):
        AttentionConfig.from_dict({**config.as_dict(), "rows": 3})


def test_beats_follow_the_manifest_description():
    config = AttentionConfig(head_dim=3, max_len=5, data_width=5, scale_width=7, out_width=6)
    ports = {p["name"]: p for p in config.ports()}
    for name, width in (("kv", config.kv_beat_width), ("query", config.query_beat_width),
                        ("out", config.out_beat_width)):
        port = ports[name]
        assert port["payload_width"] == width
        assert max(f["lsb"] + f["width"] * f.get("count", 1) for f in port["payload"]) == width
    word = beats.query_beat(config, [-16, 15, 3], 100, 9, last=True)
    fields = {f["field"]: f for f in ports["query"]["payload"]}
    assert (word >> fields["scale"]["lsb"]) & 127 == 100
    assert (word >> fields["shift"]["lsb"]) & 63 == 9
    assert word >> fields["last"]["lsb"] == 1
    kv = beats.kv_beat(config, [1, 2, 3], [-1, -2, -3], last=False)
    assert kv >> 15 == beats.kv_beat(config, [-1, -2, -3], [0, 0, 0], last=False)
    assert beats.out_values(config, beats.out_beat(config, [-32, 31, 0], 5)) == ([-32, 31, 0], 5)
