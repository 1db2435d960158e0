"""Bit-exact integer model of the one-head attention unit, its cycle model, and the float reference.

Written from this specification, not from hdl/, so a disagreement shows up in the tests.

Arithmetic (d = head_dim, F = exp_frac_bits, E = exp_bits, P = prob_bits, G = 4 guard bits)
------------------------------------------------------------------------------------------
K and V hold n <= max_len rows of d signed `data_width`-bit integers. Each query row q comes with
an unsigned score multiplier m (`scale_width` bits) and a shift s (0..63). `>>` is a floor shift.

1. scores     s_j = q . K_j, exact.
2. scaling    z_j = ((max_i s_i - s_j) * m) >> s: how far below the row maximum score j lies, in
              log2 units with F fraction bits. The host picks m / 2**(F + s) ~= the softmax scale
              times log2(e), so that 2**(-z_j / 2**F) ~= exp(scale * (s_j - max s)).
3. exponent   e_j = 0 if z_j >= (E + 1) * 2**F, else T[z_j mod 2**F] >> (z_j >> F), with the
              table T[f] = round(2**(E - f / 2**F)) (2**F entries, T[0] = 2**E): the integer
              part of the exponent is a shift, the fraction comes from the table. (round is
              floor(x + 1/2) in float64; for 0 < f < 2**F, x is irrational, so never a tie. The
              manifest lists the table.)
4. pruning    keep_j = (z_j <= threshold * 2**F, in modes threshold and both)
                   and (rank_j < top_k, in modes topk and both),
              rank_j = #{i: s_i > s_j} + #{i < j: s_i = s_j} (ties: lower position first).
              Mode none keeps every position. The first position of the row maximum is always
              kept (z = 0, rank 0), so the sum below is at least 2**E.
5. normalize  S = sum of e_j over kept j; r = 2**N // S with N = E + P + G (one reciprocal per
              row); p_j = (e_j * r + 2**(N - P - 1)) >> (N - P) for kept j (round half up),
              p_j <= 2**P. Pruned positions are renormalized away and skipped below.
6. output     acc_k = sum over kept j of p_j * V[j][k], exact;
              o_k = clamp((acc_k + 2**(P - 1)) >> P) to `out_width` signed bits (round half up,
              then saturate). The unit also reports kept = #{kept j}.

Candidates (they decide clocks, never results). While scoring, the unit already drops positions
that are certain to be pruned: candidate_j = (z'_j <= threshold * 2**F, in modes threshold and
both) and (#{i < j: s_i >= s_j} < top_k, in modes topk and both), where z'_j is z_j computed
against the running maximum max_{i <= j} s_i. The running maximum never exceeds the final one and
a rank among a prefix never exceeds the final rank, so every kept position is a candidate.

Cycles (`query_cycles`, asserted equal to the RTL's in tests): loading n rows takes n clocks; a
query then takes n + candidates + kept + divide_cycles + QUERY_OVERHEAD (spec/attention.py) clocks: the scores pass
visits every position, the softmax pass only the candidates, p.V only the kept positions, and the
divider produces 4 bits of the reciprocal per clock. Without pruning, candidates = kept = n.
"""

import dataclasses
import math

import numpy as np

from spec.attention import SHIFT_WIDTH



# ---------------------------------------------------------------------------------------------
# The integer unit

@dataclasses.dataclass(frozen=True)
class HeadResult:
    """Every intermediate of the golden model, for m queries against n keys."""
    scores: np.ndarray     # m x n
    z: np.ndarray          # m x n
    e: np.ndarray          # m x n
    keep: np.ndarray       # m x n bool
    candidate: np.ndarray  # m x n bool: not yet certain to be pruned while scoring
    recip: np.ndarray      # m
    p: np.ndarray          # m x n (0 where pruned)
    acc: np.ndarray        # m x d
    out: np.ndarray        # m x d
    kept: np.ndarray       # m
    candidates: np.ndarray # m


def _check_range(name, values, lo, hi):
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}]")
    return values


def ranks(scores):
    """rank[i, j] = #{k: s_k > s_j} + #{k < j: s_k = s_j}, per row."""
    scores = np.asarray(scores, dtype=np.int64)
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(scores.shape[1])[None, :].repeat(scores.shape[0], 0), axis=1)
    return rank


def prefix_ranks(scores):
    """rank[i, j] = #{k < j: s_k >= s_j}: j's rank among positions 0..j, ties to the earlier."""
    scores = np.asarray(scores, dtype=np.int64)
    n = scores.shape[1]
    earlier = np.tril(np.ones((n, n), dtype=bool), k=-1)           # [j, k]: k < j
    return ((scores[:, None, :] >= scores[:, :, None]) & earlier[None]).sum(axis=2)


def golden_head(config, q, k, v, mul, shift):
    """Run m queries (m x d) against one head's K, V (n x d); mul, shift: one per query."""
    cfg = config
    lo, hi = cfg.data_range
    q = _check_range("q", q, lo, hi).reshape(-1, cfg.head_dim)
    k = _check_range("k", k, lo, hi).reshape(-1, cfg.head_dim)
    v = _check_range("v", v, lo, hi).reshape(-1, cfg.head_dim)
    n = k.shape[0]
    if not 1 <= n <= cfg.max_len or v.shape[0] != n:
        raise ValueError(f"K and V need the same number of rows, 1 to {cfg.max_len}")
    m = q.shape[0]
    mul = _check_range("mul", np.broadcast_to(mul, (m,)), 0, (1 << cfg.scale_width) - 1)
    shift = _check_range("shift", np.broadcast_to(shift, (m,)), 0, (1 << SHIFT_WIDTH) - 1)
    F, E, P, N = cfg.exp_frac_bits, cfg.exp_bits, cfg.prob_bits, cfg.recip_shift

    scores = q @ k.T
    diff = scores.max(axis=1, keepdims=True) - scores
    z = (diff * mul[:, None]) >> shift[:, None]

    table = np.array(cfg.exp_table, dtype=np.int64)
    zero = z >= ((E + 1) << F)
    whole = np.where(zero, 0, z >> F)
    e = np.where(zero, 0, table[z & ((1 << F) - 1)] >> whole)

    keep = np.ones_like(z, dtype=bool)
    candidate = np.ones_like(z, dtype=bool)
    if cfg.prune in ("threshold", "both"):
        keep &= z <= (cfg.threshold << F)
        running = np.maximum.accumulate(scores, axis=1)
        candidate &= ((running - scores) * mul[:, None]) >> shift[:, None] <= (cfg.threshold << F)
    if cfg.prune in ("topk", "both"):
        keep &= ranks(scores) < cfg.top_k
        candidate &= prefix_ranks(scores) < cfg.top_k

    total = np.where(keep, e, 0).sum(axis=1)
    recip = (np.int64(1) << N) // total
    p = np.where(keep, (e * recip[:, None] + (1 << (N - P - 1))) >> (N - P), 0)
    acc = p @ v
    o_lo, o_hi = cfg.out_range
    out = np.clip((acc + (1 << (P - 1))) >> P, o_lo, o_hi)
    return HeadResult(scores=scores, z=z, e=e, keep=keep, candidate=candidate, recip=recip, p=p,
                      acc=acc, out=out, kept=keep.sum(axis=1), candidates=candidate.sum(axis=1))


# ---------------------------------------------------------------------------------------------
# Cycle model

def query_cycles(config, n, candidates, kept):
    """Clocks of one query against n rows: `candidates` pass the scoring filter, `kept` survive
    pruning."""
    return config.query_cycles(n, candidates, kept)


def head_cycles(config, n, candidates, kept):
    """Clocks to load n K/V rows and run the queries (first kv handshake to last output), given
    each query's candidates and kept positions (as golden_head reports them)."""
    return n + sum(query_cycles(config, n, int(c), int(k)) for c, k in zip(candidates, kept))


def dense_head_cycles(config, n, queries):
    """The same without pruning (every position a candidate and kept)."""
    return head_cycles(config, n, [n] * queries, [n] * queries)


# ---------------------------------------------------------------------------------------------
# Quantization: floats in, the unit's integers and scales out

def symmetric_scale(x, width, axis=None):
    """max|x| / (2**(width-1) - 1), per tensor or along `axis` (1 where x is all zero)."""
    top = np.abs(np.asarray(x, dtype=np.float64)).max(axis=axis, keepdims=axis is not None)
    top = np.where(top > 0, top, 1.0)
    return top / ((1 << (width - 1)) - 1)


def quantize(x, scale, width):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / scale), lo, hi).astype(np.int64)


def score_scale(config, factor):
    """(m, s) with m / 2**(F + s) as close to `factor` as m's `scale_width` bits allow.

    `factor` converts an integer score into log2 units: scale_q * scale_k * log2(e) / sqrt(d)."""
    factors = np.atleast_1d(np.asarray(factor, dtype=np.float64))
    F, W = config.exp_frac_bits, config.scale_width
    muls, shifts = [], []
    for f in factors:
        if not f > 0:
            raise ValueError("the score factor must be positive")
        # The largest shift that keeps the multiplier within W bits.
        s = math.floor(W - math.log2(f) - F)
        s = min(max(s, 0), (1 << SHIFT_WIDTH) - 1)
        m = round(f * 2.0 ** (F + s))
        while m >= (1 << W) and s > 0:
            s -= 1
            m = round(f * 2.0 ** (F + s))
        muls.append(min(m, (1 << W) - 1))
        shifts.append(s)
    return np.array(muls, dtype=np.int64), np.array(shifts, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class QuantizedHead:
    """One head's integers for the unit, and the scale that turns its outputs back into floats."""
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    mul: np.ndarray
    shift: np.ndarray
    out_scale: float


def quantize_head(config, q, k, v, softmax_scale=None):
    """Symmetric quantization: Q per row (each query carries its own score scale), K and V per
    tensor. `softmax_scale` defaults to 1 / sqrt(d), as in BERT."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    w = config.data_width
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    q_scale = symmetric_scale(q, w, axis=1)
    k_scale, v_scale = symmetric_scale(k, w), symmetric_scale(v, w)
    mul, shift = score_scale(config, q_scale[:, 0] * k_scale * softmax_scale * math.log2(math.e))
    return QuantizedHead(q=quantize(q, q_scale, w), k=quantize(k, k_scale, w), v=quantize(v, v_scale, w),
                         mul=mul, shift=shift, out_scale=float(v_scale))


def unit_attention(config, q, k, v, softmax_scale=None):
    """Float in, float out through the integer unit: (outputs m x d, the golden HeadResult)."""
    head = quantize_head(config, q, k, v, softmax_scale)
    result = golden_head(config, head.q, head.k, head.v, head.mul, head.shift)
    return result.out * head.out_scale, result


def float_attention(q, k, v, softmax_scale=None):
    """softmax(q k^T * scale) v in float64, the reference."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    s = q @ k.T * softmax_scale
    s = np.exp(s - s.max(axis=1, keepdims=True))
    return (s / s.sum(axis=1, keepdims=True)) @ v
