"""Running sweeps: the numbers are the front-end's, failures are rows, and the cache skips, resumes
and recomputes only what a changed axis touches."""
import csv
import json

import pytest
from distributed import Client, LocalCluster

from software.frontend.compress import Options, compress
from sweep import cli
from sweep.cache import Cache
from sweep.cli import run
from sweep.sweepfile import parse

FIXED = {"epochs": 2, "finetune_epochs": 1, "method": "colcomb", "gamma": 0.5}


@pytest.fixture(scope="module")
def client():
    # Threads in this process: the stages are the same code as on worker processes, started faster.
    # On TCP, so that the command line can reach it with --scheduler.
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0",
                      protocol="tcp", resources={"FPGA_BUILD": 1}) as cluster:
        with Client(cluster) as c:
            yield c


def sweep(client, cache, data):
    plan = parse({"fixed": FIXED, **data})
    rows, submit = run(plan, lambda: client, cache, progress_bar=False, log=lambda *_: None)
    return rows, submit


def stage_runs(cache, stage):
    return [e for e in cache.events() if e["stage"] == stage and e["event"] == "done"]


def test_rows_equal_the_front_end_s_own_pipeline(client, tmp_path):
    rows, _ = sweep(client, Cache(tmp_path), {"axes": {"alpha": [8], "rows": [8, 16]}})
    for row in rows:
        direct = compress(Options(**FIXED, alpha=8, rows=row["rows"], progress=False))
        assert row["status"] == "ok"
        assert row["int_accuracy"] == direct.accuracy["integer"]
        assert row["float_dense_accuracy"] == direct.accuracy["float_dense"]
        assert (row["tiles"], row["cycles"]) == (direct.packed.tiles, direct.packed.cycles)
        assert row["utilization"] == pytest.approx(direct.packed.utilization)
        assert (row["dense_tiles"], row["dense_cycles"]) == (direct.dense.tiles, direct.dense.cycles)
        assert row["term_pairs"] == direct.term_pairs and row["weight_sparsity"] == direct.sparsity


def test_rerun_skips_changed_axis_recomputes_only_dependents_and_lost_entries_resume(client, tmp_path):
    cache = Cache(tmp_path)
    first, submit = sweep(client, cache, {"axes": {"alpha": [1, 8], "rows": [8]}})
    assert submit.submitted == 1 + 2 + 2 and submit.cached == 0      # dense, 2 compress, 2 cycles
    again, submit = sweep(client, cache, {"axes": {"alpha": [1, 8], "rows": [8]}})
    assert submit.submitted == 0 and all(r["cached"] for r in again)
    assert [{k: v for k, v in r.items() if k not in ("cached", "seconds")} for r in again] == \
           [{k: v for k, v in r.items() if k not in ("cached", "seconds")} for r in first]

    # A new array size: only the cycle model runs for it; the two compressed models are reused.
    grown, submit = sweep(client, cache, {"axes": {"alpha": [1, 8], "rows": [8, 16]}})
    assert submit.submitted == 2 and len(stage_runs(cache, "compress")) == 2 and len(stage_runs(cache, "dense")) == 1
    assert [r["cached"] for r in grown] == [True, False, True, False]

    # An interrupted sweep: the entry of a compressed model is missing; only it is computed again.
    compress_key = next(e["key"] for e in stage_runs(cache, "compress"))
    import shutil
    shutil.rmtree(cache.entry(compress_key))
    resumed, submit = sweep(client, cache, {"axes": {"alpha": [1, 8], "rows": [8, 16]}})
    assert submit.submitted == 1 and len(stage_runs(cache, "compress")) == 3
    assert [r["int_accuracy"] for r in resumed] == [r["int_accuracy"] for r in grown]


def test_failing_point_is_recorded_with_its_reason_and_the_sweep_goes_on(client, tmp_path):
    rows, _ = sweep(client, Cache(tmp_path), {"points": [
        {"label": "good", "alpha": 8, "rows": 8},
        {"label": "no file", "model": str(tmp_path / "missing.pt")},       # fails in its compress task
        {"label": "bad array", "alpha": 0},                                  # refused before any task
        {"label": "no term budget", "mac": "tq", "rows": 8}]}, )
    by_label = {r["label"]: r for r in rows}
    assert by_label["good"]["status"] == "ok" and by_label["good"]["cycles"] > 0
    missing = by_label["no file"]
    assert missing["status"] == "failed" and missing["failed_stage"] == "compress"
    assert missing["error"] == f"{tmp_path / 'missing.pt'}: no such model file (give 'digits' or a file written by torch.save(model))"
    assert by_label["bad array"]["status"] == "failed" and "alpha" in by_label["bad array"]["error"]
    assert "needs quant = \"tq\"" in by_label["no term budget"]["error"]
    assert all("\n" not in (r["error"] or "") for r in rows)


def test_command_writes_csv_json_and_pareto_plot(client, tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('name = "cli"\n[fixed]\nepochs = 1\nfinetune_epochs = 1\nrows = 8\n[axes]\nalpha = [1, 8]\n'
                    '[[pareto]]\nx = "cycles"\ny = "int_accuracy"\n')
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert cli.main([str(path), "-o", str(out), "--cache", str(cache), "--scheduler", client.scheduler.address,
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"Dask: scheduler {client.scheduler.address}, 1 workers; dashboard http" in printed and "Pareto front: int_accuracy (higher is better) vs cycles" in printed
    data = json.loads((out / "results.json").read_text())
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["alpha"] for r in data] == [1, 8] and [r["alpha"] for r in table] == ["1", "8"]
    assert all(r["status"] == "ok" and r["cycles"] > 0 for r in data)
    assert int(table[1]["cycles"]) == data[1]["cycles"]
    assert {"label", "seed", "method", "rows", "int_accuracy", "tiles", "utilization", "term_pairs"} <= set(table[0])
    assert (out / "pareto_int_accuracy_vs_cycles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The rerun starts no cluster: everything comes from the cache.
    assert cli.main([str(path), "-o", str(out), "--cache", str(cache), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "0 tasks to run, 5 results from the cache" in printed and "dashboard" not in printed


@pytest.mark.slow
def test_smoke_example_runs_on_a_local_cluster_of_processes(tmp_path):
    """The README's command, as a user runs it: two worker processes, every point ok."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "sweep", "examples/sweeps/smoke.toml", "-o", str(tmp_path / "out"),
                           "--cache", str(tmp_path / "cache"), "--workers", "2", "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Dask: LocalCluster, 2 workers; dashboard http" in proc.stdout
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert (tmp_path / "out" / "pareto_int_accuracy_vs_cycles.png").exists()
