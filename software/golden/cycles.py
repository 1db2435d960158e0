"""Cycle model of the systolic array, equal to what the RTL does (asserted in tests/sim).

It assumes the weight and activation streams are always valid and results always ready, and counts
from the clock of the first weight beat to the clock of the last result beat, inclusive.

For tile t with n_t vectors (R rows, C columns, `latency` clocks from spec/array.py):
  load_t  = first clock of its R weight beats
          = 0 for t = 0, else load_{t-1} + R           (one loader, R beats per tile)
            and no earlier than bank_free(t - banks)   (the bank it fills must be idle)
  issue_t = first clock of its vectors
          = max(issue_{t-1} + n_{t-1}, load_t + R)     (one vector per clock; weights loaded)
  bank_free(t) = issue_t + n_t + C                      (its last vector has left column C-1)
  total   = issue_last + n_last - 1 + latency + 1
With double buffering and n vectors per tile, tiles run back to back (one vector per clock) once
n >= R + C; with fewer, part of each weight load shows.

A term-serial array (mac "tq-serial") spends config.clocks_per_vector = K clocks on every vector,
one per term pair (spec/array.py): every n_t above counts K n_t clocks, and `latency` runs from the
clock of a vector's last pair.
"""

import dataclasses


class ArrayTimeline:
    """The recurrence above, one tile at a time. `first_load`: the clock of the first weight beat;
    `earliest`: a clock before which a tile's first vector cannot come (it is not yet offered)."""

    def __init__(self, config, *, first_load=0):
        self.rows, self.cols = config.rows, config.cols
        self.banks = 2 if config.double_buffer else 1
        self.clocks_per_vector = config.clocks_per_vector
        self.first_load = first_load
        self.loads, self.issues, self.batches = [], [], []

    def add(self, n, earliest=0):
        """Schedule a tile of n vectors; returns (load, issue)."""
        if n < 1:
            raise ValueError("every tile needs at least one vector")
        R, C, t = self.rows, self.cols, len(self.loads)
        load = self.first_load if t == 0 else self.loads[t - 1] + R
        if t >= self.banks:
            load = max(load, self.issues[t - self.banks] + self.batches[t - self.banks] + C)
        issue = load + R if t == 0 else max(self.issues[t - 1] + self.batches[t - 1], load + R)
        issue = max(issue, earliest)
        self.loads.append(load)
        self.issues.append(issue)
        self.batches.append(n * self.clocks_per_vector)    # clocks its vectors occupy
        return load, issue

    @property
    def last_accept(self):
        """The clock of the last vector's handshake (its last term pair's, with K > 1)."""
        return self.issues[-1] + self.batches[-1] - 1


def tile_timeline(config, tile_batches):
    """(load_t, issue_t) for every tile."""
    timeline = ArrayTimeline(config)
    for n in tile_batches:
        timeline.add(n)
    return timeline.loads, timeline.issues


def layer_cycles(config, tile_batches):
    """Clocks to run tiles of the given batch sizes, first weight beat to last result beat."""
    if not tile_batches:
        return 0
    _, issues = tile_timeline(config, tile_batches)
    last_pair = issues[-1] + tile_batches[-1] * config.clocks_per_vector - 1
    return last_pair + config.latency + 1


@dataclasses.dataclass(frozen=True)
class LayerCost:
    tiles: int
    cycles: int
    useful_macs: int
    cells: int

    @property
    def utilization(self):
        """Useful MACs per cell per clock."""
        return self.useful_macs / (self.cells * self.cycles) if self.cycles else 0.0


def layer_cost(schedule):
    cfg = schedule.config
    return LayerCost(tiles=len(schedule.tiles), cycles=layer_cycles(cfg, schedule.tile_batches),
                     useful_macs=schedule.useful_macs, cells=cfg.rows * cfg.cols)
