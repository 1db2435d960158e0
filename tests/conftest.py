"""Which tests run. The default is the fast set; the long runs carry the `slow` marker.

    pytest              the fast set: Amaranth simulation, golden models and packing properties,
                        CLI checks, and small Verilator builds (at least one per unit)
    pytest -m slow      only the slow tests: big RTL, whole-model runs, FPGA tool runs
    pytest --all        everything (CI: python -m pytest -q -n auto --all)

Slow tests are deselected, not skipped, so they never count as passed; the header and the summary
say how many were left out. Any -m expression takes over the selection (`-m "slow or not slow"`).
"""

import pytest

LEFT_OUT = pytest.StashKey[int]()
HINT = "pytest --all runs everything, pytest -m slow only them"


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", dest="run_all",
                     help="also run the tests marked slow (big RTL, whole-model runs, FPGA builds)")


def _selects_itself(config):
    return config.getoption("run_all") or bool(config.getoption("markexpr"))


def pytest_report_header(config):
    if config.getoption("run_all"):
        return "slow tests: included (--all)"
    if config.getoption("markexpr"):
        return f"slow tests: as -m {config.getoption('markexpr')!r} selects"
    return f"slow tests: left out ({HINT})"


def pytest_collection_modifyitems(config, items):
    if _selects_itself(config):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
        config.hook.pytest_deselected(items=slow)
    config.stash[LEFT_OUT] = len(slow)


def pytest_sessionfinish(session):
    # Under pytest-xdist each worker collects (and deselects) the same tests; the controller, which
    # writes the summary, learns the count from the workers.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and LEFT_OUT in session.config.stash:
        workeroutput["slow_left_out"] = session.config.stash[LEFT_OUT]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    count = getattr(node, "workeroutput", {}).get("slow_left_out")
    if count is not None:
        node.config.stash[LEFT_OUT] = max(count, node.config.stash.get(LEFT_OUT, 0))


def pytest_terminal_summary(terminalreporter, config):
    count = config.stash.get(LEFT_OUT, 0)
    if count:
        terminalreporter.write_sep("=", f"{count} slow tests not run ({HINT})", yellow=True)
