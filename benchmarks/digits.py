"""Digits results: accuracy, sparsity, tiles, cycles, utilization and term pairs of the digits MLP
(64-128-64-10) compressed for a 32x32 array. Prints tables; asserts nothing.

    python benchmarks/digits.py                 # the table (seed 0), about 2 minutes on 2 cores
    python benchmarks/digits.py --seeds 0 1 2   # mean over seeds, and every seed's α=8 γ=0.5 row
    python benchmarks/digits.py --rtl           # also: the α=8 γ=0.5 model on all 450 test images
                                                # through the generated 32x32 array in Verilator

The result page docs/results/digits.md and its plots come from the same configurations as a sweep:
`python -m sweep examples/sweeps/digits.toml --docs` (sweep/pages.py).

Every row starts from the same dense model (trained 30 epochs) and fine-tunes 30 epochs with its
pruning schedule (software/frontend/jointopt.py), then is exported to int8 (power-of-two scales, unsigned
activations). Accuracy is on the fixed 450-image test split. Tiles are the weight tiles of one pass
over the three layers; cycles, utilization and term pairs are for the whole test split (64 vectors
per tile, layers one after the other), from the cycle model, which tests/sim asserts equal to the
RTL. "dense" rows run on a dense (α=1) 32x32 array; column combining on an α array; N:M and
tile-wise are packed losslessly (γ=0 grouping) on the α=8 array.
"""

import argparse
import dataclasses
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from software.frontend.compress import Options, compress, format_table          # noqa: E402
from software.models.digits import build_model, load_digits_split, train  # noqa: E402


def configurations(rows, cols, epochs):
    base = dict(rows=rows, cols=cols, finetune_epochs=epochs, progress=False)
    yield "float dense (int8 on α=1)", Options(method="dense", alpha=1, **base)
    for alpha in (1, 4, 8):
        for gamma in (0.0, 0.5, 1.75):
            yield f"colcomb α={alpha} γ={gamma:g}", Options(method="colcomb", alpha=alpha, gamma=gamma, **base)
    yield "N:M 2:4 (α=8, lossless)", Options(method="nm", nm=(2, 4), alpha=8, **base)
    yield "tile-wise 75% (α=8, lossless)", Options(method="tilewise", sparsity=0.75, alpha=8, **base)
    yield "TQ g=8 w=1.75 d=3 (α=1)", Options(method="dense", alpha=1, quant="tq", weight_terms=1.75,
                                             data_terms=3, **base)
    yield "TQ g=8 w=1 d=2 (α=1)", Options(method="dense", alpha=1, quant="tq", weight_terms=1.0,
                                          data_terms=2, **base)


def run_seed(seed, args):
    dense = build_model(seed=seed)
    train(dense, epochs=args.epochs, seed=seed, progress=False)
    results = {}
    for name, opts in configurations(args.rows, args.cols, args.finetune_epochs):
        start = time.perf_counter()
        results[name] = compress(dataclasses.replace(opts, seed=seed), dense_model=dense)
        print(f"  seed {seed}: {name} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return results


def mean(values):
    return statistics.fmean(values)


def spread(values):
    return f" ±{(max(values) - min(values)) / 2:.1%}" if len(values) > 1 else ""


SUMMARY_HEADERS = ["model", "float acc", "int8 acc", "Δ vs dense", "sparsity", "tiles", "cycles", "utilization",
                   "term pairs"]
SEED_HEADERS = ["seed", "dense float", "pruned float", "int8", "Δ", "tiles dense/packed", "cycles",
                "groups per layer"]
TARGET = "colcomb α=8 γ=0.5"


def summary_rows(per_seed, names):
    """One row per configuration: the mean over seeds (± half the range) of every column."""
    dense_float = [r[names[0]].accuracy["float_dense"] for r in per_seed]
    rows = []
    for name in names:
        rs = [r[name] for r in per_seed]
        floats = [r.accuracy["pruned_float"] for r in rs]
        ints = [r.accuracy["integer"] for r in rs]
        delta = [i - d for i, d in zip(ints, dense_float)]
        rows.append([name, f"{mean(floats):.2%}{spread(floats)}", f"{mean(ints):.2%}{spread(ints)}",
                     f"{mean(delta) * 100:+.2f} pt", f"{mean([r.sparsity for r in rs]):.1%}",
                     f"{mean([r.packed.tiles for r in rs]):g}", f"{mean([r.packed.cycles for r in rs]):.0f}",
                     f"{mean([r.packed.utilization for r in rs]):.3f}",
                     f"{mean([r.term_pairs for r in rs]) / 1e6:.2f} M"])
    return rows


def target_rows(per_seed, seeds, names):
    """The α=8 γ=0.5 configuration seed by seed, against the dense model of the same seed."""
    rows = []
    for seed, r in zip(seeds, per_seed):
        t, d = r[TARGET], r[names[0]]
        groups = ", ".join(str(l.groups) for l in t.int_model.layers)
        rows.append([seed, f"{t.accuracy['float_dense']:.2%}", f"{t.accuracy['pruned_float']:.2%}",
                     f"{t.accuracy['integer']:.2%}",
                     f"{(t.accuracy['integer'] - t.accuracy['float_dense']) * 100:+.2f} pt",
                     f"{d.packed.tiles}/{t.packed.tiles} = {d.packed.tiles / t.packed.tiles:.2f}x",
                     f"{d.packed.cycles / t.packed.cycles:.2f}x", groups])
    return rows


def verdict(per_seed, names):
    loss = mean([(r[TARGET].accuracy["float_dense"] - r[TARGET].accuracy["integer"]) * 100 for r in per_seed])
    reduction = mean([r[names[0]].packed.tiles / r[TARGET].packed.tiles for r in per_seed])
    result = "met" if loss <= 1.0 and reduction >= 2.5 else "MISSED"
    return (f"target (at most 1 point lost, at least 2.5x fewer tiles): {loss:.2f} points lost, "
            f"{reduction:.2f}x fewer tiles -> {result}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=30, help="dense training epochs (default 30)")
    parser.add_argument("--finetune-epochs", type=int, default=30, help="fine-tuning with pruning (default 30)")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--cols", type=int, default=None)
    parser.add_argument("--rtl", action="store_true",
                        help="run the α=8 γ=0.5 model (first seed) on the whole test split in Verilator")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    per_seed = [run_seed(seed, args) for seed in args.seeds]
    names = list(per_seed[0])
    rows = summary_rows(per_seed, names)
    first = per_seed[0][names[0]]
    title = (f"digits MLP 64-128-64-10, {args.rows}x{args.cols or args.rows} array, {first.test_images} test "
             f"images, seeds {' '.join(map(str, args.seeds))} "
             f"(mean{' ± half range' if len(args.seeds) > 1 else ''}); "
             f"dense training {args.epochs} epochs, fine-tuning {args.finetune_epochs} epochs")
    print(title + "\n")
    print(format_table(SUMMARY_HEADERS, rows))
    seed_rows = target_rows(per_seed, args.seeds, names)
    print(f"\n{TARGET}, per seed:")
    print(format_table(SEED_HEADERS, seed_rows))
    print("\n" + verdict(per_seed, names))
    if args.rtl:
        rtl(per_seed[0][TARGET])
    print(f"\n{(time.perf_counter() - start) / 60:.1f} minutes")


def rtl(result):
    """Run the model through the generated array in Verilator and print what it did."""
    from sim.model import build_array, run_model
    int_model = result.int_model
    split = load_digits_split()
    x_int = int_model.quantize_input(split.x_test)
    labels = split.y_test.numpy()
    start = time.perf_counter()
    built = build_array(int_model.config)
    ready = f"array {int_model.config.design_name} ready in {time.perf_counter() - start:.0f} s"
    print(f"\nRTL: {ready}")
    golden = int_model.run_golden(x_int)
    start = time.perf_counter()
    logits, runs = run_model(int_model, x_int, built, name="digits_benchmark")
    seconds = time.perf_counter() - start
    headers = ["layer", "vectors", "tiles", "RTL cycles", "cycle model"]
    layers = [[r.name, r.vectors, r.tiles, r.cycles, r.model_cycles] for r in runs]
    outcome = (f"RTL accuracy {(logits.argmax(1) == labels).mean():.2%} on {len(labels)} test images "
               f"(golden integer model {(golden.argmax(1) == labels).mean():.2%}); logits "
               f"{'identical to' if np.array_equal(logits, golden) else 'DIFFERENT from'} the golden model's; "
               f"{sum(r.cycles for r in runs)} RTL cycles; {seconds:.0f} s in Verilator")
    print(format_table(headers, layers))
    print(outcome)


if __name__ == "__main__":
    main()
