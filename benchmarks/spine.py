"""Numbers for the column-combining array: generation time, Verilator speed, and a sparse layer's
tiles, cycles and utilization dense vs column-combined. Prints tables; asserts nothing.

    python benchmarks/spine.py            # everything (a few minutes: two Verilator builds)
    python benchmarks/spine.py --quick    # layer table only (cycle model, no Verilator)
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from software.colcomb import combine, dense_grouping, pack            # noqa: E402
from spec import ArrayConfig                                 # noqa: E402
from software.cycles import layer_cost                                  # noqa: E402
from software.schedule import schedule_layer                            # noqa: E402


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))
    print(line(headers))
    print(line("-" * w for w in widths))
    for r in rows:
        print(line(r))
    print()


def gen(args, out):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gen", *args, "-o", str(out)], check=True, cwd=ROOT,
                   capture_output=True)
    return time.perf_counter() - start


def sparse_layer(rng, out_features, in_features, sparsity):
    w = rng.integers(-127, 128, size=(out_features, in_features))
    w[rng.random(w.shape) < sparsity] = 0
    return w


def layer_table(batch, rtl):
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
    print(f"F=256, K=1024, 90% unstructured sparsity ({np.count_nonzero(w)} nonzeros), 32x32 array, "
          f"batch {batch} vectors per tile; colcomb packing took {pack_seconds:.1f} s")
    table(["mapping", "groups", "tiles", "cycles", "MACs kept/vector", "utilization"], rows)
    kept = np.count_nonzero(cc.packed) / np.count_nonzero(w)
    print(f"column combining keeps {kept:.1%} of the nonzeros (conflict pruning with gamma 0.5); "
          f"tiles {rows[0][2] / rows[1][2]:.1f}x fewer, cycles {rows[0][3] / rows[1][3]:.1f}x fewer\n")
    if rtl:
        from sim.array import run_schedule
        from sim.runner import build
        with tempfile.TemporaryDirectory() as tmp:
            gen(["--rows", "32", "--sparsity", "colcomb"], pathlib.Path(tmp) / "g")
            built = build(pathlib.Path(tmp) / "g", pathlib.Path(tmp) / "b")
            sched = schedule_layer(cc_cfg, cc, x)
            out, run = run_schedule(built, sched, name="layer")
            print(f"RTL run of the colcomb layer: {run.cycles} cycles (cycle model "
                  f"{layer_cost(sched).cycles}), outputs bit-exact with the golden model\n")


def verilator_table(optimize):
    from sim.array import run_schedule
    from sim.runner import build
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for size in (8, 32):
            gdir = tmp / f"g{size}"
            gen_s = gen(["--rows", str(size), "--sparsity", "colcomb"], gdir)
            built = build(gdir, tmp / "b", always=True, optimize=optimize)
            cfg = built.config
            rng = np.random.default_rng(1)
            w = sparse_layer(rng, size * 2, size * 8 * 3, 0.8)
            x = rng.integers(-128, 128, size=(64, w.shape[1]))
            sched = schedule_layer(cfg, combine(w, 8, 0.5), x)
            _, run = run_schedule(built, sched, name="speed")
            rows.append([f"{size}x{size} a8", f"{gen_s:.1f}", f"{built.seconds:.1f}", run.total_cycles,
                         f"{run.cycles_per_second:,.0f}"])
    level = "-O2" if optimize else "-O0 (as the tests build)"
    print(f"Verilator, C++ at {level}; cocotb testbench, one coroutine driving 3 streams")
    table(["array", "gen s", "verilator build s", "cycles simulated", "cycles/s"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip Verilator")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--optimize", action="store_true", help="compile the verilated model at -O2")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seconds = [gen(["--rows", "32", "--sparsity", "colcomb"], pathlib.Path(tmp) / "o") for _ in range(2)]
    print(f"python -m gen --rows 32 --sparsity colcomb: {min(seconds):.1f} s wall (best of 2)\n")
    layer_table(args.batch, rtl=not args.quick)
    if not args.quick:
        verilator_table(args.optimize)


if __name__ == "__main__":
    main()
