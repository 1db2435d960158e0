"""Design-space sweeps on dask.distributed: ``python -m sweep FILE.toml [-o DIR] [--scheduler ADDRESS]``.

A sweep file (TOML, sweep/sweepfile.py) names fixed settings, axes, explicit points and the stages
to run per point (compress, cycle model, RTL check, FPGA build). Each point's stages become tasks
of one Dask graph (sweep/graph.py) whose shared stages -- one dense model for every pruning of a
seed, one compressed model for several arrays, one generated design for an RTL check and several
boards -- are single nodes. Every stage's result is kept in a content-addressed cache
(sweep/cache.py) keyed by its configuration, its parents' keys and the version of the code it
runs, so a rerun skips what is done and a changed axis recomputes only what depends on it.
Results: one row per point (sweep/results.py: CSV and JSON) and the Pareto fronts (sweep/pareto.py).

The top floor of the project: it may import every other package; none imports it.
"""
