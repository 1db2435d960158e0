"""Column combining (Kung, McDanel, Zhang, ASPLOS 2019): pack a sparse F x K weight matrix into
F x G, where each of the G column groups holds at most `alpha` original columns and each (row, group)
cell keeps only one weight, the largest in magnitude.

Grouping is greedy (DESIGN.md §2):
  * start with one group per column;
  * a pair of groups is feasible if together they have <= alpha columns and at most
    floor(gamma * F) conflicts, conflicts(i, j) = sum_r max(0, cnt_i[r] + cnt_j[r] - 1), where
    cnt counts the nonzeros of the group's columns in row r;
  * take the lowest-index group that has a feasible partner and merge it with the feasible partner
    that the grouping's partner rule ranks first; the merged group keeps the lower index;
  * stop when no pair is feasible.
Merging only ever grows a group's columns and nonzeros, so a group that has no feasible partner
never gets one later: the scan over `i` only moves forward.

Groupings are registered in GROUPINGS (a partner rule and search width each, or the best of several):
  "least-pruned": the partner whose merge prunes the least weight magnitude, ties to the
      fewest rows left empty, then the lowest index; searched over the whole layer. A group keeps,
      per row, only its largest magnitude (its "peak"), so merging groups i and j prunes
      sum_r min(peak_i[r], peak_j[r]): one vectorized min over all candidates per step.
  "fewest-empty": the original rule, the partner that leaves the fewest rows empty in both (ties:
      lowest index), searched in sections of 256 columns. It ignores how much a merge prunes: on
      256 x 1024 matrices made of alpha-groups of disjoint-support columns it keeps ~83% of the
      weights where "least-pruned" keeps them all (benchmarks/packer.py).
  "best" (the default): both, keeping the one with fewer groups, then more magnitude kept; where
      the conflict budget binds (dense random matrices) the fewest-empty rule can end a few groups
      narrower, and the default must never do worse than the original rule.
Magnitudes are taken in a wide type (`magnitude`): abs() of the most negative int8 (or int16,
int32, int64) overflows in its own dtype.
"""

import dataclasses
import math

import numpy as np

SECTION_COLUMNS = 256


@dataclasses.dataclass(frozen=True)
class ColumnCombining:
    """The result of packing an F x K matrix.

    groups  list of G lists of original column indices (ascending), each of length <= alpha.
    packed  F x G matrix: the surviving weight of each (row, group), 0 where none survives.
    select  F x G integer matrix: position, inside its group, of the surviving column (0 if empty).
    """

    groups: list
    packed: np.ndarray
    select: np.ndarray
    alpha: int
    in_features: int

    @property
    def mask(self):
        """F x K boolean matrix of the weights that survive packing."""
        mask = np.zeros((self.packed.shape[0], self.in_features), dtype=bool)
        for g, columns in enumerate(self.groups):
            rows = np.nonzero(self.packed[:, g])[0]
            mask[rows, np.asarray(columns)[self.select[rows, g]]] = True
        return mask

    def unpack(self):
        """The F x K matrix that the packed form computes: pruned weights in their original place."""
        dense = np.zeros((self.packed.shape[0], self.in_features), dtype=self.packed.dtype)
        for g, columns in enumerate(self.groups):
            rows = np.arange(self.packed.shape[0])
            dense[rows, np.asarray(columns)[self.select[:, g]]] += self.packed[:, g]
        return dense


def magnitude(weight):
    """|weight| in a type wide enough for every value: uint64 for integers, float64 for floats.

    abs() in the input dtype overflows on the most negative signed integer (abs(int8(-128)) is
    -128), which would then lose to every other weight of its group."""
    weight = np.asarray(weight)
    if weight.dtype == bool:
        return weight.astype(np.uint64)
    if np.issubdtype(weight.dtype, np.unsignedinteger):
        return weight.astype(np.uint64)
    if np.issubdtype(weight.dtype, np.signedinteger):
        wide = weight.astype(np.int64)
        # -(x + 1) never overflows in int64; adding the 1 back in uint64 reaches 2**63 for int64's minimum.
        negative = (-(wide + 1)).astype(np.uint64) + np.uint64(1)
        return np.where(wide < 0, negative, wide.astype(np.uint64))
    return np.abs(weight.astype(np.float64))


@dataclasses.dataclass
class _Groups:
    """The greedy search's state: per (group, row) nonzero count and largest magnitude ("peak")."""

    counts: np.ndarray     # G x F int32
    peaks: np.ndarray      # G x F float64


def _least_pruned(state, i, candidates):
    """The partner whose merge prunes the least magnitude.

    Ties (typically several partners that prune nothing) go to the partner after which the best
    next merge conflicts in the fewest rows, then to the one that leaves the most partners for
    such a next merge: a one-step lookahead (a column that happens to miss group i's rows is
    rarely disjoint from the rest of i's true partners, while a true partner is). Then fewest rows
    left empty, then lowest index. With a single candidate there is nothing to look ahead to."""
    pruned = np.minimum(state.peaks[i], state.peaks[candidates]).sum(axis=1)
    tied = candidates[pruned == pruned.min()]
    if len(tied) == 1:
        return tied[0]
    merged = ((state.counts[i] + state.counts[tied]) > 0).astype(np.float32)        # T x F
    overlap = merged @ (state.counts[candidates] > 0).astype(np.float32).T          # T x C rows in common
    overlap[tied[:, None] == candidates[None, :]] = np.inf                          # not with itself
    next_conflicts = overlap.min(axis=1)
    next_partners = (overlap == next_conflicts[:, None]).sum(axis=1)    # more is better
    empty = ((state.counts[i] + state.counts[tied]) == 0).sum(axis=1)
    return tied[np.lexsort((tied, empty, -next_partners, next_conflicts))[0]]


def _fewest_empty(state, i, candidates):
    """The original rule: fewest rows left empty in both (argmin: lowest index on ties)."""
    empty = ((state.counts[i] + state.counts[candidates]) == 0).sum(axis=1)
    return candidates[np.argmin(empty)]


@dataclasses.dataclass(frozen=True)
class Grouping:
    """A way to group columns: a partner rule and how wide the search looks."""

    name: str
    partner: object                # partner(state, i, candidate indices) -> chosen index
    section_columns: int | None    # search within sections of this many columns; None: the whole layer
    summary: str

    def group(self, peaks, alpha, budget):
        columns = peaks.shape[1]
        section = self.section_columns or max(columns, 1)
        groups = []
        for start in range(0, columns, section):
            stop = min(start + section, columns)
            groups.extend(_group_section(peaks[:, start:stop], start, alpha, budget, self.partner))
        return groups


@dataclasses.dataclass(frozen=True)
class BestOf:
    """Run several groupings and keep the one with the fewest groups, then the most magnitude kept.

    The least-pruned rule keeps more weight at the same width, but where the conflict budget binds
    (dense layers) spending it on cheap-but-conflicting merges can leave a few more groups than the
    fewest-empty rule; taking the better of both is never worse than either."""

    name: str
    members: tuple
    summary: str

    def group(self, peaks, alpha, budget):
        best = None
        for member in self.members:
            groups = GROUPINGS[member].group(peaks, alpha, budget)
            kept = sum(peaks[:, g].max(axis=1).sum() for g in groups)
            key = (len(groups), -kept)
            if best is None or key < best[0]:
                best = (key, groups)
        return best[1]


GROUPINGS = {g.name: g for g in (
    Grouping("least-pruned", _least_pruned, None,
             "partner whose merge prunes the least weight magnitude, searched over the whole layer"),
    Grouping("fewest-empty", _fewest_empty, SECTION_COLUMNS,
             "partner leaving the fewest rows empty, in sections of 256 columns (the original rule)"),
    BestOf("best", ("least-pruned", "fewest-empty"),
           "both rules, keeping the grouping with fewer groups, then more weight magnitude kept"),
)}
DEFAULT_GROUPING = "best"


def grouping_named(name):
    try:
        return GROUPINGS[name]
    except KeyError:
        raise ValueError(f"unknown column grouping {name!r}; known: {', '.join(GROUPINGS)}") from None


def group_columns(weight, alpha, gamma, *, grouping=DEFAULT_GROUPING):
    """Greedy column grouping of an F x K matrix (weights, or a boolean nonzero pattern whose
    nonzeros all weigh 1); returns lists of column indices."""
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"weight matrix must be 2-D (F x K), not {weight.ndim}-D")
    if alpha < 1:
        raise ValueError(f"alpha must be at least 1, not {alpha}")
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, not {gamma}")
    rule = grouping_named(grouping)
    return rule.group(magnitude(weight).astype(np.float64), alpha, math.floor(gamma * weight.shape[0]))


def _group_section(peaks, offset, alpha, budget, partner):
    groups = [[offset + c] for c in range(peaks.shape[1])]
    if alpha == 1:
        return groups
    state = _Groups(counts=(peaks.T != 0).astype(np.int32), peaks=np.ascontiguousarray(peaks.T))
    sizes = np.ones(len(groups), dtype=np.int32)
    alive = np.ones(len(groups), dtype=bool)
    i = 0
    while i < len(groups):
        if not alive[i]:
            i += 1
            continue
        # Groups before i had no feasible partner when scanned and only grew since: skip them.
        others = np.nonzero(alive & (sizes[i] + sizes <= alpha))[0]
        others = others[others > i]
        if len(others):
            conflicts = np.maximum(state.counts[i] + state.counts[others] - 1, 0).sum(axis=1)
            others = others[conflicts <= budget]
        if not len(others):
            i += 1
            continue
        j = partner(state, i, others)
        groups[i] = sorted(groups[i] + groups[j])
        state.counts[i] += state.counts[j]
        np.maximum(state.peaks[i], state.peaks[j], out=state.peaks[i])
        sizes[i] += sizes[j]
        alive[j] = False
    return [g for g, keep in zip(groups, alive) if keep]


def kept_fraction(weight, packing):
    """Fraction of the nonzero weights of `weight` that its packing keeps (1.0 for an all-zero matrix)."""
    nonzero = int(np.count_nonzero(weight))
    return 1.0 if nonzero == 0 else int(np.count_nonzero(packing.packed)) / nonzero


def combine(weight, alpha, gamma, *, grouping=DEFAULT_GROUPING):
    """Group the columns of `weight` (F x K) and keep, per (row, group), the largest magnitude.

    Ties keep the lower column index. Works for float and integer matrices.
    """
    weight = np.asarray(weight)
    groups = group_columns(weight, alpha, gamma, grouping=grouping)
    return pack(weight, groups, alpha)


def pack(weight, groups, alpha):
    """Pack `weight` by a given grouping (e.g. one found earlier during joint optimization)."""
    weight = np.asarray(weight)
    rows, columns = weight.shape
    seen = sorted(c for g in groups for c in g)
    if seen != list(range(columns)):
        raise ValueError("groups must cover every column exactly once")
    if any(len(g) > alpha for g in groups):
        raise ValueError(f"a group has more than alpha={alpha} columns")
    packed = np.zeros((rows, len(groups)), dtype=weight.dtype)
    select = np.zeros((rows, len(groups)), dtype=np.int64)
    for g, cols in enumerate(groups):
        block = magnitude(weight[:, cols])
        best = np.argmax(block, axis=1)         # first maximum: lower column index wins ties
        packed[:, g] = weight[np.arange(rows), np.asarray(cols)[best]]
        select[:, g] = np.where(packed[:, g] != 0, best, 0)
    return ColumnCombining(groups=[list(g) for g in groups], packed=packed, select=select,
                           alpha=alpha, in_features=columns)


def dense_grouping(in_features):
    """The trivial grouping: one column per group (dense, or any layer on an alpha=1 array)."""
    return [[c] for c in range(in_features)]
