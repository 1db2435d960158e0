"""Bit-exact integer model of the systolic array, written from the specification, not from hdl/.

`ArrayModel` follows the array's stream protocol beat by beat: a tile's weights, then its
activation vectors, each summed as sum_c W[r, c] * x[c * alpha + S[r, c]] and accumulated per vector
position into a memory of `max_batch` entries that wraps modulo 2**acc_width (two's complement).
`reference_layer` is the plain matrix product that packing must preserve; tests check both agree.

Term-quantized arrays (mac "tq"): each weight is the sum of the terms the tile carries, and each
activation keeps the first `data_terms` of its HESE terms (software/frontend/termquant.py's per-value
budget), so the array computes reference_layer(term-quantized weights, truncate_activations(x)).

NumPy int64 arithmetic wraps modulo 2**64, and 2**acc_width divides 2**64, so wrapping the int64
result to acc_width bits is exact even when an intermediate overflows int64.
"""

import numpy as np


def wrap(values, width):
    """Two's complement wrap of integers to `width` bits."""
    values = np.asarray(values, dtype=np.int64)
    if width >= 64:
        return values
    half = np.int64(1) << np.int64(width - 1)
    return ((values + half) & ((half << np.int64(1)) - np.int64(1))) - half


def truncate_activations(config, x):
    """The activations a term-quantized array multiplies: each keeps its `data_terms` largest terms."""
    import torch
    from software.frontend.termquant import term_quantize_activations
    x = np.asarray(x, dtype=np.int64)
    return term_quantize_activations(torch.from_numpy(x), config.data_terms, config.act_width).numpy()


def terms_value(signs, exponents):
    """Integers from term lists (last axis): sum of sign * 2**exponent."""
    signs, exponents = np.asarray(signs, np.int64), np.asarray(exponents, np.int64)
    return (signs << exponents).sum(axis=-1)


class ArrayModel:
    def __init__(self, config):
        self.config = config
        self.accumulators = np.zeros((config.max_batch, config.rows), dtype=np.int64)

    def tile_sums(self, weights, selects, activations):
        """Row sums (n x R) of one tile for n activation vectors (n x C*alpha)."""
        cfg = self.config
        weights, selects = np.asarray(weights, np.int64), np.asarray(selects, np.int64)
        if selects.size and (selects.min() < 0 or selects.max() >= cfg.alpha):
            raise ValueError(f"select indices must be in [0, {cfg.alpha})")
        columns = np.arange(cfg.cols)[None, :] * cfg.alpha + selects          # R x C
        picked = np.asarray(activations, np.int64)[:, columns]                # n x R x C
        return wrap((picked * weights[None]).sum(axis=2), cfg.acc_width)

    def run_tile(self, tile):
        """Results (list of R-vectors) emitted by one tile."""
        if self.config.mac_style.uses_terms:
            sums = self.tile_sums(terms_value(tile.term_signs, tile.term_exponents), tile.selects,
                                  truncate_activations(self.config, tile.activations))
        else:
            sums = self.tile_sums(tile.weights, tile.selects, tile.activations)
        n = sums.shape[0]
        if n > self.config.max_batch:
            raise ValueError(f"a tile of {n} vectors exceeds max_batch={self.config.max_batch}")
        base = 0 if tile.clear else self.accumulators[:n]
        self.accumulators[:n] = wrap(base + sums, self.config.acc_width)
        return list(self.accumulators[:n].copy()) if tile.emit else []

    def run(self, schedule):
        results = []
        for tile in schedule.tiles:
            results.extend(self.run_tile(tile))
        return np.array(results, dtype=np.int64).reshape(-1, self.config.rows)


def reference_layer(dense_weights, x, acc_width):
    """y = x W^T for integer W (F x K) and x (N x K), wrapped to acc_width bits."""
    return wrap(np.asarray(x, np.int64) @ np.asarray(dense_weights, np.int64).T, acc_width)
