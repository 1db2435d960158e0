"""Which array configurations fit each board, found by building them (not by estimating).

For every board and every alpha, the largest square int8 array (R x R, alpha activations per group,
32-bit accumulators, double-buffered, max_batch 64, behind the UART host link) that Yosys and
nextpnr place and route *and* that meets the board clock: grow R by doubling until a build fails,
then bisect. Prints a Markdown table (the README's) of the largest fits with their resource use,
Fmax and LUTs per cell, where LUTs per cell = (LUTs of the largest - LUTs of the 1x1) / (R*R - 1),
so the fixed cost of the host link cancels.

    python benchmarks/fpga_fit.py                                   # everything (hours: big ECP5 builds)
    python benchmarks/fpga_fit.py --boards icebreaker --alphas 1,2  # a part of it

Every build's summary is cached in --results (default build/fpga_fit/results.json), so an
interrupted or extended sweep only builds what is missing; the build directories are deleted after
their summary is saved (big ECP5 netlists take hundreds of MB).
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fpga.boards import BOARD_NAMES, board as get_board  # noqa: E402
from fpga.build import BuildError, build  # noqa: E402
from software.config import ArrayConfig, ConfigError  # noqa: E402


def config_for(rows, cols, alpha):
    return ArrayConfig(rows=rows, cols=cols, alpha=alpha)


def key(board, rows, cols, alpha):
    return f"{board}/{rows}x{cols}/a{alpha}"


class Sweep:
    def __init__(self, results_path, work_dir, baud):
        self.results_path, self.work_dir, self.baud = results_path, work_dir, baud
        self.results = {}
        if os.path.exists(results_path):
            with open(results_path) as f:
                self.results = json.load(f)

    def save(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.results_path)), exist_ok=True)
        tmp = self.results_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=1, sort_keys=True)
        os.replace(tmp, self.results_path)

    def measure(self, board_name, rows, alpha, cols=None):
        """{'fit': bool, 'reason': str | None, 'summary': dict | None}, cached."""
        cols = rows if cols is None else cols
        k = key(board_name, rows, cols, alpha)
        if k in self.results:
            return self.results[k]
        board = get_board(board_name)
        out = os.path.join(self.work_dir, k.replace("/", "_"))
        start = time.perf_counter()
        print(f"  building {k} ...", file=sys.stderr, flush=True)
        try:
            result = build(board, config_for(rows, cols, alpha), out, baud=self.baud)
            summary = result.summary
            fit = summary["timing_pass"]
            reason = None if fit else "timing: " + ", ".join(
                f"{f['achieved_mhz']:.1f} < {f['constraint_mhz']:.1f} MHz" for f in summary["fmax"].values())
        except (BuildError, ConfigError) as e:
            summary, fit, reason = None, False, str(e)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        entry = {"fit": fit, "reason": reason, "summary": summary, "wall_seconds": round(time.perf_counter() - start, 1)}
        print(f"  {k}: {'fits' if fit else 'does not fit: ' + reason} ({entry['wall_seconds']:.0f} s)",
              file=sys.stderr, flush=True)
        self.results[k] = entry
        self.save()
        return entry

    def largest(self, board_name, alpha, max_rows):
        """(largest R that fits, smallest measured R above it that does not), by doubling R
        (capped at max_rows) and then bisecting; the bisection stops at a resolution of R // 8,
        since every step costs an hour-long build on a big ECP5. (0, 1) if not even 1x1 fits."""
        fit, fail, rows = 0, None, 1
        while fail is None:
            if self.measure(board_name, rows, alpha)["fit"]:
                fit = rows
                if rows == max_rows:
                    return fit, None
                rows = min(rows * 2, max_rows)
            else:
                fail = rows
        while fail - fit > max(1, fit // 8):
            mid = (fit + fail) // 2
            if self.measure(board_name, mid, alpha)["fit"]:
                fit = mid
            else:
                fail = mid
        return fit, fail


def table(sweep, boards, alphas, max_rows, rectangles):
    header = ("| board (device, clock) | alpha | largest array | cells | LUT4 | flip-flops | block RAM | DSP "
              "| Fmax (MHz) | LUT4 per cell | larger sizes tried |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for board_name in boards:
        board = get_board(board_name)
        for alpha in alphas:
            rows, fail = sweep.largest(board_name, alpha, max_rows)
            kind = "dense" if alpha == 1 else f"{alpha}"
            if rows == 0:
                reason = sweep.results[key(board_name, 1, 1, alpha)]["reason"]
                lines.append(f"| {board_name} | {kind} | none: {reason} | | | | | | | | |")
                continue
            tried = [] if fail is None else [(fail, fail)]
            best = (rows, rows)
            if rectangles and fail == rows + 1:
                # One more row or one more column may still fit between R x R and (R+1) x (R+1).
                for r, c in ((rows + 1, rows), (rows, rows + 1)):
                    if sweep.measure(board_name, r, alpha, cols=c)["fit"]:
                        best = max(best, (r, c))
                    else:
                        tried.append((r, c))
            r, c = best
            s = sweep.results[key(board_name, r, c, alpha)]["summary"]
            res = s["resources"]
            base = sweep.results[key(board_name, 1, 1, alpha)]["summary"]["resources"]["luts"]["used"]
            per_cell = f"{(res['luts']['used'] - base) / (r * c - 1):.0f}" if r * c > 1 else "-"
            clock = next(iter(s["fmax"].values()))
            why = []
            for fr, fc in tried:
                reason = sweep.results[key(board_name, fr, fc, alpha)]["reason"] or ""
                reason = reason.replace(f"the design does not fit the {board.device}: it needs ", "needs ")
                reason = reason.replace(f"the design does not fit the {board.device}: ", "")
                if "weight banks and input skew alone" in reason:
                    reason = "too many flip-flops"
                why.append(f"{fr}x{fc}: {reason}".replace("|", "/"))
            if fail is None:
                why.append(f"none above {max_rows} rows")

            def used(name):
                r = res[name]
                return f"{r['used']} / {r['available']} ({100 * r['used'] / r['available']:.0f}%)" if r["available"] else "0"
            # An iCE40 logic cell is one LUT4 plus one flip-flop: the cells are what runs out.
            luts = (f"{res['luts']['used']} in {used('logic_cells')} logic cells" if "logic_cells" in res
                    else used("luts"))
            lines.append(
                f"| {board_name} ({board.device}, {clock['constraint_mhz']:g} MHz) | {kind} | {r}x{c} | {r * c} "
                f"| {luts} | {used('flip_flops')} | {used('block_ram')} | {used('dsp')} "
                f"| {clock['achieved_mhz']:.1f} | {per_cell} | {'; '.join(why)} |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--boards", default=",".join(BOARD_NAMES), help="comma-separated boards (default all)")
    p.add_argument("--alphas", default="1,2,4,8", help="comma-separated alphas; 1 = dense (default 1,2,4,8)")
    p.add_argument("--max-rows", type=int, default=64, help="largest R tried (default 64)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--rectangles", action=argparse.BooleanOptionalAction, default=True,
                   help="after the largest R x R, also try (R+1) x R and R x (R+1) (default on)")
    p.add_argument("--results", default=os.path.join("build", "fpga_fit", "results.json"))
    p.add_argument("--work-dir", default=os.path.join("build", "fpga_fit", "work"))
    args = p.parse_args(argv)
    boards = [b.strip() for b in args.boards.split(",") if b.strip()]
    for b in boards:
        get_board(b)
    alphas = [int(a) for a in args.alphas.split(",")]
    sweep = Sweep(args.results, args.work_dir, args.baud)
    lines = table(sweep, boards, alphas, args.max_rows, args.rectangles)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
