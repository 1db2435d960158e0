"""Which array configurations fit each board, found by building them (not by estimating).

For every board, every alpha and every multiplier kind (int8, and term-quantized with --tq WxD),
the largest square array (R x R, alpha activations per group, 32-bit accumulators, double-buffered,
max_batch 64, behind the UART host link) that Yosys and nextpnr place and route *and* that meets its
clock (the board's, or with --clock-mhz the PLL's, constrained there). Multipliers go to the device's DSP blocks first and to Booth LUT multipliers after
that (`python -m fpga build`'s default, --dsp auto).

The search: build 1x1, 2x2 and 3x3 (and 3x3 without DSPs), fit a resource model to them (a fixed
cost, a cost per row and column, and a cost per DSP cell and per LUT cell of the device's scarce
resource), build the largest R it predicts to fit, refit with that build (a design that does not
fit still says how much it needs), and repeat between the largest R known to fit and the smallest
known not to, until they are neighbours. Then (R+1) x R and R x (R+1) are built too, unless the
model says they need over 5% more than the device has. Prints a Markdown table of
the largest fits with their resource use, Fmax, throughput, LUTs per cell and critical path, where
LUTs per cell = (LUTs of the largest - LUTs of the 1x1) / (R*C - 1), so the fixed cost of the host
link cancels (it averages DSP and LUT cells where both occur), and throughput = useful MACs per
second = cells x utilization x Fmax, with the cycle model's utilization on a dense 256x256 layer
at batch 64 (`reference_utilization`).

    python benchmarks/fpga_fit.py                                   # everything (hours: big ECP5 builds)
    python benchmarks/fpga_fit.py --boards icebreaker --alphas 1,2  # a part of it
    python benchmarks/fpga_fit.py --boards icebreaker --tq 2x3      # term-quantized cells
    python benchmarks/fpga_fit.py --boards ulx3s-85f --router router2 --time-limit 60
                                  # big ECP5: a build not done within an hour counts as not fitting
    python benchmarks/fpga_fit.py --boards ulx3s-85f --alphas 2 --dsp off ...
                                  # int8 arrays with LUT multipliers only
    python benchmarks/fpga_fit.py --boards orangecrab-25f --clock-mhz 60
                                  # arrays clocked by the PLL at 60 MHz, which they must meet
    python benchmarks/fpga_fit.py --boards icebreaker --alphas 4 --clock-mhz 30 --rebuild
                                  # measure that sweep again after a change to the design
    python benchmarks/fpga_fit.py --no-build --docs
                                  # docs/results/fpga.md and its plots, from the results alone

Every build's summary is kept in --results (default benchmarks/results/fpga_fit.json, in git; sweeps
running in parallel merge into it), so an interrupted or extended sweep only builds what is missing,
and `--no-build` prints the table from it; the build directories are deleted after their summary is
saved (big ECP5 netlists take hundreds of MB). `--docs` also writes the result page
docs/results/fpga.md (the table for every board and every kind of cell the results hold, and every
build kept) with plots of LUT4 and Fmax against array size per board.
"""

import argparse
import copy
import fcntl
import json
import os
import re
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fpga.boards import BOARD_NAMES, board as get_board  # noqa: E402
from fpga.build import (BuildError, ToolsStopped, array_clock, build, dsp_cells, parse_dsp,  # noqa: E402
                        stop_builds_on_terminate)
from fpga.cli import dsp_argument, positive_mhz  # noqa: E402
from fpga.report import PLACEMENT_FAILURES  # noqa: E402
from fpga.toolchain import NEXTPNR_ROUTERS  # noqa: E402
from spec import ArrayConfig, ConfigError  # noqa: E402

import report  # noqa: E402

MODEL_SIZES = (1, 2, 3)
# Reasons of a failed build that say the design is too large for the device (more cells than it
# has, no legal placement, not routed within the time limit), as opposed to a tool that broke: an
# array of this size or larger is not tried again.
TOO_LARGE = "|".join(("needs", "not finished", *PLACEMENT_FAILURES))
# How the table marks LUTs not mapped by plain ABC9 (fpga.build.LUT_MAPPERS).
MAPPER_MARKS = {"abc9-private-names": " (ABC9 on private names)", "abc": " (classic ABC: ABC9 crashed)"}
# Kept in git: the measurements behind docs/results/fpga.md, so that a sweep (hours of builds on a
# big ECP5) resumes on another machine and the table can be printed again with --no-build.
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "fpga_fit.json")


def parse_mac(text):
    """"int" or "WxD" (TQ with W weight terms and D data terms) -> ArrayConfig mac fields."""
    if text == "int":
        return {}
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise ValueError(f"--tq wants WxD, e.g. 2x3, not {text!r}")
    return {"mac": "tq", "weight_terms": int(m[1]), "data_terms": int(m[2])}


def key(board, rows, cols, alpha, mac="int", dsp="auto", clock=None):
    """The results' name of a build; `clock`: the array clock in MHz from the PLL, None for the
    board's clock (`python -m fpga build --clock-mhz`)."""
    suffix = (("" if mac == "int" else f"/tq{mac}") + ("" if dsp == "auto" else f"/dsp-{dsp}")
              + ("" if clock is None else f"/{clock:g}mhz"))
    return f"{board}/{rows}x{cols}/a{alpha}{suffix}"


KEY = re.compile(r"(?P<board>[^/]+)/(?P<rows>\d+)x(?P<cols>\d+)/a(?P<alpha>\d+)(?:/tq(?P<mac>\d+x\d+))?"
                 r"(?:/dsp-(?P<dsp>on|off|\d+))?(?:/(?P<clock>\d+(?:\.\d+)?)mhz)?")


def parse_key(k):
    """The inverse of `key`: (board, rows, cols, alpha, mac, dsp, clock)."""
    m = KEY.fullmatch(k)
    return (m["board"], int(m["rows"]), int(m["cols"]), int(m["alpha"]), m["mac"] or "int",
            parse_dsp(m["dsp"] or "auto"), float(m["clock"]) if m["clock"] else None)


class NotMeasured(Exception):
    """A build the table needs is not in the results, and building is off (--no-build)."""


class Sweep:
    def __init__(self, results_path, work_dir, baud, allow_build=True, router=None, time_limit=None,
                 dsp="auto", clock_mhz=None):
        self.results_path, self.work_dir, self.baud, self.router = results_path, work_dir, baud, router
        self.time_limit = time_limit
        self.dsp = dsp          # `python -m fpga build --dsp` of the arrays searched
        self.clock_mhz = clock_mhz  # `python -m fpga build --clock-mhz` (None: the board's clock)
        self.allow_build = allow_build
        self.results = self._load()

    def _load(self):
        if os.path.exists(self.results_path):
            with open(self.results_path) as f:
                return json.load(f)
        return {}

    def _rewrite(self, change):
        """Under the file's lock: merge the results with what parallel sweeps saved meanwhile,
        apply `change` (results -> results) and replace the file with what it returns."""
        os.makedirs(os.path.dirname(os.path.abspath(self.results_path)), exist_ok=True)
        with open(self.results_path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.results = change({**self._load(), **self.results})
            tmp = self.results_path + f".tmp{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(self.results, f, indent=1, sort_keys=True)
            os.replace(tmp, self.results_path)

    def save(self):
        """Merge with what parallel sweeps saved meanwhile, under a lock, and replace the file."""
        self._rewrite(lambda results: results)

    def forget(self, boards, alphas, macs):
        """Drop every build of these boards, alphas and cells at the sweep's clock (any --dsp)
        from the results, in the file too, so that the next search measures the current design
        afresh instead of reading builds of an earlier one. Returns their keys."""
        def swept(k):
            board, _, _, alpha, mac, _, clock = parse_key(k)
            return board in boards and alpha in alphas and mac in macs and clock == self.clock_mhz
        dropped = []

        def drop(results):
            dropped.extend(sorted(k for k in results if swept(k)))
            return {k: v for k, v in results.items() if not swept(k)}
        self._rewrite(drop)
        return dropped

    def dsp_of(self, mac, dsp=None):
        """The --dsp of a build: the sweep's unless given; TQ cells have no multiplier, so always auto."""
        return "auto" if mac != "int" else (dsp or self.dsp)

    def measure(self, board_name, rows, alpha, cols=None, mac="int", dsp=None):
        """{'fit': bool, 'reason': str | None, 'summary': dict | None, 'needed': int | None}, cached."""
        cols = rows if cols is None else cols
        dsp = self.dsp_of(mac, dsp)
        k = key(board_name, rows, cols, alpha, mac, dsp, self.clock_mhz)
        self.results.update({n: v for n, v in self._load().items() if n not in self.results})
        if k in self.results:
            return self.results[k]
        if not self.allow_build:
            raise NotMeasured(k)
        board = get_board(board_name)
        out = os.path.join(self.work_dir, k.replace("/", "_"))
        start = time.perf_counter()
        print(f"  building {k} ...", file=sys.stderr, flush=True)
        try:
            config = ArrayConfig(rows=rows, cols=cols, alpha=alpha, **parse_mac(mac))
            result = build(board, config, out, baud=self.baud, dsp=dsp, router=self.router,
                           time_limit=self.time_limit, clock_mhz=self.clock_mhz)
            summary = result.summary
            fit = summary["timing_pass"]
            failing = [f"{f['achieved_mhz']:.1f} < {f['constraint_mhz']:.1f} MHz"
                       for f in summary["fmax"].values() if not f["pass"]]
            reason = None if fit else "timing: " + (", ".join(failing) or "nextpnr did not time the array's clock")
        except ToolsStopped as e:
            raise ToolsStopped(f"{k}: {e}; not recorded") from None
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

    def builds(self, board_name, alpha, mac):
        """(rows, cols, dsp, entry) of every measured build of this board, alpha and mac, at the
        sweep's clock."""
        for k, entry in self.results.items():
            b, rows, cols, a, m, dsp, clock = parse_key(k)
            if (b, a, m, clock) == (board_name, alpha, mac, self.clock_mhz):
                yield rows, cols, dsp, entry

    def usage_points(self, board_name, alpha, mac):
        """(rows, cols, DSP cells, used) of the device's scarce resource (iCE40 logic cells, ECP5
        LUTs) for every measured build of this kind, and the amount available: what fitted, and
        what nextpnr said a design that did not fit needs."""
        board = get_board(board_name)
        limit, bel = ("logic_cells", "ICESTORM_LC") if board.family == "ice40" else ("luts", "TRELLIS_COMB")
        points, available = [], None
        for r, c, dsp, entry in self.builds(board_name, alpha, mac):
            if entry["summary"]:
                res = entry["summary"]["resources"][limit]
                points.append((r, c, entry["summary"].get("dsp_cells", 0), res["used"]))
                available = res["available"]
            elif needs := re.search(rf"(?:needs|packed) (\d+) of (\d+) {bel}", entry["reason"] or ""):
                config = ArrayConfig(rows=r, cols=c, alpha=alpha, **parse_mac(mac))
                points.append((r, c, dsp_cells(board, config, dsp), int(needs[1])))
                available = int(needs[2])
        return points, available

    def predicted_use(self, board_name, alpha, mac):
        """A function (rows, cols) -> predicted use of the scarce resource, from a model fitted to
        every build measured so far (a fixed cost, a cost per row and column, and a cost per DSP
        cell and per LUT cell), and the amount available."""
        board = get_board(board_name)
        points, available = self.usage_points(board_name, alpha, mac)
        features = lambda r, c, n_dsp: [1, r + c, n_dsp, r * c - n_dsp]  # noqa: E731
        coef, *_ = np.linalg.lstsq(np.array([features(*p[:3]) for p in points], float),
                                   np.array([p[3] for p in points], float), rcond=None)

        def use(r, c):
            config = ArrayConfig(rows=r, cols=c, alpha=alpha, **parse_mac(mac))
            n_dsp = dsp_cells(board, config, self.dsp_of(mac))
            return float(coef @ features(r, c, n_dsp))
        return use, available

    def predict(self, board_name, alpha, mac, max_rows):
        """The largest R whose R x R array fits by the resource model (see predicted_use)."""
        use, available = self.predicted_use(board_name, alpha, mac)
        best = max([r for r in range(1, max_rows + 1) if use(r, r) <= available], default=1)
        print(f"  {board_name} alpha {alpha} {mac}: the model predicts {best}x{best}", file=sys.stderr, flush=True)
        return best

    def largest(self, board_name, alpha, mac, max_rows):
        """(largest R that fits, R + 1 or None when R == max_rows); (0, 1) if not even 1x1 fits.

        After the model's small builds, each step builds the size the model (refitted to all builds
        so far) predicts, kept strictly between the largest size known to fit and the smallest known
        not to, until the two are neighbours. When the model predicts that the smallest size known
        not to fit has room (it failed timing, or did not route in time), area says nothing about
        where the limit is, and the step halves the interval instead of creeping down one row at a
        time (on the ULX3S, alpha-8 arrays from 18x18 down take 40-100 minutes a build)."""
        fits = lambda r, dsp=None: self.measure(board_name, r, alpha, mac=mac, dsp=dsp)["fit"]  # noqa: E731
        if not fits(1):
            return 0, 1
        lo, hi = 1, max_rows + 1
        for r in MODEL_SIZES[1:]:
            if not fits(r):
                return lo, r
            lo = r
        if mac == "int":
            fits(MODEL_SIZES[-1], "off")
        for r, c, dsp, entry in self.builds(board_name, alpha, mac):   # earlier builds narrow the search
            if r == c and dsp == self.dsp_of(mac):
                if entry["fit"]:
                    lo = max(lo, r)
                elif entry["summary"] is not None or re.search(TOO_LARGE, entry["reason"] or ""):
                    hi = min(hi, r)
        while hi - lo > 1:
            predicted = self.predict(board_name, alpha, mac, max_rows)
            r = (lo + hi) // 2 if predicted >= hi else min(max(predicted, lo + 1), hi - 1)
            if fits(r):
                lo = r
            else:
                hi = r
        return lo, (hi if hi <= max_rows else None)


def labels(sweep, alpha, mac):
    """The table's cell and alpha columns: int8 (with the sweep's --dsp unless auto) or TQ WxD, at
    the sweep's PLL clock if any, and dense or the alpha."""
    return build_label(mac, sweep.dsp_of(mac), sweep.clock_mhz), "dense" if alpha == 1 else f"{alpha}"


TABLE_COLUMNS = ("board (device, clock)", "cell", "alpha", "largest array", "LUT4", "flip-flops", "block RAM",
                 "DSP", "Fmax (MHz)", "GMAC/s (utilization)", "useful MAC/s per LUT4 vs dense int8",
                 "LUT4 per cell", "critical path", "next larger sizes")
TABLE_HEADER = "| " + " | ".join(TABLE_COLUMNS) + " |"
NO_VALUE = "—"      # a measurement an older build summary does not have (e.g. its critical path)


def table_row(*cells):
    """A row of the table of largest arrays: the given cells, the rest empty."""
    cells = [str(c) for c in cells] + [""] * (len(TABLE_COLUMNS) - len(cells))
    return "| " + " | ".join(cells) + " |"


def table(sweep, boards, alphas, macs, max_rows, rectangles):
    lines = [TABLE_HEADER, "|" + "---|" * len(TABLE_COLUMNS)]
    for board_name in boards:
        board = get_board(board_name)
        for mac in macs:
            for alpha in alphas:
                try:
                    lines.append(row(sweep, board, alpha, mac, max_rows, rectangles))
                except NotMeasured as e:
                    cell, kind = labels(sweep, alpha, mac)
                    lines.append(table_row(board.name, cell, kind, f"not measured ({e} missing)"))
    return lines


# The reference workload of the throughput column: a dense layer of 256 inputs and 256 outputs
# on a batch of 64 vectors (the arrays' max_batch), tiled onto the array.
REFERENCE_LAYER = {"inputs": 256, "outputs": 256, "batch": 64}


def reference_utilization(config):
    """Useful MACs per cell per clock on REFERENCE_LAYER, from the cycle model
    (software.golden.cycles, equal to the RTL's cycles): ceil(outputs / R) x ceil(inputs / C) tiles
    of `batch` vectors each. Below 1 where the layer does not divide into whole tiles and where
    weight loads are not hidden behind the vectors (R + C > batch). On a dense layer column
    combining gives nothing; on a layer pruned so that alpha columns combine, an alpha-way cell
    does the useful work of up to alpha dense cells."""
    layer = REFERENCE_LAYER
    cycles = reference_layer_cycles(config, layer["inputs"])
    return layer["inputs"] * layer["outputs"] * layer["batch"] / (config.rows * config.cols * cycles)


def reference_layer_cycles(config, packed_columns):
    """Cycles of the cycle model for REFERENCE_LAYER's outputs with `packed_columns` columns (one
    per group of combined inputs) on the array: ceil(outputs / R) x ceil(packed_columns / C) tiles
    of `batch` vectors each."""
    from software.golden.cycles import layer_cycles
    layer = REFERENCE_LAYER
    tiles = -(-layer["outputs"] // config.rows) * -(-packed_columns // config.cols)
    return layer_cycles(config, [layer["batch"]] * tiles)


def array_fmax(summary):
    """The Fmax entry of the array's clock in a build summary ({'achieved_mhz', 'constraint_mhz',
    'pass'}); older summaries have one clock, the board's. None if nextpnr timed none."""
    fmax = summary["fmax"]
    return fmax.get(summary.get("array_clock")) or next(iter(fmax.values()), None)


def throughput(summary):
    """(useful MACs per second, utilization): cells x utilization on REFERENCE_LAYER x the
    array clock's achieved Fmax."""
    config = ArrayConfig.from_dict(summary["config"])
    utilization = reference_utilization(config)
    fmax = array_fmax(summary)
    macs = config.rows * config.cols * utilization * fmax["achieved_mhz"] * 1e6 if fmax else None
    return macs, utilization


def describe_throughput(summary):
    macs, utilization = throughput(summary)
    return NO_VALUE if macs is None else f"{macs / 1e9:.2f} ({100 * utilization:.0f}%)"


def useful_rate_on_combinable_layer(summary, alpha):
    """Useful MACs per second of a build on REFERENCE_LAYER pruned to 1 in `alpha` weights so
    that every `alpha` columns combine into one (the column-combining paper's best case): the
    array holds the packed layer, inputs x outputs / alpha_array weights of it (its own alpha; a
    dense array, alpha 1, multiplies every zero too), and every packed weight is useful only
    where it is nonzero: inputs x outputs / alpha of them per vector. None without an Fmax."""
    config = ArrayConfig.from_dict(summary["config"])
    fmax = array_fmax(summary)
    if fmax is None:
        return None
    layer = REFERENCE_LAYER
    cycles = reference_layer_cycles(config, -(-layer["inputs"] // config.alpha))
    useful = layer["inputs"] * layer["outputs"] // alpha * layer["batch"]
    return useful / cycles * fmax["achieved_mhz"] * 1e6


def describe_against_dense(summary, dense_summary):
    """This array's useful MACs per second per LUT4 on the layer its alpha combines perfectly,
    over the largest dense int8 array's on the same layer (which multiplies the zeros too): the
    throughput against a dense int8 array of the same LUT budget, if throughput scales with
    LUT4. NO_VALUE without the dense sweep of the board."""
    if dense_summary is None:
        return NO_VALUE
    alpha = summary["config"]["alpha"]
    mine, dense = (useful_rate_on_combinable_layer(s, alpha) for s in (summary, dense_summary))
    if mine is None or dense is None:
        return NO_VALUE
    per_lut = lambda rate, s: rate / s["resources"]["luts"]["used"]  # noqa: E731
    return f"{per_lut(mine, summary) / per_lut(dense, dense_summary):.2f}x"


def largest_dense_int8(sweep, board, max_rows):
    """The summary of the largest dense int8 array of `board` that fits, among the sweep's results
    with the sweep's --dsp for int8 and clock (most cells, then most rows, as the table picks), or
    None when there is none or its search has not ended: a smaller dense array that fits is not
    the baseline (its link and control outweigh its cells)."""
    searched = copy.copy(sweep)
    searched.allow_build = False        # the comparison never starts the dense sweep
    try:
        searched.largest(board.name, 1, "int", max_rows)
    except NotMeasured:
        return None
    best, summary = None, None
    for k, entry in sweep.results.items():
        b, r, c, alpha, mac, dsp, clock = parse_key(k)
        if (b, alpha, mac, dsp, clock) == (board.name, 1, "int", sweep.dsp_of("int"), sweep.clock_mhz) \
                and entry["fit"] and (best is None or (r * c, r) > best):
            best, summary = (r * c, r), entry["summary"]
    return summary


def describe_critical_path(summary):
    """The critical path of a build summary in a few words, NO_VALUE for older summaries."""
    path = summary.get("critical_path")
    if not path:
        return NO_VALUE
    carry = f" + {path['carry_steps']} carry" if path.get("carry_steps") else ""
    return (f"{path['from']} → {path['to']} ({path['to_port']}): {path['delay_ns']:.1f} ns, "
            f"{100 * path['routing_ns'] / path['delay_ns']:.0f}% routing, {path['logic_levels']} levels{carry}")


def describe_board(board, summary):
    """The first column: board, device and the array's clock (the constraint), "PLL" if made by it."""
    fmax = array_fmax(summary)
    clock = fmax["constraint_mhz"] if fmax else summary["clock_mhz"]
    return f"{board.name} ({board.device}, {clock:g} MHz{' PLL' if summary.get('pll') else ''})"


def row(sweep, board, alpha, mac, max_rows, rectangles):
    cell, kind = labels(sweep, alpha, mac)
    built = lambda r, c: key(board.name, r, c, alpha, mac, sweep.dsp_of(mac), sweep.clock_mhz)  # noqa: E731
    rows, fail = sweep.largest(board.name, alpha, mac, max_rows)
    if rows == 0:
        reason = sweep.results[built(1, 1)]["reason"]
        return table_row(board.name, cell, kind, f"none: {reason}")
    tried = [] if fail is None else [(fail, fail)]
    best, fitting, not_built = (rows, rows), [], []
    if rectangles and fail is not None:
        # One more row or one more column may still fit between R x R and (R+1) x (R+1).
        use, available = sweep.predicted_use(board.name, alpha, mac)
        for r, c in ((rows + 1, rows), (rows, rows + 1)):
            if built(r, c) not in sweep.results:
                if use(r, c) > rectangles * available:
                    continue    # not worth a build: the model says it would not fit
                if not sweep.allow_build:
                    not_built.append(f"{r}x{c} not built (the model predicts {100 * use(r, c) / available:.0f}%)")
                    continue
            if sweep.measure(board.name, r, alpha, cols=c, mac=mac)["fit"]:
                best = max(best, (r, c))
                fitting.append((r, c))
            else:
                tried.append((r, c))
    r, c = best
    s = sweep.results[built(r, c)]["summary"]
    res = s["resources"]
    base = sweep.results[built(1, 1)]["summary"]["resources"]["luts"]["used"]
    per_cell = f"{(res['luts']['used'] - base) / (r * c - 1):.0f}" if r * c > 1 else "-"
    clock = array_fmax(s)
    default_router = NEXTPNR_ROUTERS[0]
    router = f" ({s['router']})" if s.get("router", default_router) != default_router else ""
    why = []
    for fr, fc in tried:
        reason = sweep.results[built(fr, fc)]["reason"] or ""
        reason = reason.replace(f"the design does not fit the {board.device}: it needs ", "needs ")
        reason = reason.replace(f"the design does not fit the {board.device}: ", "")
        if "weight banks and input skew alone" in reason:
            reason = "too many flip-flops"
        why.append(f"{fr}x{fc}: {reason}".replace("|", "/"))
    for fr, fc in fitting:
        if (fr, fc) != best:    # the other rectangle, as large, fits too
            luts = sweep.results[built(fr, fc)]["summary"]["resources"]["luts"]
            why.append(f"{fr}x{fc} fits too ({luts['used']} LUT4, {100 * luts['used'] / luts['available']:.0f}%)")
    why += not_built
    if fail is None:
        why.append(f"none above {max_rows} rows")

    def used(name):
        u = res[name]
        return f"{u['used']} / {u['available']} ({100 * u['used'] / u['available']:.0f}%)" if u["available"] else "0"
    # An iCE40 logic cell is one LUT4 plus one flip-flop: the cells are what runs out.
    luts = (f"{res['luts']['used']} in {used('logic_cells')} logic cells" if "logic_cells" in res
            else used("luts"))
    luts += MAPPER_MARKS.get(s.get("lut_mapper"), "")
    return table_row(describe_board(board, s), cell, kind, f"{r}x{c}", luts, used("flip_flops"),
                     used("block_ram"), used("dsp"), f"{clock['achieved_mhz']:.1f}{router}", describe_throughput(s),
                     describe_against_dense(s, largest_dense_int8(sweep, board, max_rows)), per_cell,
                     describe_critical_path(s), "; ".join(why))


# ---------------------------------------------------------------------------------------------
# The result page (--docs): docs/results/fpga.md and its plots, from the results alone

DOCS_ALPHAS = (1, 2, 4, 8)
PAGE_COMMAND = "python benchmarks/fpga_fit.py --no-build --docs"


def measured_sweeps(results):
    """{(board, mac, dsp, clock): alphas} of every sweep the results hold, i.e. every kind of array
    with a 1x1 build (one-off builds with another --dsp are listed among all builds, not as sweeps)."""
    sweeps = {}
    for k in results:
        board, rows, cols, alpha, mac, dsp, clock = parse_key(k)
        if rows == cols == 1:
            sweeps.setdefault((board, mac, dsp, clock), set()).add(alpha)
    return sweeps


def docs_rows(results_path, max_rows=64, rectangles=1.05):
    """The fit table for every board: every sweep the results hold, int8 first, an int8 sweep with
    --dsp auto at every alpha (those it lacks "not measured"); a board without any gets the rows of
    int8 with --dsp auto on its own clock at every alpha, "not measured"."""
    sweeps = measured_sweeps(Sweep(results_path, "", 0, allow_build=False).results)
    lines = []
    for board in BOARD_NAMES:
        kinds = {}
        for (b, mac, dsp, clock), alphas in sweeps.items():
            if b == board:
                kinds.setdefault((mac, dsp, clock), set()).update(alphas)
        kinds = kinds or {("int", "auto", None): set()}
        for (mac, dsp, _), alphas in kinds.items():
            if (mac, dsp) == ("int", "auto"):
                alphas.update(DOCS_ALPHAS)
        order = lambda kind: (kind[0] != "int", str(kind[1]) != "auto", kind[2] is not None, str(kind))  # noqa: E731
        for mac, dsp, clock in sorted(kinds, key=order):
            sweep = Sweep(results_path, "", 0, allow_build=False, dsp=dsp, clock_mhz=clock)
            lines += table(sweep, [board], sorted(kinds[mac, dsp, clock]), [mac], max_rows, rectangles)[2:]
    return lines


def build_label(mac, dsp, clock=None):
    """int8 or TQ WxD, with the --dsp unless auto and the PLL clock (--clock-mhz) if any."""
    return ((f"TQ {mac}" if mac != "int" else "int8") + ("" if dsp == "auto" else f", --dsp {dsp}")
            + ("" if clock is None else f", {clock:g} MHz PLL"))


def all_builds_table(results):
    """Every build kept, one row each."""
    rows = []
    def order(k):
        board, rows, cols, alpha, mac, dsp, clock = parse_key(k)
        return BOARD_NAMES.index(board), mac != "int", str(dsp), clock or 0, alpha, (rows, cols)
    for k in sorted(results, key=order):
        board, r, c, alpha, mac, dsp, clock = parse_key(k)
        entry = results[k]
        s = entry["summary"]
        if s:
            res = s["resources"]
            scarce = res.get("logic_cells", res["luts"])
            use = f"{scarce['used']} / {scarce['available']}"
            array = array_fmax(s)
            fmax = f"{array['achieved_mhz']:.1f} / {array['constraint_mhz']:g}" if array else NO_VALUE
            dsps = f"{res['dsp']['used']}"
            router = s.get("router", NEXTPNR_ROUTERS[0])
            path = describe_critical_path(s)
        else:
            use = fmax = dsps = router = path = ""
        outcome = "fits" if entry["fit"] else (entry["reason"] or "does not fit")
        rows.append([board, f"{r}x{c}", alpha, build_label(mac, dsp, clock), use, dsps, fmax, router, path,
                     f"{entry.get('wall_seconds', 0) / 60:.1f}", outcome])
    return report.markdown_table(
        ["board", "array", "alpha", "cell", "logic cells (iCE40) / LUT4 (ECP5) used / available", "DSP",
         "Fmax / clock (MHz)", "router", "critical path", "minutes", "outcome"], rows)


def plot_points(results):
    """{board: {(mac, dsp, clock, alpha): [(cells, scarce resource used, fits, Fmax or None,
    constraint)]}} of the sweeps (--dsp auto or off), with what nextpnr said a design that did not
    fit needs; `clock` is the sweep's PLL clock (None: the board's)."""
    points = {}
    for k, entry in results.items():
        board, r, c, alpha, mac, dsp, pll = parse_key(k)
        if dsp not in ("auto", "off"):
            continue
        fmax = clock = None
        if entry["summary"]:
            res = entry["summary"]["resources"]
            used = res.get("logic_cells", res["luts"])["used"]
            array = array_fmax(entry["summary"])
            if array:
                fmax, clock = array["achieved_mhz"], array["constraint_mhz"]
        elif needs := re.search(r"needs (\d+) of (\d+) ", entry["reason"] or ""):
            used = int(needs[1])
        else:
            continue        # not finished: nothing measured
        points.setdefault(board, {}).setdefault((mac, dsp, pll, alpha), []).append(
            (r * c, used, entry["fit"], fmax, clock))
    return points


def device_capacity(results, board):
    """(capacity of the scarce resource, its name) of a board, from any of its builds."""
    for k, entry in results.items():
        if parse_key(k)[0] == board and entry["summary"]:
            res = entry["summary"]["resources"]
            if "logic_cells" in res:
                return res["logic_cells"]["available"], "logic cells (1 LUT4 + 1 FF each)"
            return res["luts"]["available"], "LUT4 (TRELLIS_COMB)"
    return None, "LUT4"


def plot_style(mac, dsp, clock, alpha):
    colors = {1: "tab:blue", 2: "tab:orange", 4: "tab:green", 8: "tab:red"}
    marker, line = ("^", ":") if mac != "int" else ("s", "--") if dsp == "off" else ("o", "-")
    if clock is not None:
        marker, line = "D", "-."
    return dict(color=colors.get(alpha, "tab:gray"), marker=marker, linestyle=line,
                label=f"{build_label(mac, dsp, clock)}, {'dense' if alpha == 1 else f'α={alpha}'}")


def plot_per_board(results, boards, quantity, directory, name):
    """One panel per board: `quantity` ("use" or "fmax") against cells (rows x cols)."""
    plt = report.pyplot()
    points = plot_points(results)
    fig, axes = plt.subplots(1, len(boards), figsize=(4.2 * len(boards), 3.8), squeeze=False)
    for ax, board in zip(axes[0], boards):
        series = points.get(board, {})
        for kind in sorted(series, key=lambda k: (k[0] != "int", str(k[1]), k[2] or 0, k[3])):
            pts = sorted(series[kind])
            if quantity == "fmax":
                pts = [p for p in pts if p[3] is not None]
                y = [p[3] for p in pts]
            else:
                y = [p[1] for p in pts]
            if not pts:
                continue
            style = plot_style(*kind)
            ax.plot([p[0] for p in pts], y, color=style["color"], linestyle=style["linestyle"], linewidth=1,
                    label=style["label"])
            for p, v in zip(pts, y):
                ax.plot(p[0], v, marker=style["marker"], color=style["color"], markersize=5,
                        markerfacecolor=style["color"] if p[2] else "none")
        if quantity == "fmax":
            clocks = {p[4] for kind in series.values() for p in kind if p[4]}
            for clock in clocks:
                ax.axhline(clock, color="black", linewidth=0.8, linestyle="--")
                ax.annotate(f"constraint {clock:g} MHz", (0.02, clock), xycoords=("axes fraction", "data"),
                            fontsize=7, va="bottom")
            ax.set_ylabel("Fmax (MHz, nextpnr)")
        else:
            capacity, label = device_capacity(results, board)
            if capacity:
                ax.axhline(capacity, color="black", linewidth=0.8, linestyle="--")
                ax.annotate(f"device: {capacity}", (0.02, capacity), xycoords=("axes fraction", "data"),
                            fontsize=7, va="bottom")
            ax.set_ylabel(label)
        device = next((e["summary"].get("device", "") for k, e in results.items()
                       if parse_key(k)[0] == board and e["summary"]), "")
        ax.set_title(f"{board} ({device})" if device else board, fontsize=9)
        ax.set_xlabel("cells (rows x cols)")
        ax.grid(True, linewidth=0.3)
        if series:
            ax.legend(fontsize=6)
    return report.save_figure(fig, directory, name)


def tool_versions(results):
    versions = sorted({f"{tool} {version}" for e in results.values() if e["summary"]
                       for tool, version in e["summary"].get("tools", {}).items()})
    return ", ".join(versions) or "not recorded"


def source_revisions(results):
    """The design revisions (fpga/build.py `source_revision`) of the kept builds that finished,
    with their counts."""
    counts = {}
    for e in results.values():
        if e["summary"]:
            source = e["summary"].get("source") or "not recorded"
            counts[source] = counts.get(source, 0) + 1
    return ", ".join(f"{source} ({n} builds)" for source, n in sorted(counts.items()))


def write_docs(results_path, directory, max_rows=64, rectangles=1.05):
    """Write fpga.md, fpga_luts.png and fpga_fmax.png into `directory`; returns their paths."""
    results = Sweep(results_path, "", 0, allow_build=False).results
    boards = [b for b in BOARD_NAMES if any(parse_key(k)[0] == b for k in results)] or list(BOARD_NAMES)
    luts = plot_per_board(results, boards, "use", directory, "fpga_luts.png")
    fmax = plot_per_board(results, boards, "fmax", directory, "fpga_fmax.png")
    fits = "\n".join([TABLE_HEADER, "|" + "---|" * len(TABLE_COLUMNS), *docs_rows(results_path, max_rows, rectangles)])
    command = PAGE_COMMAND
    if os.path.abspath(results_path) != os.path.abspath(RESULTS):
        command += f" --results {results_path}"
    body = f"""
What fits each board, found by building (not by estimating): for each board, kind of cell and
alpha, the largest array (8-bit signed operands, 32-bit accumulators, double-buffered, `max_batch`
64, behind the UART host link) that Yosys and nextpnr place and route *and* that meets its clock
constraint (the board's clock, or the PLL's with `--clock-mhz`), then one more row or one more column. How the search works, what the columns mean and how
to extend the sweep: [FPGA and host link](../fpga.md#what-fits-each-board). Percentages are
[device utilization](../results.md#device-utilization).

Every number below comes from the build summaries in `{os.path.relpath(results_path, report.ROOT)}`
({len(results)} builds). A row that says "not measured" names the build the results lack; build it
with `python benchmarks/fpga_fit.py --boards BOARD --alphas ALPHA` (hours for the large ECP5
arrays). Tools of these builds: {tool_versions(results)}. Design (git commit of the sources)
of these builds: {source_revisions(results)}.

## Largest arrays

{fits}

"LUT4 per cell" is (LUT4 of the largest array − LUT4 of the 1x1) / (cells − 1): the host link's
fixed cost cancels; where some cells have their multiplier in a DSP block and others in LUTs, it
averages the two. On the iCE40 the logic cells (one LUT4 and one flip-flop each) are what runs out.
"(router2)": the build used nextpnr's router2 (`--router router2`), the others its default router1.
The clock in the first column is the constraint the array was built for ("PLL": made by the FPGA's
PLL from the board's clock, `--clock-mhz`); "Fmax" is what nextpnr achieved on the array's clock.

"GMAC/s" is useful multiply-accumulates per second: cells × utilization × Fmax, at the achieved
Fmax, with the utilization (useful MACs per cell per clock, in brackets) of the cycle model
(`software/golden/cycles.py`, equal to the RTL's cycles) on a dense layer of
{REFERENCE_LAYER['inputs']} inputs × {REFERENCE_LAYER['outputs']} outputs and a batch of
{REFERENCE_LAYER['batch']}, tiled onto the array. On that dense layer column combining gives
nothing; on a layer pruned so that α columns combine into one, an α-way cell does the useful work
of up to α dense cells, while a dense array spends the same share of its MACs on zeros.

"useful MAC/s per LUT4 vs dense int8" measures that: on the same layer pruned to one weight in α
so that every α columns combine into one (`useful_rate_on_combinable_layer`), this array's useful
MACs per second (the packed layer on it, cycles from the cycle model, at its Fmax) per LUT4 it
uses, over the same for the board's largest dense int8 array in the table (which multiplies the
zeros too, at its own Fmax): the throughput against a dense int8 array of the same LUT budget, as
far as throughput scales with LUT4. 1.00x for the dense int8 row itself; "—" where the board's
dense int8 sweep (with the same clock) is not in the results.

"critical path" is the worst path of the array's clock in nextpnr's report: its start and end (as
the design names them, with the end's port), its delay, the share of it on wires, its logic levels
and carry-chain steps ([reports that explain](../fpga.md#build-bitstream-and-report)). {NO_VALUE}: the
build predates critical paths in the summaries.

## LUT4 and Fmax per board

![LUT4 (ECP5) or logic cells (iCE40) against array size, per board]({luts.name})

Filled markers fit; hollow markers did not (nextpnr's count of what the design needs, after
packing). The dashed line is the device's capacity.

![Fmax against array size, per board]({fmax.name})

Fmax of the array's clock as nextpnr reports it for every build that placed and routed; the dashed
lines are the clock constraints the designs must meet (the board's clock, or the PLL's).

## Every build kept

<details>
<summary>{len(results)} builds</summary>

{all_builds_table(results)}

</details>
"""
    page = report.write_page(directory, "fpga.md", "Results: what fits each board", command, body)
    return page, luts, fmax


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--boards", default=",".join(BOARD_NAMES), help="comma-separated boards (default all)")
    p.add_argument("--alphas", default="1,2,4,8", help="comma-separated alphas; 1 = dense (default 1,2,4,8)")
    p.add_argument("--int", dest="with_int", action=argparse.BooleanOptionalAction, default=True,
                   help="sweep int8 cells (default on)")
    p.add_argument("--tq", default="", help="comma-separated TQ budgets WxD to sweep too, e.g. 2x3")
    p.add_argument("--max-rows", type=int, default=64, help="largest R tried (default 64)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--rectangles", type=float, default=1.05, metavar="MARGIN",
                   help="after the largest R x R, also build (R+1) x R and R x (R+1) unless the resource "
                        "model predicts they need more than MARGIN times the device (default 1.05; 0: never)")
    p.add_argument("--build", action=argparse.BooleanOptionalAction, default=True,
                   help="build what the results lack (default); --no-build prints the table from the results")
    p.add_argument("--router", choices=NEXTPNR_ROUTERS,
                   help="nextpnr router of new builds (default router1; the table names other routers)")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop a build after this long and count it as not fitting (default: no limit)")
    p.add_argument("--dsp", type=dsp_argument, default="auto", metavar="auto|on|off|N",
                   help="where the int8 arrays' multipliers go (python -m fpga build --dsp; default auto)")
    p.add_argument("--clock-mhz", type=positive_mhz, metavar="MHZ",
                   help="clock the arrays from the FPGA's PLL at this frequency and require them to meet it "
                        "(python -m fpga build --clock-mhz; default: the board's clock)")
    p.add_argument("--rebuild", action="store_true",
                   help="drop the results' builds of these boards, alphas and cells at this clock first, and "
                        "search again with the current design")
    p.add_argument("--results", default=RESULTS,
                   help=f"the build summaries measured so far, read and extended (default {RESULTS})")
    p.add_argument("--work-dir", default=os.path.join("build", "fpga_fit", "work"))
    report.docs_argument(p, "fpga.md (the table of every sweep in --results, and every build kept)")
    args = p.parse_args(argv)
    boards = [b.strip() for b in args.boards.split(",") if b.strip()]
    for b in boards:
        try:
            array_clock(get_board(b), args.clock_mhz)
        except BuildError as e:
            p.error(str(e))
    alphas = [int(a) for a in args.alphas.split(",")]
    macs = ["int"] * args.with_int + [t.strip() for t in args.tq.split(",") if t.strip()]
    for mac in macs:
        parse_mac(mac)
    if args.time_limit is not None and args.time_limit <= 0:
        p.error("--time-limit must be positive")
    sweep = Sweep(args.results, args.work_dir, args.baud, allow_build=args.build, router=args.router,
                  time_limit=None if args.time_limit is None else 60 * args.time_limit, dsp=args.dsp,
                  clock_mhz=args.clock_mhz)
    if args.rebuild:
        if not args.build:
            p.error("--rebuild needs building (not --no-build)")
        for k in sweep.forget(boards, alphas, macs):
            print(f"  dropped {k}", file=sys.stderr)
    stop_builds_on_terminate()
    try:
        lines = table(sweep, boards, alphas, macs, args.max_rows, args.rectangles)
    except KeyboardInterrupt:
        # The build under way stopped its tools and left nothing; the builds before it are kept.
        print("fpga_fit: interrupted", file=sys.stderr)
        return 130
    except ToolsStopped as e:
        print(f"fpga_fit: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    if args.docs:
        for path in write_docs(args.results, args.docs, args.max_rows, args.rectangles):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
