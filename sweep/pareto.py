"""Pareto fronts of a sweep's results: the points no other point beats on both objectives.

A point dominates another when it is at least as good on both objectives and better on one, with
"better" from the results registry (sweep/results.py: accuracy up, cycles and LUT4 down, ...).
Failed points and points without both values take no part. The plot shows every point, the front
joined by a line and highlighted, with labelled axes; it is a PNG next to the results.
"""
from __future__ import annotations

import os

from .results import COLUMNS, show


def _score(row, column):
    """A value where larger is better."""
    value = row[column]
    return value if COLUMNS[column].better == "max" else -value


def candidates(rows, x, y):
    return [r for r in rows if r.get("status") == "ok" and r.get(x) is not None and r.get(y) is not None]


def front(rows, x, y) -> list:
    """The non-dominated rows for objectives x and y, sorted by x; equal points are all kept."""
    points = candidates(rows, x, y)
    kept = []
    for r in points:
        rx, ry = _score(r, x), _score(r, y)
        dominated = any(_score(o, x) >= rx and _score(o, y) >= ry and (_score(o, x) > rx or _score(o, y) > ry)
                        for o in points)
        if not dominated:
            kept.append(r)
    return sorted(kept, key=lambda r: r[x])


def describe(objective) -> str:
    x, y = objective.x, objective.y
    arrow = {"max": "higher", "min": "lower"}
    return f"{y} ({arrow[COLUMNS[y].better]} is better) vs {x} ({arrow[COLUMNS[x].better]} is better)"


def format_front(objective, rows) -> str:
    from software.frontend.compress import format_table
    best = front(rows, objective.x, objective.y)
    head = f"Pareto front: {describe(objective)}: {len(best)} of {len(candidates(rows, objective.x, objective.y))} points"
    if not best:
        return head
    table = format_table(["point", objective.x, objective.y],
                         [[r["label"], show(objective.x, r[objective.x]), show(objective.y, r[objective.y])]
                          for r in best])
    return head + "\n" + table


def plot(objective, rows, out_dir, name) -> str:
    """pareto_<y>_vs_<x>.png in ``out_dir``: every point, the front highlighted; returns its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from software.output_set import write_atomically

    x, y = objective.x, objective.y
    points, best = candidates(rows, x, y), front(rows, x, y)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.scatter([r[x] for r in points], [r[y] for r in points], color="tab:gray", alpha=0.6, s=22,
               label="points")
    ax.plot([r[x] for r in best], [r[y] for r in best], color="tab:red", marker="o", markersize=7,
            drawstyle="steps-post" if COLUMNS[x].better == "min" else "default", label="Pareto front")
    for r in best:
        ax.annotate(r["label"], (r[x], r[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(COLUMNS[x].title or x)
    ax.set_ylabel(COLUMNS[y].title or y)
    ax.set_title(f"{name}: {describe(objective)}", fontsize=9)
    ax.grid(True, linewidth=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, f"pareto_{y}_vs_{x}.png")
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomically(path, buffer.getvalue())
    return path
