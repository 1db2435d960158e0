"""Processes seen from the tests through /proc: whether the tools a build started are gone."""

import time


def running(pid):
    """Whether process `pid` exists and is not a zombie (a zombie has stopped; only its parent has
    not yet collected its status)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def still_running(pids, seconds=5.0):
    """The processes of `pids` still running after waiting up to `seconds` for them all to stop
    (a signalled process takes a moment to exit)."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
