"""The Verilator build cache (sim/runner.py): one directory per design, found again by the Verilog's
content, safe when several processes ask for the same design, and nothing left in the caller's
directory."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sim import runner
from sim.array import run_schedule
from software.packing.colcomb import combine
from software.golden.array import reference_layer
from software.packing.schedule import schedule_layer

# The smallest array: its build takes seconds.
TINY = ("--rows", "1", "--sparsity", "dense", "--acc-width", "17")


def generate(out, *args):
    # This tree's generator, also when a test runs from another directory.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(runner.PROJECT_ROOT),
                                                                     os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-m", "gen", *args, "-o", str(out)], check=True, capture_output=True, env=env)
    return out


def test_a_design_is_built_once_and_found_by_its_content(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = runner.build(generate(tmp_path / "a", *TINY))
    again = runner.build(generate(tmp_path / "b", *TINY))      # the same Verilog, elsewhere
    assert first.build_dir.parent == runner.cache_root()
    assert again.build_dir == first.build_dir and again.seconds == 0
    # What stays of a build: the simulator and how it was made (no C++, objects or headers), and
    # the directory of failed runs.
    assert {p.name for p in first.build_dir.iterdir()} - {"runs"} == {first.top, *runner.KEEP}
    key = json.loads((first.build_dir / "key.json").read_text())
    verilog = tmp_path / "a" / first.manifest["verilog"]
    assert key["verilog_sha256"] == hashlib.sha256(verilog.read_bytes()).hexdigest()

    # It simulates, and a passing run leaves nothing behind.
    rng = np.random.default_rng(0)
    w, x = rng.integers(-128, 128, size=(2, 3)), rng.integers(-128, 128, size=(4, 3))
    layer = combine(w, 1, 0.0)
    out, _ = run_schedule(again, schedule_layer(again.config, layer, x))
    assert np.array_equal(out, reference_layer(layer.unpack(), x, again.config.acc_width))
    assert not [p for p in (again.build_dir / "runs").iterdir() if p.name.startswith("run-")]
    # Nothing was written where the tests run.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_replaced_verilog_file_is_not_matched_to_the_old_simulator(tmp_path):
    """The key is the file's content, not the hash its manifest claims."""
    first = runner.build(generate(tmp_path / "a", *TINY))
    other = generate(tmp_path / "other", "--rows", "1", "--sparsity", "dense", "--acc-width", "18")
    verilog = tmp_path / "a" / first.manifest["verilog"]
    shutil.copyfile(other / first.manifest["verilog"], verilog)
    replaced = runner.build(tmp_path / "a")
    assert replaced.manifest == first.manifest                  # the manifest still claims the old file
    assert replaced.build_dir != first.build_dir
    assert json.loads((replaced.build_dir / "key.json").read_text())["verilog_sha256"] == \
        hashlib.sha256(verilog.read_bytes()).hexdigest()
    # The options are part of the key too.
    assert runner.build_key(verilog, first.top, optimize=True) != runner.build_key(verilog, first.top)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache of the test's own, so that the first build is certainly a build."""
    monkeypatch.setenv(runner.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "sim"


def test_processes_building_the_same_design_share_one_build(tmp_path, cache):
    """What two pytest-xdist workers do: one builds, the other waits and reuses it."""
    gen_dir = generate(tmp_path / "a", *TINY)
    script = ("import sys; from sim.runner import build; b = build(sys.argv[1]); "
              "print(b.build_dir, b.seconds > 0)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(runner.PROJECT_ROOT),
                                                                     os.environ.get("PYTHONPATH")])))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(gen_dir)], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    results = sorted(p.communicate()[0].split() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert results[0][0] == results[1][0]                        # the same directory
    assert [built for _, built in results] == ["False", "True"]  # built once
    assert sorted(p.name for p in cache.iterdir()) == sorted(["locks", "runtime", os.path.basename(results[0][0])])

    # Verilator's runtime was compiled once; another design's build takes its objects from the cache.
    def runtime_objects():
        return {p.name: p.stat().st_mtime_ns for p in (cache / "runtime").glob("*/*.o")}
    compiled = runtime_objects()
    assert len(compiled) >= 3                    # verilated, verilated_vpi, verilated_threads, ...
    runner.build(generate(tmp_path / "other", "--rows", "1", "--sparsity", "dense", "--acc-width", "19"))
    assert runtime_objects() == compiled
