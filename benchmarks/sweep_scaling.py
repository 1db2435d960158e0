"""Sweep scaling: wall time of examples/sweeps/scaling.toml (12 points, compress + cycle model) with
1 and 2 LocalCluster workers, each from an empty cache, and of the rerun that finds everything in
the cache. Prints a table; asserts nothing.

    python benchmarks/sweep_scaling.py                # 1 and 2 workers (about 3 minutes on 2 cores)
    python benchmarks/sweep_scaling.py --workers 1 2 4
    python benchmarks/sweep_scaling.py --docs         # also write docs/results/sweep.md

Each run is the command a user types (`python -m sweep FILE --workers N`), timed from outside, so
the times include starting Python, the cluster and its workers (each imports torch). The machine's
load average is printed with them: on a shared machine the ratio says as much about the other
processes as about Dask.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import report  # noqa: E402

SWEEP = ROOT / "examples" / "sweeps" / "scaling.toml"
HEADERS = ["run", "workers", "points", "tasks run", "wall seconds", "vs 1 worker", "stage seconds (sum)",
           "stage seconds / wall", "load average before"]


def timed_sweep(sweep_file, workers, cache, out):
    """(wall seconds, the command's output) of one run."""
    command = [sys.executable, "-m", "sweep", str(sweep_file), "-o", str(out), "--cache", str(cache),
               "--workers", str(workers), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return seconds, proc.stdout


def stage_seconds(cache):
    """The seconds the workers spent in stages (start to end of each, from the cache's events.jsonl;
    a shared stage counts once): the work, against which the wall time shows the parallelism."""
    starts, busy = {}, 0.0
    for line in (cache / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            starts[event["key"]] = event["time"]
        elif event["key"] in starts:
            busy += event["time"] - starts.pop(event["key"])
    return busy


def tasks_run(output):
    line = next(line for line in output.splitlines() if " tasks to run" in line)
    return int(line.split(": ")[1].split(" tasks")[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sweep", default=str(SWEEP), help=f"the sweep file (default {SWEEP.relative_to(ROOT)})")
    report.docs_argument(parser, "sweep.md")
    args = parser.parse_args(argv)
    rows, first = [], None
    with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as tmp:
        for workers in args.workers:
            cache = pathlib.Path(tmp) / f"cache{workers}"
            load = os.getloadavg()[0]
            seconds, output = timed_sweep(args.sweep, workers, cache, pathlib.Path(tmp) / f"out{workers}")
            first = first or seconds
            points = len(json.loads((pathlib.Path(tmp) / f"out{workers}" / "results.json").read_text()))
            busy = stage_seconds(cache)
            rows.append(["empty cache", workers, points, tasks_run(output), f"{seconds:.1f}",
                         f"{first / seconds:.2f}x", f"{busy:.1f}", f"{busy / seconds:.2f}", f"{load:.1f}"])
            print(f"  {workers} workers: {seconds:.1f} s", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        seconds, output = timed_sweep(args.sweep, args.workers[-1], cache, pathlib.Path(tmp) / "rerun")
        rows.append(["rerun, every result cached", "(none started)", points, tasks_run(output), f"{seconds:.1f}",
                     f"{first / seconds:.2f}x", "0", "0", f"{load:.1f}"])
    table = report.markdown_table(HEADERS, rows)
    print(table)
    if args.docs:
        body = f"""The sweep {pathlib.Path(args.sweep).relative_to(ROOT) if pathlib.Path(args.sweep).is_relative_to(ROOT) else args.sweep}
run by `python -m sweep` with a LocalCluster of N single-threaded worker processes, each from an
empty stage cache, then once more over the cache of the last run. Wall time of the whole command
(Python, cluster and workers started, torch imported in each worker). How sweeps work:
[Sweeps](../sweep.md).

{table}
"""
        path = report.write_page(args.docs, "sweep.md", "Results: sweep scaling",
                                 report.command("sweep_scaling.py", sys.argv[1:] if argv is None else argv), body,
                                 note=f"Machine: {os.cpu_count()} cores, shared with other work (see the load "
                                      "average column).")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
