"""Cutting a packed layer into array tiles, and the beats that run them.

A packed layer (F x G weights with selects, G groups of at most alpha input columns) runs on an
R x C array as ceil(F / R) row blocks x ceil(G / C) group blocks. All group blocks of one row block
accumulate into the same outputs: the first one clears the accumulator, the last one emits. A batch
of N input vectors streams through every tile; batches larger than the accumulator (`max_batch`)
are cut into chunks, each chunk running every tile again.

On a term-quantized array (mac "tq") the weights travel as term lists: the tiles carry, beside
the integer weights, each weight's terms (signs -1/0/+1 and exponents, largest first), gathered
through the column combining from the front-end's terms of the F x K matrix.

Order of the streams (what a host or testbench sends and receives):
  for each chunk, for each row block, for each group block:
      weights:     R beats (row 0 first) of C weights (term lists with mac "tq") and C selects
      activations: n beats of C * alpha activations; flags last / clear / emit
  results: for each chunk, for each row block, n beats of R sums.
"""

import dataclasses
import math

import numpy as np

from software.packing.colcomb import ColumnCombining


class ScheduleError(ValueError):
    """A layer or batch that does not fit the array."""


@dataclasses.dataclass(frozen=True)
class Tile:
    row_block: int
    group_block: int
    weights: np.ndarray       # R x C
    selects: np.ndarray       # R x C
    activations: np.ndarray   # n x (C * alpha), group g's activation i at column g * alpha + i
    clear: bool
    emit: bool
    term_signs: np.ndarray | None = None       # mac "tq": R x C x weight_terms, -1/0/+1
    term_exponents: np.ndarray | None = None   # mac "tq": R x C x weight_terms

    @property
    def batch(self):
        return self.activations.shape[0]


@dataclasses.dataclass(frozen=True)
class LayerSchedule:
    config: object
    out_features: int
    batch: int
    tiles: list
    useful_macs: int

    @property
    def tile_batches(self):
        return [t.batch for t in self.tiles]

    def assemble(self, results):
        """Put the result beats (in stream order) back into an N x F output matrix."""
        rows = self.config.rows
        results = np.asarray(results, dtype=np.int64).reshape(-1, rows)
        out = np.zeros((self.batch, self.out_features), dtype=np.int64)
        pos = 0
        for chunk_start, tile in _emitting(self.tiles):
            n = tile.batch
            block = results[pos:pos + n]
            pos += n
            lo = tile.row_block * rows
            hi = min(lo + rows, self.out_features)
            out[chunk_start:chunk_start + n, lo:hi] = block[:, :hi - lo]
        if pos != len(results):
            raise ScheduleError(f"expected {pos} result beats, got {len(results)}")
        return out


def _emitting(tiles):
    """(first vector of its chunk, tile) for each emitting tile; a chunk emits every row block once."""
    chunk_start, rows_done = 0, 0
    blocks = max((t.row_block for t in tiles), default=-1) + 1
    for tile in tiles:
        if tile.emit:
            yield chunk_start, tile
            rows_done += 1
            if rows_done == blocks:
                chunk_start += tile.batch
                rows_done = 0


def check_fits(config, layer):
    if layer.alpha > config.alpha:
        raise ScheduleError(f"layer packed with alpha={layer.alpha} does not fit an array with alpha={config.alpha}")
    lo, hi = config.operand_ranges[1]
    if layer.packed.size and (layer.packed.min() < lo or layer.packed.max() > hi):
        kind = "term-quantized " if config.mac_style.uses_terms else ""
        raise ScheduleError(f"weights outside the array's {kind}{config.weight_width}-bit range [{lo}, {hi}]")


def packed_terms(config, layer, terms=None):
    """(signs, exponents), each F x G x weight_terms: the term list of every packed weight.

    `terms` holds the terms of the F x K matrix that `layer` packs (anything with `signs` and
    `exponents` of shape F x K x T, e.g. software.frontend.termquant.TermCodes); each packed weight takes
    the terms of the column its select picks. Without `terms`, the packed integers are HESE-encoded
    in full. Either way every weight must fit `weight_terms` slots and its terms must sum to it.
    """
    F, G = layer.packed.shape
    if terms is None:
        import torch
        from software.frontend.termquant import hese_encode
        # One bit more than the format: a truncated weight can reach 2**max_exponent.
        codes = hese_encode(torch.from_numpy(np.asarray(layer.packed, np.int64)), config.weight_width + 1)
        signs, exponents = codes.signs.numpy(), codes.exponents.numpy()
    else:
        signs, exponents = np.asarray(terms.signs), np.asarray(terms.exponents)
        if signs.shape[:2] != (F, layer.in_features) or signs.shape != exponents.shape:
            raise ScheduleError(f"weight terms must be {F} x {layer.in_features} x slots, "
                                f"not {'x'.join(map(str, signs.shape))}")
        columns = np.zeros((F, G), dtype=np.int64)
        for g, group in enumerate(layer.groups):
            columns[:, g] = np.asarray(group)[layer.select[:, g]]
        rows = np.arange(F)[:, None]
        signs, exponents = signs[rows, columns], exponents[rows, columns]
    signs, exponents = signs.astype(np.int64), exponents.astype(np.int64)
    counts = (signs != 0).sum(axis=-1) if signs.size else np.zeros((F, G), np.int64)
    if counts.size and counts.max() > config.weight_terms:
        raise ScheduleError(f"a weight has {counts.max()} terms but the array holds {config.weight_terms} per weight "
                            f"(--weight-terms)")
    # Used slots first, in their order (largest first), then pad or cut to weight_terms slots.
    order = np.argsort(signs == 0, axis=-1, kind="stable")
    signs = np.take_along_axis(signs, order, axis=-1)
    exponents = np.where(signs != 0, np.take_along_axis(exponents, order, axis=-1), 0)
    slots = config.weight_terms
    pad = max(0, slots - signs.shape[-1])
    signs = np.pad(signs, ((0, 0), (0, 0), (0, pad)))[..., :slots]
    exponents = np.pad(exponents, ((0, 0), (0, 0), (0, pad)))[..., :slots]
    top = config.weight_width - 1 if config.weight_signed else config.weight_width
    if exponents.size and exponents.max() > top:
        raise ScheduleError(f"a weight term exponent {exponents.max()} exceeds the array's largest, {top}")
    if not np.array_equal((signs << exponents).sum(axis=-1), layer.packed):
        raise ScheduleError("the weights' terms do not sum to the packed weights")
    return signs, exponents


def schedule_layer(config, layer: ColumnCombining, x, *, terms=None):
    """Tiles of `layer` (integer packed weights) on the array for the N x K integer inputs `x`.

    mac "tq": `layer` packs the term-quantized weights and `terms` gives their terms (see
    packed_terms); the activations are the integers before the array's HESE truncation.
    """
    check_fits(config, layer)
    if terms is not None and not config.mac_style.uses_terms:
        raise ScheduleError("weight terms are for a term-quantized array (mac 'tq')")
    x = np.asarray(x, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != layer.in_features:
        raise ScheduleError(f"inputs must be N x {layer.in_features}, not {'x'.join(map(str, x.shape))}")
    lo, hi = config.act_range
    if x.size and (x.min() < lo or x.max() > hi):
        raise ScheduleError(f"activations outside the array's {config.act_width}-bit range [{lo}, {hi}]")
    R, C, A = config.rows, config.cols, config.alpha
    F, G = layer.packed.shape
    row_blocks, group_blocks = math.ceil(F / R), max(1, math.ceil(G / C))

    # Gather each group's activations into its alpha slots (zero padded).
    gathered = np.zeros((x.shape[0], group_blocks * C * A), dtype=np.int64)
    for g, columns in enumerate(layer.groups):
        gathered[:, g * A:g * A + len(columns)] = x[:, columns]
    weights = np.zeros((row_blocks * R, group_blocks * C), dtype=np.int64)
    selects = np.zeros_like(weights)
    weights[:F, :G] = layer.packed
    selects[:F, :G] = layer.select
    term_signs = term_exponents = None
    if config.mac_style.uses_terms:
        term_signs = np.zeros(weights.shape + (config.weight_terms,), dtype=np.int64)
        term_exponents = np.zeros_like(term_signs)
        term_signs[:F, :G], term_exponents[:F, :G] = packed_terms(config, layer, terms)
    block = lambda a, rb, gb: None if a is None else a[rb * R:(rb + 1) * R, gb * C:(gb + 1) * C]

    tiles = []
    for chunk in range(0, max(x.shape[0], 1), config.max_batch):
        xs = gathered[chunk:chunk + config.max_batch]
        for rb in range(row_blocks):
            for gb in range(group_blocks):
                tiles.append(Tile(
                    row_block=rb, group_block=gb,
                    weights=block(weights, rb, gb), selects=block(selects, rb, gb),
                    activations=xs[:, gb * C * A:(gb + 1) * C * A],
                    clear=gb == 0, emit=gb == group_blocks - 1,
                    term_signs=block(term_signs, rb, gb), term_exponents=block(term_exponents, rb, gb)))
    useful = int(np.count_nonzero(layer.packed)) * x.shape[0]
    return LayerSchedule(config=config, out_features=F, batch=x.shape[0], tiles=tiles,
                         useful_macs=useful)
