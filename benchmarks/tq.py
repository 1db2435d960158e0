"""Term quantization numbers: what a TQ array cell and the TQ multipliers cost on an FPGA, and what
term budgets cost in accuracy and term pairs on the digits MLP. Prints tables; asserts nothing.

    python benchmarks/tq.py                          # all four tables (about 10 minutes on 2 cores)
    python benchmarks/tq.py --no-fpga --no-digits --no-arrays   # the array-cell table only (28 Yosys + nextpnr runs, ~3 min)
    python benchmarks/tq.py --no-cells --no-digits --no-arrays  # the multiplier table only (12 runs, ~2 min)
    python benchmarks/tq.py --no-fpga --no-cells --no-arrays    # the digits table only (about 30 s)
    python benchmarks/tq.py --docs                   # also write docs/results/tq.md and its plot

Cell table. ONE array cell as the array builds it (hdl/macs.py's MAC_HARDWARE[mac].cell: hdl/cell.py's
ColumnCombiningCell with the style's operand, weight and product, or hdl/tq_serial.py's
TermSerialCell; 8-bit signed operands, 32-bit partial sum,
registered; an int8 cell leaves its Booth rows' +1s to its row's head, hdl/booth.py, whose cost
the array table counts), at alpha = 1 (dense) and 8 (column combining: an 8-way operand multiplexer). Every
input of the cell comes from a flip-flop of a shift register fed by one pin, as in the array where
every cell input is a register; its outputs are XOR-reduced to one pin. Yosys keeps the hierarchy
(`-noflatten`) so that the cell module's own cells are counted: LUT4 = iCE40 SB_LUT4, or ECP5 LUT4
+ 2 x CCU2C (a carry cell takes a slice's two LUT4s); no DSP blocks (`synth_ecp5 -nodsp`); the
int8 multiplier is hdl/booth.py's radix-4 Booth tree on carry chains. Fmax is
nextpnr's for the flattened harness (one cell between registers) at a 250 MHz target. Rows: int8;
the tq style's shift-add cell ("TQ shift-add WxD"); the tq cell it replaced, which summed all W x D
term pairs ("term pairs", hdl/tq.py's TermPairMultiply on HESE term lists); and the tq-serial
style's term-serial cell (one term pair per clock, `--mac tq-serial`).
Throughput: MACs per clock (1 for every cell but the term-serial one: 1 / (W x D)); term pairs per
clock: W x D for a TQ cell, 1 for the term-serial one, and 64 for int8 by the TQ paper's
accounting (an 8-bit x 8-bit MAC is 8 x 8 pairs, as the digits table's "budget pairs").

FPGA table. Each multiply-accumulator is synthesized alone (Yosys synth_ice40 / synth_ecp5 from the
YoWASP wheels, then nextpnr for the iCE40UP5K-SG48 and the ECP5-85F CABGA381), out of context: a
1-bit input shifts into a register chain that drives every operand bit, products accumulate into a
32-bit register whose bits are XOR-reduced to a 1-bit output. All rows carry this same harness
(operand chain, 32-bit accumulator, XOR), so nothing is optimized away and only 4 pins are used;
differences between rows are the multipliers. nextpnr is asked for 250 MHz; "Fmax" is what it
achieved. LUTs: iCE40 LUT4s from Yosys (a logic cell holds one LUT4 and one flip-flop), ECP5
TRELLIS_COMB from nextpnr. "int8" is an 8-bit signed x 8-bit signed multiplier, once on a DSP block
and once in LUTs; "TQ" rows are hdl/tq.py's TQMultiplier for 8-bit signed values with w weight
term slots and d data terms (one term pair per clock, or all w*d pairs in one clock).

Array table. A whole 4x4 alpha-8 array per MAC style (int8, TQ shift-add 2x3, TQ term-serial 2x3)
through Yosys synth_ice40, flattened: the cells plus what they share (the edge, once per
activation, the skew lines, the weight loading, the accumulator and the result FIFO).

Digits table. The digits MLP (64-128-64-10, software/models/digits.py) is trained in float, then
exported to integers by the front-end (software/frontend/intmodel.py: int8 per-channel power-of-two weights,
unsigned activations at calibrated power-of-two scales) and run in integers on the 450 test images;
accuracy is the mean over --seeds models. Term quantization is post-training (no retraining):
weights keep a budget of terms per group of g consecutive weights along the input dimension
(g = 1: per weight; "max" is the most terms one weight keeps, i.e. the slots a TQ multiplier
needs), activations keep d terms per value, and each layer multiplies exactly what a `--mac tq`
array multiplies (software/golden/array.py). Three costs per MAC (dense MAC count N*F*K):
  budget pairs    the paper's accounting: weight terms x data terms allowed, b x b bits for a
                  uniform b-bit MAC (what a bit-serial multiplier spends on every MAC);
  measured pairs  sum_{n,f,k} terms(W[f,k]) * terms(x[n,k]) (software/termquant.term_pairs) on
                  the real data, HESE terms of the untruncated values for the uniform rows; zeros
                  (ReLU outputs, small weights) have no terms, so this is far below the budget;
  serial clocks   what hdl/tq.py's serial form spends: max(1, pairs) per MAC.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import report  # noqa: E402


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()


# ---------------------------------------------------------------------------------------------
# FPGA: out-of-context multiply-accumulators

ACC_WIDTH = 32
DEVICES = {
    "ice40": dict(label="iCE40UP5K", nextpnr=["--up5k", "--package", "sg48"]),
    "ecp5": dict(label="ECP5-85F", nextpnr=["--85k", "--package", "CABGA381"]),
}
TARGET_MHZ = 250


def harness(kind, *, width=8, weight_terms=2, data_terms=3):
    """An Elaboratable with ports din, dout (plus clk, rst) around one multiply-accumulator."""
    from amaranth.hdl import Cat, Elaboratable, Module, Signal, signed

    class Harness(Elaboratable):
        def __init__(self):
            self.din, self.dout = Signal(), Signal()

        def elaborate(self, platform):
            m = Module()
            acc = Signal(signed(ACC_WIDTH))
            if kind == "int":
                operand_bits = 2 * width
            else:
                from hdl.tq import TQMultiplier
                from spec.tq import TQConfig
                m.submodules.tq = tq = TQMultiplier(TQConfig(width=width, signed=True, weight_terms=weight_terms,
                                                             data_terms=data_terms, form=kind))
                operand_bits = len(tq.operands.payload.as_value()) + 2
            chain = Signal(operand_bits)
            m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
            if kind == "int":
                a, w = chain[:width].as_signed(), chain[width:].as_signed()
                m.d.sync += acc.eq(acc + a * w)
            else:
                payload_bits = operand_bits - 2
                m.d.comb += [
                    tq.operands.payload.as_value().eq(chain[:payload_bits]),
                    tq.operands.valid.eq(chain[payload_bits]),
                    tq.products.ready.eq(chain[payload_bits + 1]),
                ]
                with m.If(tq.products.valid & tq.products.ready):
                    m.d.sync += acc.eq(acc + tq.products.payload)
            m.d.sync += self.dout.eq(acc.xor())
            return m

    return Harness()


def synthesize(design, family, work_dir, *, dsp=True):
    """Yosys + nextpnr on one harness; returns fpga.report.summarize's summary."""
    from amaranth.back import verilog
    from fpga import report, toolchain
    os.makedirs(work_dir, exist_ok=True)
    text = verilog.convert(design, name="top", ports=[design.din, design.dout], emit_src=False)
    with open(os.path.join(work_dir, "top.v"), "w") as f:
        f.write(text)
    env = toolchain.tool_environment(["yosys", f"nextpnr-{family}"])
    if family == "ice40":
        synth = "synth_ice40" + (" -dsp" if dsp else "")
    else:
        synth = "synth_ecp5" + ("" if dsp else " -nodsp")
    script = f"read_verilog top.v; {synth} -top top -json top.json; tee -q -o stat.json stat -json"
    subprocess.run([env["YOSYS"], "-q", "-p", script], cwd=work_dir, env=env, check=True,
                   capture_output=True)
    nextpnr = env["NEXTPNR_ICE40" if family == "ice40" else "NEXTPNR_ECP5"]
    subprocess.run([nextpnr, *DEVICES[family]["nextpnr"], "--json", "top.json", "--report", "report.json",
                    "--freq", str(TARGET_MHZ), "--timing-allow-fail", "--seed", "1", "-q"],
                   cwd=work_dir, env=env, check=True, capture_output=True)
    with open(os.path.join(work_dir, "report.json")) as f:
        nextpnr_report = json.load(f)
    with open(os.path.join(work_dir, "stat.json")) as f:
        yosys_stat = json.load(f)
    return report.summarize(family, nextpnr_report, yosys_stat)


def fpga_rows(budgets):
    designs = [("int8 MAC, DSP", "int", {}, True), ("int8 MAC, LUTs only", "int", {}, False)]
    for w, d in budgets:
        for form in ("serial", "parallel"):
            designs.append((f"TQ {form} w={w} d={d}", form, dict(weight_terms=w, data_terms=d), False))
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparsegen_tq_fpga_") as tmp:
        for family in DEVICES:
            for name, kind, params, dsp in designs:
                start = time.perf_counter()
                work = os.path.join(tmp, f"{family}_{len(rows)}")
                summary = synthesize(harness(kind, **params), family, work, dsp=dsp)
                res = summary["resources"]
                fmax = min(f["achieved_mhz"] for f in summary["fmax"].values())
                if kind == "serial":
                    clocks = f"1..{params['weight_terms'] * params['data_terms']}"
                else:
                    clocks = "1"
                rows.append([name, DEVICES[family]["label"], res["luts"]["used"], res["flip_flops"]["used"],
                             res["dsp"]["used"], f"{fmax:.1f}", clocks])
                print(f"  {family} {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# FPGA: one array cell

CELL_ALPHAS = (1, 8)
INT8_PAIRS = 64     # term pairs per int8 MAC, by the paper's accounting: 8 bits x 8 bits


def array_cell(kind, alpha, weight_terms=2, data_terms=3):
    """(cell, MACs per clock, term pairs per clock) of one 8-bit signed array cell as the array
    builds it (hdl/macs.py's registry: `MAC_HARDWARE[mac].cell`): "int8" (and "int8-parallel", its
    one-stage product), "tq" (shift-add), "tq-serial" (one term pair per clock); "tq-pairs" is the
    tq cell before the shift-add (a sum over all term pairs)."""
    from hdl.cell import ColumnCombiningCell
    from hdl.hese import term_list_layout
    from hdl.macs import MAC_HARDWARE
    from hdl.tq import TermPairMultiply
    from spec import ArrayConfig

    integer = kind.startswith("int8")
    terms = dict(weight_terms=weight_terms, data_terms=data_terms) if not integer else {}
    multiplier = "parallel" if kind == "int8-parallel" else "pipelined"
    mac = "int" if integer else ("tq-serial" if kind == "tq-serial" else "tq")
    config = ArrayConfig(rows=1, cols=1, alpha=alpha, acc_width=ACC_WIDTH, mac=mac, multiplier=multiplier, **terms)
    hardware = MAC_HARDWARE[config.mac]
    if kind == "tq-pairs":
        cell = ColumnCombiningCell(alpha=alpha, act_shape=term_list_layout(7, data_terms),
                                   weight_shape=hardware.weight_shape(config), acc_width=config.acc_width,
                                   multiply=TermPairMultiply(weight_max_exponent=7, data_max_exponent=7),
                                   product_stages=config.product_stages)
    else:
        cell = hardware.cell(config, acc_width=config.acc_width, defer_negation=True)    # as hdl/systolic.py's
    if kind == "tq-serial":
        return cell, 1 / config.clocks_per_vector, 1
    return cell, 1, (INT8_PAIRS if integer else weight_terms * data_terms)


def cell_harness(cell):
    """An Elaboratable with ports din, dout around one cell: every input port of the cell is driven
    from a shift register fed by din (so every cell input comes from a flip-flop, as in the array),
    every output is XOR-reduced into a register that drives dout."""
    from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
    from amaranth.lib.wiring import Flow

    class CellHarness(Elaboratable):
        def __init__(self):
            self.din, self.dout = Signal(), Signal()

        def elaborate(self, platform):
            m = Module()
            m.submodules.cell = cell
            inputs, outputs = [], []
            for path, member, value in cell.signature.flatten(cell):
                (inputs if member.flow == Flow.In else outputs).append(Value.cast(value))
            chain = Signal(sum(len(v) for v in inputs))
            m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
            lsb = 0
            for value in inputs:
                m.d.comb += value.eq(chain[lsb:lsb + len(value)])
                lsb += len(value)
            m.d.sync += self.dout.eq(Cat(outputs).xor())
            return m

    return CellHarness()


def synthesize_cell(design, family, work_dir):
    """Yosys (hierarchy kept, so the cell's own cells can be counted) + nextpnr on one harness:
    {"luts": LUT4 of the cell module, "ffs": its flip-flops, "fmax": MHz nextpnr achieved}."""
    from amaranth.back import verilog
    from fpga import toolchain
    from fpga.build import BIT_LIKE_NAMES
    os.makedirs(work_dir, exist_ok=True)
    text = verilog.convert(design, name="top", ports=[design.din, design.dout], emit_src=False)
    with open(os.path.join(work_dir, "top.v"), "w") as f:
        f.write(text)
    env = toolchain.tool_environment(["yosys", f"nextpnr-{family}"])
    synth = "synth_ice40" if family == "ice40" else "synth_ecp5 -nodsp"
    # `booth`, as fpga/build.py runs it; the cells' LUT multipliers are already Booth trees
    # (hdl/booth.py), so it finds no $mul in them.
    # Private names for the wires named like a bit of another (`x[3]`), as fpga/build.py gives them
    # when ABC9 crashes: Yosys 0.70's ABC9 crashes on the
    # one-cell netlists without them (the term-serial cell's, for one).
    script = (f"read_verilog top.v; hierarchy -top top; rename -hide {BIT_LIKE_NAMES}; proc; booth; "
              f"{synth} -noflatten -top top; "
              f"tee -q -o stat.json stat -json; flatten; write_json top.json")
    subprocess.run([env["YOSYS"], "-q", "-p", script], cwd=work_dir, env=env, check=True, capture_output=True)
    nextpnr = env["NEXTPNR_ICE40" if family == "ice40" else "NEXTPNR_ECP5"]
    subprocess.run([nextpnr, *DEVICES[family]["nextpnr"], "--json", "top.json", "--report", "report.json",
                    "--freq", str(TARGET_MHZ), "--timing-allow-fail", "--seed", "1", "-q"],
                   cwd=work_dir, env=env, check=True, capture_output=True)
    with open(os.path.join(work_dir, "stat.json")) as f:
        modules = json.load(f)["modules"]
    cells = next(stat for name, stat in modules.items() if name.endswith("cell"))["num_cells_by_type"]
    with open(os.path.join(work_dir, "report.json")) as f:
        fmax = min(float(entry["achieved"]) for entry in json.load(f)["fmax"].values())
    if family == "ice40":
        luts = cells.get("SB_LUT4", 0)
        ffs = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    else:
        # A CCU2C (two bits of a carry chain) takes the two LUT4s of a slice.
        luts = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
        ffs = cells.get("TRELLIS_FF", 0)
    return {"luts": luts, "ffs": ffs, "fmax": fmax}


CELL_KINDS = [
    # (label, kind, weight terms, data terms)
    ("int8 (Booth, no DSP)", "int8", None, None),
    ("int8 one-stage product", "int8-parallel", None, None),
    ("TQ shift-add 2x3", "tq", 2, 3),
    ("TQ shift-add 1x2", "tq", 1, 2),
    ("TQ term pairs 2x3 (before)", "tq-pairs", 2, 3),
    ("TQ term-serial 2x3", "tq-serial", 2, 3),
    ("TQ term-serial 1x2", "tq-serial", 1, 2),
]


def cell_rows(kinds=CELL_KINDS, alphas=CELL_ALPHAS):
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparsegen_tq_cell_") as tmp:
        for family in DEVICES:
            int8 = {}
            for alpha in alphas:
                for label, kind, wt, dt in kinds:
                    start = time.perf_counter()
                    terms = {} if wt is None else dict(weight_terms=wt, data_terms=dt)
                    cell, macs, pairs = array_cell(kind, alpha, **terms)
                    result = synthesize_cell(cell_harness(cell), family, os.path.join(tmp, f"{family}_{len(rows)}"))
                    if kind == "int8":
                        int8[alpha] = result["luts"]
                    luts, fmax = result["luts"], result["fmax"]
                    rows.append([label, DEVICES[family]["label"], alpha, luts,
                                 f"{luts / int8[alpha]:.2f}x" if alpha in int8 else "-", result["ffs"],
                                 f"{fmax:.1f}", f"{macs:.3g}", f"{pairs:g}",
                                 f"{fmax * macs / luts:.3f}", f"{fmax * pairs / luts:.2f}"])
                    print(f"  {family} alpha={alpha} {label}: {time.perf_counter() - start:.0f} s",
                          file=sys.stderr, flush=True)
    return rows


CELL_HEADERS = ["cell", "device", "alpha", "LUT4", "vs int8", "FFs", "Fmax MHz", "MACs / clock",
                "term pairs / clock", "MMAC/s per LUT4", "M term pairs/s per LUT4"]


# ---------------------------------------------------------------------------------------------
# Whole arrays: what the edge adds to the cells

ARRAY_STYLES = [("int8", "int", {}), ("TQ shift-add 2x3", "tq", dict(weight_terms=2, data_terms=3)),
                ("TQ term-serial 2x3", "tq-serial", dict(weight_terms=2, data_terms=3))]


def array_rows(size=4, alpha=8):
    """One R x C array per MAC style (hdl/systolic.py as `python -m gen` builds it), flattened
    through Yosys synth_ice40 (no nextpnr): [style, LUT4, FFs, EBR, LUT4 per cell]."""
    from amaranth.back import verilog
    from fpga import toolchain
    from hdl.systolic import SystolicArray
    from spec import ArrayConfig
    rows = []
    env = toolchain.tool_environment(["yosys"])
    with tempfile.TemporaryDirectory(prefix="sparsegen_tq_array_") as tmp:
        for label, mac, terms in ARRAY_STYLES:
            start = time.perf_counter()
            config = ArrayConfig(rows=size, cols=size, alpha=alpha, mac=mac, **terms)
            work = os.path.join(tmp, mac)
            os.makedirs(work)
            with open(os.path.join(work, "top.v"), "w") as f:
                f.write(verilog.convert(SystolicArray(config), name="top", emit_src=False))
            subprocess.run([env["YOSYS"], "-q", "-p", "read_verilog top.v; synth_ice40 -top top; "
                            "tee -q -o stat.json stat -json"], cwd=work, env=env, check=True, capture_output=True)
            with open(os.path.join(work, "stat.json")) as f:
                modules = json.load(f)["modules"]
            cells = next(stat for name, stat in modules.items() if name.lstrip("\\") == "top")["num_cells_by_type"]
            luts = cells.get("SB_LUT4", 0)
            rows.append([label, f"{size}x{size}", alpha, luts, sum(n for c, n in cells.items() if c.startswith("SB_DFF")),
                         cells.get("SB_RAM40_4K", 0), f"{luts / config.cells:.0f}"])
            print(f"  array {label}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


ARRAY_HEADERS = ["array cells", "size", "alpha", "LUT4", "FFs", "EBR", "LUT4 per cell"]


# ---------------------------------------------------------------------------------------------
# Digits: accuracy and term pairs

def digits_results(seed, epochs, budgets):
    """{"float": accuracy, "int8" | "int4" | budget: Measure} for one trained model."""
    import torch
    from spec import ArrayConfig
    from software.golden.array import reference_layer
    from software.frontend.intmodel import export_model
    from software.models.digits import build_model, evaluate, load_digits_split, train
    from software.frontend.termquant import hese_encode, term_pairs, weight_terms

    split = load_digits_split()
    model = build_model(seed=seed)
    train(model, epochs=epochs, seed=seed, progress=False)
    labels = split.y_test.numpy()

    def run(bits, group=None, group_terms=None, data_terms=None):
        config = ArrayConfig(rows=32, cols=32, act_width=bits, weight_width=bits, act_signed=False)
        int_model = export_model(model, config, split.x_train)
        totals = dict(macs=0, pairs=0, serial_clocks=0, most=0)

        def layer(index, step, vectors):
            w = torch.from_numpy(step.weight_matrix)
            x = torch.from_numpy(vectors)
            w_codes = hese_encode(w, bits) if group is None else weight_terms(w, group, group_terms, bits)
            x_codes = hese_encode(x, bits)
            if data_terms is not None:
                x_codes = x_codes.mask(torch.arange(x_codes.signs.shape[-1]) < data_terms)
            w_counts, x_counts = w_codes.counts(), x_codes.counts()
            totals["macs"] += vectors.shape[0] * w.shape[0] * w.shape[1]
            totals["pairs"] += term_pairs(w_counts, x_counts)
            # A serial TQ multiplier spends max(1, pairs) clocks on every MAC (N x F x K).
            per_mac = x_counts.numpy()[:, None, :] * w_counts.numpy()[None, :, :]
            totals["serial_clocks"] += int(np.maximum(per_mac, 1).sum())
            totals["most"] = max(totals["most"], int(w_counts.max()))
            return reference_layer(w_codes.values().numpy(), x_codes.values().numpy(), 64)

        logits = int_model.run_with(layer, int_model.quantize_input(split.x_test))
        return dict(accuracy=float((logits.argmax(axis=1) == labels).mean()),
                    pairs=totals["pairs"] / totals["macs"],
                    serial_clocks=totals["serial_clocks"] / totals["macs"], most=totals["most"])

    results = {"float": evaluate(model, split), "int8": run(8), "int4": run(4)}
    for group, per_weight, d in budgets:
        results[(group, per_weight, d)] = run(8, group, round(per_weight * group), d)
    return results


DIGITS_BUDGETS = [
    # (group g, weight terms per weight on average, data terms per activation)
    (1, 1, 1), (1, 1, 2), (1, 2, 2), (1, 2, 3), (1, 3, 3),
    (8, 1.0, 2), (8, 1.5, 2), (8, 1.75, 2), (8, 1.75, 3), (8, 2.0, 3),
]


def mean_over_seeds(per_seed):
    """Average every number of the per-seed result dicts ("most" takes the maximum)."""
    out = {}
    for key, first in per_seed[0].items():
        if isinstance(first, dict):
            out[key] = {k: (max if k == "most" else np.mean)([r[key][k] for r in per_seed]) for k in first}
        else:
            out[key] = float(np.mean([r[key] for r in per_seed]))
    return out


def digits_rows(results):
    int8 = results["int8"]
    budget8 = 8 * 8
    rows = [["float32", "-", "-", f"{100 * results['float']:.2f}", "-", "-", "-", "-", "-"]]

    def row(name, weights, data, r, budget):
        return [name, weights, data, f"{100 * r['accuracy']:.2f}", f"{budget:g}", f"{budget8 / budget:.1f}x",
                f"{r['pairs']:.2f}", f"{int8['pairs'] / r['pairs']:.1f}x", f"{r['serial_clocks']:.2f}"]

    for name, bits in (("uniform int8", 8), ("uniform int4", 4)):
        rows.append(row(name, f"{bits} bits", f"{bits} bits", results[name.split()[-1]], bits * bits))
    for key in DIGITS_BUDGETS:
        group, per_weight, d = key
        r = results[key]
        if group == 1:
            weights = f"{per_weight:g} per weight"
        else:
            weights = f"{round(per_weight * group)} per {group} ({per_weight:g}/weight, max {r['most']})"
        rows.append(row(f"TQ g={group}", weights, d, r, per_weight * d))
    return rows


DIGITS_HEADERS = ["quantization", "weight terms", "data terms", "accuracy %", "budget pairs / MAC",
                  "vs int8", "measured pairs / MAC", "vs int8", "serial clocks / MAC"]


FPGA_HEADERS = ["design", "device", "LUTs", "FFs", "DSPs", "Fmax MHz", "clocks / MAC"]


def budget_label(key):
    if key in ("int8", "int4"):
        return key
    group, per_weight, d = key
    return f"g={group} w={per_weight:g} d={d}"


def plot_pairs(results, directory):
    """Accuracy against term pairs per MAC: the budget (the bound the hardware is sized for) and
    the pairs measured on the data, one point per quantization."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    keys = ["int8", "int4", *DIGITS_BUDGETS]
    budget = lambda k: {"int8": 64, "int4": 16}.get(k) or k[1] * k[2]  # noqa: E731
    for series, x, marker, color in (("budget pairs / MAC (the bound)", budget, "o", "tab:blue"),
                                      ("measured pairs / MAC (on the data)",
                                       lambda k: results[k]["pairs"], "^", "tab:orange")):
        xs, ys = [x(k) for k in keys], [100 * results[k]["accuracy"] for k in keys]
        ax.plot(xs, ys, linestyle="none", marker=marker, color=color, label=series)
        if marker == "o":   # the measured point of a quantization sits at the same accuracy, to the left
            for k, xv, yv in zip(keys, xs, ys):
                ax.annotate(budget_label(k), (xv, yv), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axhline(100 * results["float"], color="black", linewidth=0.8, linestyle="--")
    ax.annotate("float32", (0.01, 100 * results["float"]), xycoords=("axes fraction", "data"), fontsize=7,
                va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("term pairs per dense MAC (log scale)")
    ax.set_ylabel("accuracy on 450 test images (%)")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return report.save_figure(fig, directory, "tq_pairs_accuracy.png")


def write_docs(directory, argv, seeds, digits, fpga, cells=None, arrays=None):
    """Write tq.md (and tq_pairs_accuracy.png when the digits table ran) into `directory`.
    `digits` = (seconds, results) or None; `fpga`, `cells` = (seconds, rows) or None."""
    paths, sections = [], []
    if cells:
        seconds, rows = cells
        sections.append(f"""## One array cell on the FPGAs

One cell of the array as `python -m gen --mac ...` builds it ({seconds:.0f} s; hdl/macs.py
`MAC_HARDWARE[mac].cell`: hdl/cell.py's `ColumnCombiningCell` with the MAC style's operand, weight
and product, or hdl/tq_serial.py's `TermSerialCell`), 8-bit signed
operands, a 32-bit partial sum, every input from a flip-flop (as in the array), at α = 1 (dense)
and α = 8 (an 8-way operand multiplexer in the cell). LUT4 are the cell module's own, counted with
the hierarchy kept (`synth_* -noflatten`): iCE40 SB_LUT4, ECP5 LUT4 + 2 × CCU2C. No DSP blocks; the
int8 product is a radix-4 Booth multiplier whose partial sums are two-operand adders on carry
chains (hdl/booth.py). Every cell has the array's default two product stages (`--multiplier
pipelined`: the int8 cell's Booth rows, then their sum; the TQ cells' shifted terms, then their
sum) except *int8 one-stage product* (`--multiplier parallel`) and the term-serial cells (one
stage: the pair's sign, exponent and decoded low exponent bits). "vs int8" is the LUT4 ratio to
the int8 cell of the same device and α. Wires named like one bit of another (`x[3]`) get private
names before synthesis (`rename -hide`, as fpga/build.py does when ABC9 crashes: Yosys 0.70's
ABC9 crashes on the term-serial cell without them). Fmax: nextpnr on the cell alone between
registers (iCE40UP5K-SG48, ECP5-85F CABGA381, {TARGET_MHZ} MHz target, seed 1).

- *TQ shift-add W×D*: the `--mac tq` cell: the array's edge truncates each activation to its D
  largest HESE terms and passes its magnitude and sign; the cell shifts it by each of the W weight
  terms' exponents and adds (hdl/tq.py `ShiftAddMultiply`).
- *TQ term pairs 2x3 (before)*: the `--mac tq` cell this replaced, a sum over all W × D term pairs
  of ±2^(e_w + e_x) on HESE term lists (hdl/tq.py `TermPairMultiply`).
- *TQ term-serial W×D*: the `--mac tq-serial` cell (hdl/tq_serial.py), the TQ paper's tMAC: one
  term pair ±2^(e_w + e_x) per clock into the partial sum; the array's edge presents one data term
  of each activation per clock and a vector takes W × D clocks (a MAC: W × D clocks).

Throughput per LUT4 = Fmax × (per clock) / LUT4. *MACs / clock*: one product per clock for every
cell but the term-serial one. *Term pairs / clock*: W × D for the TQ cells, one for the term-serial
cell, and 64 for int8 by the TQ paper's accounting (an 8-bit × 8-bit MAC is 8 × 8 pairs, as the
digits table's budget pairs): by that count int8 does far more work per clock, by MACs the cells do
the same (a TQ MAC being the approximate one the digits table measures).

{report.markdown_table(CELL_HEADERS, rows)}
""")
    else:
        sections.append("## One array cell on the FPGAs\n\nNot run for this page (`--no-cells`): "
                        "`python benchmarks/tq.py --no-fpga --no-digits --docs` runs it (28 Yosys + nextpnr "
                        "runs, about 3 minutes).")
    if arrays:
        seconds, rows = arrays
        sections.append(f"""## Whole arrays on the iCE40

A 4x4 α = 8 array of each MAC style as `python -m gen` builds it (hdl/systolic.py: edge, skew
lines, weight loading, cells, accumulator, result FIFO), flattened through Yosys `synth_ice40`
({seconds:.0f} s; no place and route). What the cell table leaves out is the edge, once per
activation (C · α of them) and shared by the R rows: the TQ edge truncates each activation, the
term-serial edge holds it and encodes one HESE term per clock. On a 4-row array that is a large
share; on taller arrays it spreads over more cells.

{report.markdown_table(ARRAY_HEADERS, rows)}
""")
    else:
        sections.append("## Whole arrays on the iCE40\n\nNot run for this page (`--no-arrays`): "
                        "`python benchmarks/tq.py --docs` runs it (3 Yosys runs, about 4 minutes).")
    if digits:
        seconds, results = digits
        paths.append(plot_pairs(results, directory))
        sections.append(f"""## Term pairs and accuracy on the digits MLP

Digits MLP, 450 test images, mean of seeds {' '.join(map(str, seeds))} ({seconds:.0f} s); post-training
term quantization of the front-end's int8 model (per-channel power-of-two weights, unsigned 8-bit
activations). g = group of weights sharing a budget ("max" = most terms one weight keeps, i.e. the
weight slots a TQ multiplier needs). *Budget pairs*: weight terms × data terms allowed (b × b for a
uniform b-bit MAC, what a bit-serial multiplier spends); *measured pairs*: the HESE terms of the
actual values (untruncated for the uniform rows); *serial clocks*: what the serial TQ multiplier
spends, max(1, pairs) per MAC. All per dense MAC (N·F·K); see [term pairs](../results.md#term-pairs).

{report.markdown_table(DIGITS_HEADERS, digits_rows(results))}

![accuracy against term pairs per MAC](tq_pairs_accuracy.png)
""")
    else:
        sections.append("## Term pairs and accuracy on the digits MLP\n\nNot run for this page (`--no-digits`).")
    if fpga:
        seconds, rows = fpga
        sections.append(f"""## One multiply-accumulator on the FPGAs

8-bit signed operands, 32-bit accumulator, out of context ({seconds:.0f} s): every operand bit is
driven from a shift register and the accumulator is XOR-reduced to one pin (the same harness in
every row), Yosys `synth_ice40` / `synth_ecp5` and nextpnr (iCE40UP5K-SG48, ECP5-85F CABGA381) from
the YoWASP wheels at a {TARGET_MHZ} MHz target; Fmax is what nextpnr achieved. LUTs: iCE40 LUT4s
(Yosys), ECP5 TRELLIS_COMB (nextpnr).

{report.markdown_table(FPGA_HEADERS, rows)}
""")
    else:
        sections.append("## One multiply-accumulator on the FPGAs\n\nNot run for this page (`--no-fpga`): "
                        "`python benchmarks/tq.py --docs` runs it (12 Yosys + nextpnr runs, about 2 minutes "
                        "once the YoWASP tools are compiled).")
    body = "What term quantization is and how the hardware uses it: [Term quantization](../tq.md).\n\n"
    body += "\n\n".join(sections)
    paths.insert(0, report.write_page(directory, "tq.md", "Results: term quantization",
                                      report.command("tq.py", argv), body))
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-cells", action="store_true", help="skip the array-cell table (Yosys + nextpnr)")
    p.add_argument("--no-fpga", action="store_true", help="skip the multiplier table (Yosys + nextpnr)")
    p.add_argument("--no-digits", action="store_true", help="skip the digits accuracy table")
    p.add_argument("--no-arrays", action="store_true", help="skip the whole-array table (3 Yosys runs, ~4 min)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="digits models to train and average over (default 0 1 2)")
    p.add_argument("--epochs", type=int, default=30, help="digits training epochs (default 30)")
    p.add_argument("--tq", default="2x3,1x2",
                   help="TQ multipliers of the FPGA table as WxD budgets, comma separated (default 2x3,1x2)")
    report.docs_argument(p, "tq.md")
    args = p.parse_args(argv)
    digits = fpga = cells = arrays = None
    if not args.no_cells:
        print("One array cell (8-bit signed operands, 32-bit partial sum, registered inputs), Yosys "
              f"-noflatten for the cell's LUT4, nextpnr at a {TARGET_MHZ} MHz target for Fmax\n", flush=True)
        start = time.perf_counter()
        rows = cell_rows()
        cells = (time.perf_counter() - start, rows)
        table(CELL_HEADERS, rows)
    if not args.no_arrays:
        print("Whole 4x4 alpha-8 arrays, Yosys synth_ice40 (flattened)\n", flush=True)
        start = time.perf_counter()
        rows = array_rows()
        arrays = (time.perf_counter() - start, rows)
        table(ARRAY_HEADERS, rows)
    if not args.no_digits:
        start = time.perf_counter()
        results = mean_over_seeds([digits_results(seed, args.epochs, DIGITS_BUDGETS) for seed in args.seeds])
        digits = (time.perf_counter() - start, results)
        print(f"Digits MLP, 450 test images, mean of seeds {' '.join(map(str, args.seeds))}; post-training "
              f"term quantization ({digits[0]:.0f} s)\n")
        table(DIGITS_HEADERS, digits_rows(results))
    if not args.no_fpga:
        budgets = [tuple(int(v) for v in b.split("x")) for b in args.tq.split(",")]
        print(f"One multiply-accumulator (8-bit signed operands, 32-bit accumulator) out of context, "
              f"Yosys + nextpnr at a {TARGET_MHZ} MHz target\n", flush=True)
        start = time.perf_counter()
        rows = fpga_rows(budgets)
        fpga = (time.perf_counter() - start, rows)
        table(FPGA_HEADERS, rows)
    if args.docs:
        argv = sys.argv[1:] if argv is None else argv
        for path in write_docs(args.docs, argv, args.seeds, digits, fpga, cells, arrays):
            print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
