"""Column combining (Kung, McDanel, Zhang, ASPLOS 2019): pack a sparse F x K weight matrix into
F x G, where each of the G column groups holds at most `alpha` original columns and each (row, group)
cell keeps only one weight, the largest in magnitude.

Grouping is greedy, in sections of at most 256 columns (see DESIGN.md §2):
  * start with one group per column;
  * a pair of groups is feasible if together they have <= alpha columns and at most
    floor(gamma * F) conflicts, conflicts(i, j) = sum_r max(0, cnt_i[r] + cnt_j[r] - 1), where
    cnt counts the nonzeros of the group's columns in row r;
  * take the lowest-index group that has a feasible partner and merge it with the feasible partner
    that leaves the fewest rows empty in both (ties: lowest index); the merged group keeps the lower
    index;
  * stop when no pair is feasible.
Merging only ever grows a group's columns and nonzeros, so a group that has no feasible partner
never gets one later: the scan over `i` only moves forward.
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


def group_columns(nonzero, alpha, gamma):
    """Greedy column grouping of a boolean F x K nonzero pattern; returns lists of column indices."""
    nonzero = np.asarray(nonzero, dtype=bool)
    if nonzero.ndim != 2:
        raise ValueError(f"weight matrix must be 2-D (F x K), not {nonzero.ndim}-D")
    if alpha < 1:
        raise ValueError(f"alpha must be at least 1, not {alpha}")
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, not {gamma}")
    rows, columns = nonzero.shape
    budget = math.floor(gamma * rows)
    groups = []
    for start in range(0, columns, SECTION_COLUMNS):
        stop = min(start + SECTION_COLUMNS, columns)
        groups.extend(_group_section(nonzero[:, start:stop], start, alpha, budget))
    return groups


def _group_section(nonzero, offset, alpha, budget):
    groups = [[offset + c] for c in range(nonzero.shape[1])]
    if alpha == 1:
        return groups
    counts = nonzero.T.astype(np.int32)          # G x F nonzeros per (group, row)
    sizes = np.ones(len(groups), dtype=np.int32)
    alive = np.ones(len(groups), dtype=bool)
    i = 0
    while i < len(groups):
        if not alive[i]:
            i += 1
            continue
        conflicts = np.maximum(counts[i] + counts - 1, 0).sum(axis=1)
        feasible = alive & (sizes[i] + sizes <= alpha) & (conflicts <= budget)
        feasible[i] = False
        if not feasible.any():
            i += 1
            continue
        empty_in_both = ((counts[i] + counts) == 0).sum(axis=1)
        candidates = np.nonzero(feasible)[0]
        j = candidates[np.argmin(empty_in_both[candidates])]   # argmin takes the lowest index on ties
        groups[i] = sorted(groups[i] + groups[j])
        counts[i] += counts[j]
        sizes[i] += sizes[j]
        alive[j] = False
    return [g for g, keep in zip(groups, alive) if keep]


def combine(weight, alpha, gamma):
    """Group the columns of `weight` (F x K) and keep, per (row, group), the largest magnitude.

    Ties keep the lower column index. Works for float and integer matrices.
    """
    weight = np.asarray(weight)
    groups = group_columns(weight != 0, alpha, gamma)
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
        block = np.abs(weight[:, cols])
        best = np.argmax(block, axis=1)         # first maximum: lower column index wins ties
        packed[:, g] = weight[np.arange(rows), np.asarray(cols)[best]]
        select[:, g] = np.where(packed[:, g] != 0, best, 0)
    return ColumnCombining(groups=[list(g) for g in groups], packed=packed, select=select,
                           alpha=alpha, in_features=columns)


def dense_grouping(in_features):
    """The trivial grouping: one column per group (dense, or any layer on an alpha=1 array)."""
    return [[c] for c in range(in_features)]
