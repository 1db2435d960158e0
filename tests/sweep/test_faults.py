"""A worker process killed in the middle of a task: the task runs again elsewhere, and the sweep
completes with every point exactly once."""
import os
import signal
import threading
import time

import pytest
from distributed import Client, LocalCluster

from sweep.cache import Cache
from sweep.cli import run
from sweep.sweepfile import parse


def kill_worker_running(client, prefix, killed, timeout=120):
    """Wait until a task whose key starts with ``prefix`` has run a second on some worker, then
    SIGKILL that worker's process; record (pid, task key) in ``killed``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            running = [k for k in keys if str(k).startswith(prefix)]
            if running:
                time.sleep(0.5)     # well inside the task (seconds of training)
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, str(running[0])))
                return
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_worker_task_reruns_and_every_point_is_done_once(tmp_path):
    # Two seeds: two long dense trainings, one per worker; each feeds two points (two arrays).
    plan = parse({"fixed": {"epochs": 80, "finetune_epochs": 1, "alpha": 8},
                  "axes": {"seed": [0, 1], "rows": [8, 16]}})
    cache = Cache(tmp_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        killed = []
        killer = threading.Thread(target=kill_worker_running, args=(client, "dense-", killed))
        killer.start()
        rows, submit = run(plan, lambda: client, cache, progress_bar=False, log=lambda *_: None)
        killer.join()
    assert killed, "no dense task was seen running"
    pid, task = killed[0]
    assert [r["status"] for r in rows] == ["ok"] * 4, [r["error"] for r in rows]
    assert sorted(r["point_id"] for r in rows) == sorted(p.point_id for p in plan.points)
    events = [e for e in cache.events() if task.startswith(f"{e['stage']}-{e['key'][:40]}")]
    starts = [e for e in events if e["event"] == "start"]
    done = [e for e in events if e["event"] == "done"]
    assert len(starts) == 2 and starts[0]["pid"] == pid          # began on the killed worker, began again
    assert len(done) == 1 and done[0]["pid"] != pid and done[0]["error"] is None
    # Every stage of every point finished exactly once.
    finished = [e["key"] for e in cache.events() if e["event"] == "done"]
    assert len(finished) == len(set(finished)) == submit.submitted == 2 + 2 + 4
