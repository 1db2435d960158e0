"""Faults on the host link, injected into the Verilator simulation of the generated RTL: how many of
each kind, both ways, and what became of them. Prints tables; asserts nothing (tests/sim does).

    python benchmarks/link_faults.py            # 150 sessions, about 1,200 faults (a few minutes)
    python benchmarks/link_faults.py --quick    # 15 sessions
    python benchmarks/link_faults.py --docs     # also write docs/results/link_faults.md

Each session connects (break, identify) and runs a random column-combined layer through the Python
host driver over a simulated UART whose frames are damaged at random (sim/linkfaults.py): a bit
flip, a dropped, duplicated or truncated frame, or garbage bytes, host -> board or board -> host.
A session ends correct (bit-exact with the golden model), in a clear error (the driver gives up
with a HostLinkError after its retries), or wrong (a silently wrong result: the protocol failed).
A second campaign, one fault a session and no retries, shows which faults need a retry.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.linkfaults import DIRECTIONS, FAULT_KINDS, OUTCOMES, tabulate      # noqa: E402

import report                                                               # noqa: E402

# The design of tests/sim/test_hostlink_rtl.py: 3x2 alpha 3, 9 credits, 8 activation beats a frame.
LINK_ARGS = ("--rows", "3", "--cols", "2", "--alpha", "3", "--max-batch", "4", "--divisor", "8",
             "--rx-buffer", "64", "--frame-timeout", "16")
SHAPE = (4, 9, 2)         # out features, in features, batch of each session's layer


def fault_rows(sessions):
    """Rows: direction, kind, faults injected, and per outcome the faults in sessions that ended so."""
    counts = tabulate(sessions)
    rows = []
    for direction in DIRECTIONS:
        for kind in FAULT_KINDS:
            c = counts[(direction, kind)]
            rows.append([direction, kind, sum(c.values()), *(c[o] for o in OUTCOMES)])
    totals = [sum(r[i] for r in rows) for i in range(2, 3 + len(OUTCOMES))]
    rows.append(["all", "", *totals])
    return rows


def session_row(name, retries, campaign):
    sessions = campaign["sessions"]
    by = {o: sum(s["outcome"] == o for s in sessions) for o in OUTCOMES}
    faults = sum(len(s["faults"]) for s in sessions)
    return [name, retries, len(sessions), faults, *(by[o] for o in OUTCOMES), f"{campaign['seconds']:.0f} s"]


def stats_rows(campaign):
    stats = campaign["stats"]
    rows = [[key.replace("_", " "), value] for key, value in stats.items() if not isinstance(value, dict)]
    rows += [[f"error replies: {name}", n] for name, n in stats.get("error_replies", {}).items()]
    return rows


FAULT_HEADERS = ["direction", "fault", "injected", "session correct", "clear error", "wrong"]
SESSION_HEADERS = ["campaign", "retries", "sessions", "faults", "correct", "clear error", "wrong", "time"]


def run_campaigns(sessions, probability, seed, retries):
    from sim.hostlink import run_fault_campaign
    from sim.runner import build
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "link"
        subprocess.run([sys.executable, "-m", "fpga", "verilog", *LINK_ARGS, "-o", str(out)], check=True,
                       cwd=ROOT, capture_output=True)
        built = build(out)
        campaigns = {}
        plan = (("with retries", sessions, retries, None), ("without retries", max(1, sessions // 3), 0, 1))
        for name, n, r, limit in plan:
            start = time.perf_counter()
            campaigns[name] = run_fault_campaign(built, sessions=n, probability=probability, seed=seed,
                                                 shape=SHAPE, retries=r, limit=limit, name=f"faults_{r}")
            campaigns[name]["seconds"] = time.perf_counter() - start
            campaigns[name]["retries"] = r
    return campaigns


def write_docs(directory, argv, campaigns, probability):
    main = campaigns["with retries"]
    body = f"""
The host link's protocol (version 3, [File formats](../formats.md#the-host-link-protocol)) in
Verilator on the generated RTL of a 3x2 α = 3 link (`python -m fpga verilog {' '.join(LINK_ARGS)}`),
driven by the Python host driver over a simulated UART that damages each frame with probability
{probability}: a bit flip, a dropped, duplicated or truncated frame, or 1 to 9 garbage bytes (half
of them starting like a frame) before or after it, host -> board or board -> host. Each session
connects (break, identify) and runs a random {SHAPE[0]} x {SHAPE[1]} column-combined layer on
{SHAPE[2]} vectors, then compares the results with the golden model: **correct**, a **clear error**
(the driver gives up with one line after its retries) or **wrong** (silently wrong results).

## Sessions

{report.markdown_table(SESSION_HEADERS, [session_row(n, c["retries"], c) for n, c in campaigns.items()])}

## Faults by kind, with retries

A fault counts under the outcome of the session it fell in.

{report.markdown_table(FAULT_HEADERS, fault_rows(main["sessions"]))}

## Faults by kind, one a session, without retries

The driver gives up at the first error reply or timeout; a fault that needs no retry (a repeated
frame or reply, garbage the hunt skips) still ends correct.

{report.markdown_table(FAULT_HEADERS, fault_rows(campaigns["without retries"]["sessions"]))}

## What the driver met, with retries

{report.markdown_table(["event", "count"], stats_rows(main))}

Times are wall-clock on the machine that wrote this page, and vary with its load.
"""
    return report.write_page(directory, "link_faults.md", "Results: faults on the host link",
                             report.command("link_faults.py", argv), body)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=150, help="sessions with retries (default 150)")
    ap.add_argument("--quick", action="store_true", help="15 sessions")
    ap.add_argument("--probability", type=float, default=0.25, help="chance that a frame is damaged (0.25)")
    ap.add_argument("--retries", type=int, default=8, help="the driver's retries per frame (8)")
    ap.add_argument("--seed", type=int, default=0)
    report.docs_argument(ap, "link_faults.md")
    args = ap.parse_args(argv)
    sessions = 15 if args.quick else args.sessions
    campaigns = run_campaigns(sessions, args.probability, args.seed, args.retries)
    print("\n".join(report.text_table(SESSION_HEADERS, [session_row(n, c["retries"], c) for n, c in campaigns.items()])))
    for name, campaign in campaigns.items():
        print(f"\nfaults {name}:")
        print("\n".join(report.text_table(FAULT_HEADERS, fault_rows(campaign["sessions"]))))
    print("\ndriver events with retries:")
    print("\n".join(report.text_table(["event", "count"], stats_rows(campaigns["with retries"]))))
    if args.docs:
        argv = sys.argv[1:] if argv is None else argv
        print(f"wrote {write_docs(args.docs, argv, campaigns, args.probability)}", file=sys.stderr)


if __name__ == "__main__":
    main()
