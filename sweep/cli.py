"""``python -m sweep FILE.toml [-o DIR] [--scheduler ADDRESS]``: run a design-space sweep.

Reads the sweep file (sweep/sweepfile.py), starts a LocalCluster (one single-threaded worker
process per core) or connects to ``--scheduler``, runs the points' stages as one task graph
(sweep/graph.py) with a progress bar, and writes into DIR (default out/sweeps/<name>):
results.csv and results.json (one row per point), pareto_<y>_vs_<x>.png per objective, and the
file's result page if it names one. A malformed sweep file: one line, exit status 2, nothing run.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time

from software.frontend.compress import format_table

from . import pages, pareto
from .cache import Cache, default_root
from .graph import FPGA_RESOURCE, Submitter, plan_points, resolve
from .results import point_row, show, summary_columns, write_tables
from .sweepfile import SweepFileError, load

PROG = "python -m sweep"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("file", help="the sweep file (TOML), e.g. examples/sweeps/smoke.toml")
    p.add_argument("-o", "--output", help="output directory (default out/sweeps/<the sweep's name>)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://10.0.0.1:8786 (default: a LocalCluster here)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="LocalCluster worker processes, one thread each (default: one per core, %(default)s)")
    p.add_argument("--cache", help="stage cache directory (default $SPARSEGEN_CACHE/sweep or .cache/sweep; "
                                   "on a cluster, a directory every worker sees)")
    p.add_argument("--docs", nargs="?", const=str(pages.DOCS_RESULTS), metavar="DIR",
                   help=f"write the sweep's result page (its `page` key) into DIR (default {pages.DOCS_RESULTS_NAME}) "
                        "instead of the output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def fail(message) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


class ClusterUnavailable(Exception):
    """The scheduler cannot be reached or the LocalCluster not started; the message is one line."""


def start_client(args):
    """(client, cluster or None): a LocalCluster of args.workers processes, or the --scheduler's client."""
    from distributed import Client, LocalCluster
    if args.scheduler:
        return Client(args.scheduler, timeout="20s"), None
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           resources={FPGA_RESOURCE: 1}, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run(plan, connect, cache, *, progress_bar=True, log=print):
    """Run every point of ``plan``; ``connect()`` gives the Dask client, called only if some node
    is not in the cache. Returns (rows, Submitter with its counts)."""
    from distributed import Future, progress, wait
    planned = plan_points(plan.points, plan.stages)
    submit = Submitter(connect, cache)
    handles = [(point, {stage: submit(node, point.label) for stage, node in nodes.items()} if nodes else {}, error)
               for point, nodes, error in planned]
    futures = list({h.key: h for _, hs, _ in handles for h in hs.values() if isinstance(h, Future)}.values())
    log(f"{len(plan.points)} points: {submit.submitted} tasks to run, {submit.cached} results from the cache "
        f"({cache.root})")
    if futures:
        if progress_bar:
            progress(futures)      # a text bar on the terminal, until every task is done
            print(file=sys.stderr)
        else:
            wait(futures)
    rows = [point_row(point, plan.stages, {stage: resolve(h) for stage, h in hs.items()}, error)
            for point, hs, error in handles]
    return rows, submit


def warn_missing_resources(client, plan):
    if "fpga" not in plan.stages:
        return
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get(FPGA_RESOURCE) for w in workers):
        print(f"warning: no worker offers the resource {FPGA_RESOURCE}: FPGA builds wait until one does "
              f"(start workers with: dask worker ADDRESS --nthreads 1 --resources \"{FPGA_RESOURCE}=1\")",
              file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = load(args.file)
    except SweepFileError as e:
        return fail(str(e))
    if args.docs and not plan.page:
        return fail(f"--docs: {args.file} names no result page (page = ...)")
    if args.workers < 1:
        return fail(f"--workers must be at least 1, not {args.workers}")
    out_dir = args.output or os.path.join("out", "sweeps", plan.name)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        return fail(f"output path {out_dir} exists and is not a directory")
    cache = Cache(args.cache or default_root())

    start = time.perf_counter()
    opened = []

    def connect():
        """Start the LocalCluster or reach the scheduler, once, when the first task is submitted."""
        if not opened:
            try:
                client, cluster = start_client(args)
            except (OSError, TimeoutError) as e:
                where = f"the Dask scheduler {args.scheduler}" if args.scheduler else "a LocalCluster"
                text = str(e).strip()
                raise ClusterUnavailable(f"cannot start or reach {where}: "
                                         f"{text.splitlines()[0] if text else type(e).__name__}") from None
            opened.extend([client, cluster])
            workers = len(client.scheduler_info().get("workers", {}))
            where = "scheduler " + args.scheduler if args.scheduler else "LocalCluster"
            print(f"Dask: {where}, {workers} workers; dashboard {client.dashboard_link}"
                  + ("" if _has_bokeh() else " (its pages need bokeh installed)"))
            warn_missing_resources(client, plan)
        return opened[0]

    try:
        rows, _ = run(plan, connect, cache, progress_bar=not args.no_progress)
    except ClusterUnavailable as e:
        return fail(str(e))
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished stages are stored in {cache.root}; run the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        if opened:
            opened[0].close()
            if opened[1] is not None:
                opened[1].close()
    seconds = time.perf_counter() - start

    columns = summary_columns(plan)
    print(format_table(columns, [[show(c, r.get(c)) for c in columns] for r in rows]))
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed:
        print(f"point {r['point']} ({r['label']}) failed in {r['failed_stage']}: {r['error']}")
    written = write_tables(rows, out_dir)
    plots = importlib.util.find_spec("matplotlib") is not None
    for objective in plan.pareto:
        print("\n" + pareto.format_front(objective, rows))
        if plots:
            written.append(pareto.plot(objective, rows, out_dir, plan.name))
    if plan.pareto and not plots:
        print("no Pareto plots: matplotlib is not installed (pip install -e \".[bench]\")", file=sys.stderr)
    if plan.page:
        written += pages.write(plan, rows, args.docs or out_dir, argv if argv is not None else sys.argv[1:], seconds)
    print(f"\n{len(rows)} points, {len(failed)} failed, {seconds:.1f} s; wrote {', '.join(written)}")
    return 0


def _has_bokeh():
    return importlib.util.find_spec("bokeh") is not None
