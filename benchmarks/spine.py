"""Numbers for the column-combining array: generation time, Verilator speed, and a sparse layer's
tiles, cycles and utilization dense vs column-combined. Prints tables; asserts nothing.

    python benchmarks/spine.py            # everything (a few minutes: two Verilator builds)
    python benchmarks/spine.py --quick    # layer table only (cycle model, no Verilator)
    python benchmarks/spine.py --docs     # also write docs/results/array.md and its plot
"""

import argparse
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from software.packing.colcomb import combine, dense_grouping, pack            # noqa: E402
from spec import ArrayConfig                                 # noqa: E402
from software.golden.cycles import layer_cost                                  # noqa: E402
from software.packing.schedule import schedule_layer                            # noqa: E402

import report                                                           # noqa: E402


def gen(args, out):
    """Run `python -m gen ARGS -o OUT`; returns (wall seconds, CPU seconds). The CPU time (user +
    system of the process) is what the machine's load does not inflate."""
    start, used = time.perf_counter(), children_cpu()
    subprocess.run([sys.executable, "-m", "gen", *args, "-o", str(out)], check=True, cwd=ROOT,
                   capture_output=True)
    return time.perf_counter() - start, children_cpu() - used


def children_cpu():
    """CPU seconds (user + system) of this process's finished child processes and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def verilog_size(out):
    """(kB, modules) of the Verilog that gen wrote into `out`."""
    (path,) = pathlib.Path(out).glob("*.v")
    text = path.read_text()
    return len(text.encode()) / 1000, sum(line.startswith("module ") for line in text.splitlines())


def sparse_layer(rng, out_features, in_features, sparsity):
    w = rng.integers(-127, 128, size=(out_features, in_features))
    w[rng.random(w.shape) < sparsity] = 0
    return w


def layer_table(batch, rtl):
    """Print the dense vs column-combined table of one sparse layer; return it as page lines."""
    rng = np.random.default_rng(0)
    w = sparse_layer(rng, 256, 1024, 0.9)
    x = rng.integers(-128, 128, size=(batch, 1024))
    dense_cfg = ArrayConfig(rows=32, cols=32, alpha=1)
    cc_cfg = ArrayConfig(rows=32, cols=32, alpha=8)
    start = time.perf_counter()
    cc = combine(w, alpha=8, gamma=0.5)
    pack_seconds = time.perf_counter() - start
    dense = pack(w, dense_grouping(1024), 1)
    rows = []
    for name, cfg, layer in (("dense", dense_cfg, dense), ("colcomb a8 g0.5", cc_cfg, cc)):
        sched = schedule_layer(cfg, layer, x)
        cost = layer_cost(sched)
        rows.append([name, layer.packed.shape[1], cost.tiles, cost.cycles,
                     int(np.count_nonzero(layer.packed)), f"{cost.utilization:.3f}"])
    heading = (f"F=256, K=1024, 90% unstructured sparsity ({np.count_nonzero(w)} nonzeros), 32x32 array, "
               f"batch {batch} vectors per tile; colcomb packing took {pack_seconds:.1f} s")
    headers = ["mapping", "groups", "tiles", "cycles", "MACs kept/vector", "utilization"]
    print(heading)
    report.print_table(headers, rows)
    kept = np.count_nonzero(cc.packed) / np.count_nonzero(w)
    summary = (f"column combining keeps {kept:.1%} of the nonzeros (conflict pruning with gamma 0.5); "
               f"tiles {rows[0][2] / rows[1][2]:.1f}x fewer, cycles {rows[0][3] / rows[1][3]:.1f}x fewer")
    print(summary + "\n")
    lines = [heading + ".", "", report.markdown_table(headers, rows), "", summary[0].upper() + summary[1:] + "."]
    if rtl:
        from sim.array import run_schedule
        from sim.runner import build
        with tempfile.TemporaryDirectory() as tmp:
            gen(["--rows", "32", "--sparsity", "colcomb"], pathlib.Path(tmp) / "g")
            built = build(pathlib.Path(tmp) / "g", pathlib.Path(tmp) / "b")
            sched = schedule_layer(cc_cfg, cc, x)
            out, run = run_schedule(built, sched, name="layer")
            outcome = (f"RTL run of the colcomb layer: {run.cycles} cycles (cycle model "
                       f"{layer_cost(sched).cycles}), outputs bit-exact with the golden model")
            print(outcome + "\n")
            lines += ["", outcome + "."]
    return lines


def verilator_table(optimize):
    """Print generation and Verilator speed; return them as page lines."""
    from sim.array import run_schedule
    from sim.runner import build
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for size in (8, 32):
            gdir = tmp / f"g{size}"
            gen_wall, gen_cpu = gen(["--rows", str(size), "--sparsity", "colcomb"], gdir)
            used = children_cpu()
            built = build(gdir, tmp / "b", always=True, optimize=optimize)
            build_cpu = children_cpu() - used
            cfg = built.config
            rng = np.random.default_rng(1)
            w = sparse_layer(rng, size * 2, size * 8 * 3, 0.8)
            x = rng.integers(-128, 128, size=(64, w.shape[1]))
            sched = schedule_layer(cfg, combine(w, 8, 0.5), x)
            _, run = run_schedule(built, sched, name="speed")
            kilobytes, modules = verilog_size(gdir)
            rows.append([f"{size}x{size} a8", f"{gen_wall:.1f}", f"{gen_cpu:.1f}", f"{kilobytes:,.0f}", modules,
                         f"{built.seconds:.1f}", f"{build_cpu:.1f}", run.total_cycles, f"{run.cycles_per_second:,.0f}"])
    level = "-O2" if optimize else "-O0 (as the tests build)"
    heading = f"Verilator, C++ at {level}; cocotb testbench, one coroutine driving 3 streams"
    headers = ["array", "gen s", "gen CPU s", "Verilog kB", "modules", "verilator build s", "build CPU s", "cycles simulated",
               "cycles/s"]
    print(heading)
    report.print_table(headers, rows)
    return [heading + ".", "", report.markdown_table(headers, rows)]


SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)
SWEEP_ALPHAS = (1, 4, 8)


def sparsity_sweep(batch):
    """Cycles and utilization of an F=256, K=1024 layer at several sparsities, on 32x32 arrays with
    alpha 1 (dense), 4 and 8 (gamma 0.5). Returns {alpha: [(sparsity, cycles, utilization, fraction
    of the nonzero weights kept)]}."""
    rng = np.random.default_rng(0)
    out = {alpha: [] for alpha in SWEEP_ALPHAS}
    for sparsity in SPARSITIES:
        w = sparse_layer(rng, 256, 1024, sparsity)
        x = rng.integers(-128, 128, size=(batch, 1024))
        for alpha in SWEEP_ALPHAS:
            layer = pack(w, dense_grouping(1024), 1) if alpha == 1 else combine(w, alpha=alpha, gamma=0.5)
            cost = layer_cost(schedule_layer(ArrayConfig(rows=32, cols=32, alpha=alpha), layer, x))
            kept = np.count_nonzero(layer.packed) / np.count_nonzero(w)
            out[alpha].append((float(1 - np.count_nonzero(w) / w.size), cost.cycles, cost.utilization, kept))
    return out


def write_docs(directory, argv, sections, sweep, batch):
    plt = report.pyplot()
    fig, (ax, ax_u) = plt.subplots(1, 2, figsize=(10, 3.8))
    for alpha, points in sweep.items():
        label = "dense (α=1)" if alpha == 1 else f"column combining α={alpha}, γ=0.5"
        ax.plot([100 * p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax_u.plot([100 * p[0] for p in points], [p[2] for p in points], marker="o", label=label)
    ax.set_ylabel("cycles (cycle model = RTL)")
    ax.set_yscale("log")
    ax_u.set_ylabel("array utilization")
    for a in (ax, ax_u):
        a.set_xlabel("sparsity of the layer's weights (%)")
        a.grid(True, which="both", linewidth=0.3)
        a.legend(fontsize=7)
    plot = report.save_figure(fig, directory, "array_cycles_sparsity.png")
    combined = [a for a in sweep if a > 1]
    headers = (["sparsity"] + [f"cycles α={a}" for a in sweep] + [f"utilization α={a}" for a in sweep]
               + [f"nonzeros kept α={a}" for a in combined])
    rows = [[f"{100 * sweep[SWEEP_ALPHAS[0]][i][0]:.1f}%"] + [sweep[a][i][1] for a in sweep]
            + [f"{sweep[a][i][2]:.3f}" for a in sweep] + [f"{sweep[a][i][3]:.1%}" for a in combined]
            for i in range(len(SPARSITIES))]
    body = f"""
The column-combining array on a random sparse layer (F = 256 output channels, K = 1024 inputs,
int8 weights zeroed at random), from the cycle model, which tests/sim asserts equal to the RTL's
cycle count. How the array works: [The array](../array.md); utilization is
[array utilization](../results.md#array-utilization).

## One layer, dense against column combining

{sections[0]}

## Cycles against sparsity

The same layer shape at several sparsities, {batch} vectors, 32x32 arrays; column combining with
γ = 0.5, whose conflict pruning drops weights: the last columns say how many of the nonzero
weights survive (on a trained network, retraining with the masks recovers the accuracy; see
[Front-end](../frontend.md#pruning)). Where few weights are kept, the saving in cycles is paid
for in weights: column combining is meant for layers that are already sparse.

{report.markdown_table(headers, rows)}

![cycles and utilization against sparsity](array_cycles_sparsity.png)

## Generation and simulation speed

""" + "\n".join(sections[1]) + "\n\nTimes are wall-clock on the machine that wrote this page, and vary with its load; CPU seconds vary\nless."
    page = report.write_page(directory, "array.md", "Results: the column-combining array",
                             report.command("spine.py", argv), body)
    return page, plot


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip Verilator")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--optimize", action="store_true", help="compile the verilated model at -O2")
    report.docs_argument(ap, "array.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [gen(["--rows", "32", "--sparsity", "colcomb"], pathlib.Path(tmp) / "o") for _ in range(3)]
        kilobytes, modules = verilog_size(pathlib.Path(tmp) / "o")
    timing = (f"python -m gen --rows 32 --sparsity colcomb: {min(wall for wall, _ in runs):.1f} s wall, "
              f"{min(cpu for _, cpu in runs):.1f} s of CPU (best of 3), {kilobytes:,.0f} kB of Verilog in "
              f"{modules} modules")
    print(timing + "\n")
    sections = ["\n".join(layer_table(args.batch, rtl=not args.quick)), ["`" + timing.replace(":", "`:", 1) + "."]]
    if args.quick:
        sections[1] += ["", "The Verilator build and simulation speed were not measured for this page (`--quick`); "
                            "without it the script also builds and simulates 8x8 and 32x32 arrays (a few minutes)."]
    else:
        sections[1] += ["", *verilator_table(args.optimize)]
    if args.docs:
        argv = sys.argv[1:] if argv is None else argv
        for path in write_docs(args.docs, argv, sections, sparsity_sweep(args.batch), args.batch):
            print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
