"""Content-addressed cache of stage results.

A stage's key is the SHA-256 of its name, its configuration, its parents' keys and the version of
the code it runs (`code_version`: the project's version and a hash of the sources of the packages
the stage imports). Equal keys mean equal results, so a finished stage is never run again, an
interrupted sweep resumes from what was stored, a changed axis changes only the keys of the stages
that depend on it, and a changed generator or front-end never serves an old result.

An entry is a directory ``<root>/<key[:2]>/<key>/`` holding ``result.json`` and the stage's files
(a trained model, a packed model, a generated design). It is written in a staging directory and
renamed into place, so a killed task leaves no half entry: a reader sees all of it or nothing.
With a Dask cluster on several machines, the cache must be on a file system they all see.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
EVENTS = "events.jsonl"


def default_root() -> pathlib.Path:
    """Next to the simulation cache: $SPARSEGEN_CACHE/sweep, or .cache/sweep in the source tree."""
    from sim.runner import cache_root
    return cache_root().parent / "sweep"


@functools.lru_cache(maxsize=None)
def code_version(packages: tuple) -> str:
    """The project's version and a hash of every .py file of ``packages`` (folders or single files
    of the source tree: the code a stage runs)."""
    try:
        version = importlib.metadata.version("sparsegen")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest = hashlib.sha256()
    for package in sorted(packages):
        top = ROOT / package
        for path in [top] if top.is_file() else sorted(top.rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{version}+{digest.hexdigest()[:16]}"


def stage_key(stage: str, config: dict, parents: tuple, version: str) -> str:
    text = json.dumps({"stage": stage, "config": config, "parents": list(parents), "version": version},
                      sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


class Cache:
    def __init__(self, root):
        self.root = pathlib.Path(root).resolve()

    def entry(self, key) -> pathlib.Path:
        return self.root / key[:2] / key

    def get(self, key):
        """The stored result of ``key`` or None."""
        try:
            with open(self.entry(key) / "result.json") as f:
                return json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return None      # an unreadable entry is computed again (and replaced)

    def staging(self, key) -> pathlib.Path:
        """A fresh directory for the files of a stage being computed."""
        parent = self.root / "staging"
        parent.mkdir(parents=True, exist_ok=True)
        return pathlib.Path(tempfile.mkdtemp(prefix=f"{key[:16]}.", dir=parent))

    def put(self, key, result: dict, staging: pathlib.Path) -> dict:
        """Store ``result`` (with the files already in ``staging``) under ``key``; returns the stored
        result (another process's, if it stored the same key first)."""
        with open(staging / "result.json", "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
        target = self.entry(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, target)
        except OSError:
            if (target / "result.json").exists():      # stored meanwhile by another worker: same content
                shutil.rmtree(staging, ignore_errors=True)
                return self.get(key)
            shutil.rmtree(target, ignore_errors=True)   # a damaged entry
            os.rename(staging, target)
        return result

    def log(self, **event):
        """One line per stage start and finish (events.jsonl), appended by every worker: how the tests
        check that a point ran exactly once, and that a killed task ran again."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**event, "pid": os.getpid(), "time": round(time.time(), 3)}) + "\n"
        fd = os.open(self.root / EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def events(self):
        path = self.root / EVENTS
        if not path.exists():
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
