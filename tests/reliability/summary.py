"""The reliability suite's numbers: bad inputs refused per command, crafted files refused, drawn
configurations passed. Runs tests/reliability under pytest and counts what passed.

    python -m tests.reliability.summary            # the fast set (about a minute)
    python -m tests.reliability.summary --all      # also Verilator: 30 drawn configurations (slow)
"""
import collections
import sys

import pytest


class Collector:
    def __init__(self):
        self.reports = []

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.reports.append(report)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    collector = Collector()
    status = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "tests/reliability", *argv],
                         plugins=[collector])
    per_command = collections.defaultdict(lambda: [0, 0])
    crafted, configs = [0, 0], collections.defaultdict(lambda: [0, 0])
    for r in collector.reports:
        props, ok = dict(r.user_properties), r.outcome == "passed"
        if "test_bad_input" in r.nodeid and "command" in props:
            kind = "process" if "as_a_process" in r.nodeid else "in-process"
            per_command[(props["command"], kind)][0 if ok else 1] += 1
        elif "test_a_crafted_file_is_refused" in r.nodeid:
            crafted[0 if ok else 1] += 1
        elif "configs" in props:
            sim = "Verilator" if "verilator" in r.nodeid else "Amaranth"
            unit = r.nodeid.rsplit("[", 1)[-1].rstrip("]")
            configs[(sim, unit)][0] += props["configs"] if ok else 0
            configs[(sim, unit)][1] += 0 if ok else 1
    print("\nbad inputs: refused with one line, exit status 2, nothing written (failed in brackets)")
    for kind in ("in-process", "process"):
        rows = {c: v for (c, k), v in per_command.items() if k == kind}
        print(f"  {kind}: " + ", ".join(f"{c} {ok}" + (f" [{bad}]" if bad else "") for c, (ok, bad) in sorted(rows.items()))
              + f"; total {sum(v[0] for v in rows.values())}")
    print(f"crafted packed models refused: {crafted[0]} of {sum(crafted)}; accepted with a wrong result: {crafted[1]}")
    for (sim, unit), (passed, failed) in sorted(configs.items()):
        print(f"drawn {unit} configurations bit-exact in {sim}: {passed}" + (" (test FAILED)" if failed else ""))
    for sim in sorted({s for s, _ in configs}):
        print(f"  {sim} total: {sum(v[0] for (s, _), v in configs.items() if s == sim)}")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
