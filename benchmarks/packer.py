"""Weights kept by column combining: the partner rules of software.packing.colcomb.GROUPINGS side by
side. Prints a table; asserts nothing.

    python benchmarks/packer.py              # 256 x 1024, alpha 8, gamma 0.5, 3 seeds (about 1 minute)
    python benchmarks/packer.py --seeds 1

Matrices (F x K = 256 x 1024, Gaussian weights):
  combinable   built to pack without loss: the K columns form K / alpha groups of alpha columns whose
               supports are disjoint (each row's nonzero of a group sits in one of its columns, chosen
               at random; a row of a group is empty with probability 1 - density * alpha), then the
               columns are shuffled. A perfect grouping keeps 100%.
  random       each weight nonzero with probability `density`, independently.
"Kept" is the fraction of the nonzero weights that survive packing (conflicts keep one weight per
(row, group)); "groups" is the packed width G (tiles are ceil(F / R) * ceil(G / C)).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from software.packing.colcomb import GROUPINGS, combine, kept_fraction  # noqa: E402


def combinable_matrix(rng, rows, columns, alpha, density=1.0 / 8):
    """F x K weights whose columns split into alpha-groups of disjoint supports, shuffled."""
    if columns % alpha:
        raise ValueError(f"columns ({columns}) must be a multiple of alpha ({alpha})")
    occupied = min(1.0, density * alpha)         # chance that a row of a group holds a weight
    weight = np.zeros((rows, columns))
    for start in range(0, columns, alpha):
        owner = start + rng.integers(0, alpha, size=rows)
        keep = rng.random(rows) < occupied
        weight[np.arange(rows)[keep], owner[keep]] = rng.standard_normal(int(keep.sum()))
    return weight[:, rng.permutation(columns)]


def random_matrix(rng, rows, columns, density):
    return rng.standard_normal((rows, columns)) * (rng.random((rows, columns)) < density)


def measure(weight, alpha, gamma, grouping):
    start = time.perf_counter()
    packing = combine(weight, alpha, gamma, grouping=grouping)
    return kept_fraction(weight, packing), packing.packed.shape[1], time.perf_counter() - start


def cases(seeds, rows, columns, alpha):
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        yield "combinable", seed, combinable_matrix(rng, rows, columns, alpha)
        for density in (0.05, 0.1, 0.2):
            yield f"random {density:g}", seed, random_matrix(rng, rows, columns, density)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--columns", type=int, default=1024)
    parser.add_argument("--alpha", type=int, default=8)
    parser.add_argument("--gamma", type=float, default=0.5)
    args = parser.parse_args(argv)
    names = list(GROUPINGS)
    print(f"{args.rows} x {args.columns}, alpha {args.alpha}, gamma {args.gamma:g}: "
          "kept fraction / groups / seconds per grouping")
    header = f"{'matrix':<14}{'seed':>5}" + "".join(f"{n:>30}" for n in names)
    print(header)
    print("-" * len(header))
    for label, seed, weight in cases(args.seeds, args.rows, args.columns, args.alpha):
        cells = []
        for name in names:
            kept, groups, seconds = measure(weight, args.alpha, args.gamma, name)
            cells.append(f"{kept:>14.2%} {groups:>6} {seconds:>7.2f}s")
        print(f"{label:<14}{seed:>5}" + "".join(f"{c:>30}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
