"""Cutting a packed layer into array tiles, and the beats that run them.

A packed layer (F x G weights with selects, G groups of at most alpha input columns) runs on an
R x C array as ceil(F / R) row blocks x ceil(G / C) group blocks. All group blocks of one row block
accumulate into the same outputs: the first one clears the accumulator, the last one emits. A batch
of N input vectors streams through every tile; batches larger than the accumulator (`max_batch`)
are cut into chunks, each chunk running every tile again.

Order of the streams (what a host or testbench sends and receives):
  for each chunk, for each row block, for each group block:
      weights:     R beats (row 0 first) of C weights and C selects
      activations: n beats of C * alpha activations; flags last / clear / emit
  results: for each chunk, for each row block, n beats of R sums.
"""

import dataclasses
import math

import numpy as np

from .colcomb import ColumnCombining


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
    lo, hi = config.weight_range
    if layer.packed.size and (layer.packed.min() < lo or layer.packed.max() > hi):
        raise ScheduleError(f"weights outside the array's {config.weight_width}-bit range [{lo}, {hi}]")


def schedule_layer(config, layer: ColumnCombining, x):
    """Tiles of `layer` (integer packed weights) on the array for the N x K integer inputs `x`."""
    check_fits(config, layer)
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

    tiles = []
    for chunk in range(0, max(x.shape[0], 1), config.max_batch):
        xs = gathered[chunk:chunk + config.max_batch]
        for rb in range(row_blocks):
            for gb in range(group_blocks):
                tiles.append(Tile(
                    row_block=rb, group_block=gb,
                    weights=weights[rb * R:(rb + 1) * R, gb * C:(gb + 1) * C],
                    selects=selects[rb * R:(rb + 1) * R, gb * C:(gb + 1) * C],
                    activations=xs[:, gb * C * A:(gb + 1) * C * A],
                    clear=gb == 0, emit=gb == group_blocks - 1))
    useful = int(np.count_nonzero(layer.packed)) * x.shape[0]
    return LayerSchedule(config=config, out_features=F, batch=x.shape[0], tiles=tiles,
                         useful_macs=useful)
