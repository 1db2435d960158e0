"""Result pages written from a sweep's results table: the registry PAGES (a sweep file's ``page``).

``digits``: docs/results/digits.md, the digits MLP's table (mean ± half range over the seeds of
every configuration), the column-combining target seed by seed, the RTL check, and two plots --
the page benchmarks/digits.py wrote before, computed here from the rows of examples/sweeps/digits.toml.
"""
from __future__ import annotations

import io
import os
import pathlib
import shlex
import statistics

from software.output_set import write_atomically

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS_RESULTS = ROOT / "docs" / "results"
DOCS_RESULTS_NAME = "docs/results"


def markdown_table(headers, rows):
    cell = lambda value: str(value).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])


def _mean(values):
    return statistics.fmean(values)


def _spread(values):
    return f" ±{(max(values) - min(values)) / 2:.1%}" if len(values) > 1 else ""


def _save_png(fig, path):
    """As benchmarks/report.py saves its plots: a 256-colour palette, a third of the bytes (they sit in git)."""
    from PIL import Image
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    buffer.seek(0)
    quantized = io.BytesIO()
    Image.open(buffer).convert("RGB").quantize(colors=256).save(quantized, format="PNG", optimize=True)
    write_atomically(path, quantized.getvalue())
    return str(path)


# ----------------------------------------------------------------------------------------------
# digits

DIGITS_TARGET = "colcomb α=8 γ=0.5"
DIGITS_SUMMARY = ["model", "float acc", "int8 acc", "Δ vs dense", "sparsity", "tiles", "cycles", "utilization",
                  "term pairs"]
DIGITS_SEED = ["seed", "dense float", "pruned float", "int8", "Δ", "tiles dense/packed", "cycles",
               "groups per layer"]


def _by_label(rows):
    groups = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    return groups


def digits_tables(rows):
    """(summary rows, target rows, verdict line) from the sweep's ok rows."""
    ok = [r for r in rows if r["status"] == "ok"]
    groups = _by_label(ok)
    summary = []
    for label, rs in groups.items():
        floats = [r["pruned_float_accuracy"] for r in rs]
        ints = [r["int_accuracy"] for r in rs]
        delta = [r["int_accuracy"] - r["float_dense_accuracy"] for r in rs]
        summary.append([label, f"{_mean(floats):.2%}{_spread(floats)}", f"{_mean(ints):.2%}{_spread(ints)}",
                        f"{_mean(delta) * 100:+.2f} pt", f"{_mean([r['weight_sparsity'] for r in rs]):.1%}",
                        f"{_mean([r['tiles'] for r in rs]):g}", f"{_mean([r['cycles'] for r in rs]):.0f}",
                        f"{_mean([r['utilization'] for r in rs]):.3f}",
                        f"{_mean([r['term_pairs'] for r in rs]) / 1e6:.2f} M"])
    target = sorted(groups.get(DIGITS_TARGET, []), key=lambda r: r["seed"])
    seed_rows = [[r["seed"], f"{r['float_dense_accuracy']:.2%}", f"{r['pruned_float_accuracy']:.2%}",
                  f"{r['int_accuracy']:.2%}", f"{(r['int_accuracy'] - r['float_dense_accuracy']) * 100:+.2f} pt",
                  f"{r['dense_tiles']}/{r['tiles']} = {r['dense_tiles'] / r['tiles']:.2f}x",
                  f"{r['dense_cycles'] / r['cycles']:.2f}x", r["groups"]] for r in target]
    if target:
        loss = _mean([(r["float_dense_accuracy"] - r["int_accuracy"]) * 100 for r in target])
        reduction = _mean([r["dense_tiles"] / r["tiles"] for r in target])
        verdict = (f"target (at most 1 point lost, at least 2.5x fewer tiles): {loss:.2f} points lost, "
                   f"{reduction:.2f}x fewer tiles -> {'met' if loss <= 1.0 and reduction >= 2.5 else 'MISSED'}")
    else:
        verdict = f"the sweep has no {DIGITS_TARGET} point: no verdict"
    return summary, seed_rows, verdict


def digits_rtl(rows):
    checked = [r for r in rows if r.get("rtl_images")]
    if not checked:
        return ("Not run by this sweep (set `rtl_images` on a point of the sweep file to run it through the "
                "generated array in Verilator).")
    headers = ["point", "seed", "images", "RTL accuracy", "RTL = golden", "RTL cycles", "cycle model"]
    table = [[r["label"], r["seed"], r["rtl_images"],
              "-" if r.get("rtl_accuracy") is None else f"{r['rtl_accuracy']:.2%}",
              {True: "identical", False: "DIFFERENT", None: r.get("error") or "-"}[r.get("rtl_logits_identical")],
              r.get("rtl_cycles", "-"), r.get("rtl_model_cycles", "-")] for r in checked]
    return ("The points with `rtl_images` set, run through the generated Verilog in Verilator (logits against the "
            "golden integer model, cycles against the cycle model):\n\n" + markdown_table(headers, table))


def digits_plots(rows, directory):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = _by_label([r for r in rows if r["status"] == "ok"])
    points = [(label, _mean([r["int_accuracy"] for r in rs]), _mean([r["tiles"] for r in rs]),
               _mean([r["cycles"] for r in rs]), _mean([r["weight_sparsity"] for r in rs]),
               _mean([r["float_dense_accuracy"] for r in rs])) for label, rs in groups.items()]
    paths = []
    for name, x, y, xlabel, ylabel, reference in (
            ("digits_accuracy_tiles.png", lambda p: p[2], lambda p: 100 * p[1],
             "weight tiles on the array (one pass)", "int8 accuracy (%)", True),
            ("digits_cycles_sparsity.png", lambda p: 100 * p[4], lambda p: p[3],
             "sparsity of the int8 weights (%)", "cycles on the array (whole test split)", False)):
        fig, ax = plt.subplots(figsize=(8.5, 4.2))
        markers, colors = "os^vD<>pPX*hd8", plt.get_cmap("tab20").colors
        for i, p in enumerate(points):
            ax.plot(x(p), y(p), linestyle="none", marker=markers[i % len(markers)], color=colors[i % len(colors)],
                    markersize=7, alpha=0.85, label=p[0])
        if reference and points:
            level = 100 * points[0][5] - 1
            ax.axhline(level, color="black", linewidth=0.8, linestyle="--")
            ax.annotate("float dense − 1 point (the target)", (0.01, level), xycoords=("axes fraction", "data"),
                        fontsize=7, va="bottom")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, linewidth=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        paths.append(_save_png(fig, pathlib.Path(directory) / name))
        plt.close(fig)
    return paths


def write_digits(plan, rows, directory, argv, seconds):
    summary, seed_rows, verdict = digits_tables(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    first = ok[0] if ok else plan.points[0].settings
    seeds = sorted({r["seed"] for r in rows})
    epochs = first.get("epochs") or 30
    array = f"{first['rows']}x{first.get('cols') or first['rows']} array"
    title = (f"digits MLP 64-128-64-10, {array}, {first.get('test_images', 450)} test images, seeds "
             f"{' '.join(map(str, seeds))} (mean{' ± half range' if len(seeds) > 1 else ''}); dense training "
             f"{epochs} epochs, fine-tuning {first['finetune_epochs']} epochs")
    failed = [r for r in rows if r["status"] != "ok"]
    failures = "".join(f"\n- {r['label']} seed {r['seed']}: failed in {r['failed_stage']}: {r['error']}" for r in failed)
    command = " ".join(["python", "-m", "sweep", *map(shlex.quote, argv)])
    page = f"""# Results: the digits MLP on the array

*Generated by `{command}` from the sweep file {plan.path}. Do not edit by hand: run that command to regenerate this page and its plots.*

{len(rows)} points ({len(failed)} failed); the sweep took {seconds / 60:.1f} minutes on the machine that wrote it.{failures}

{title}. How the front-end prunes and quantizes: [Front-end](../frontend.md). How sweeps run: [Sweeps](../sweep.md).

Every row starts from the same dense model and fine-tunes with its pruning schedule, then is
exported to int8 (power-of-two scales, unsigned activations). Accuracy is on the fixed 450-image
test split; Δ = int8 accuracy − float dense accuracy. Sparsity: zero weights of the int8 model.
Tiles: weight tiles of one pass over the 3 layers. Cycles,
[utilization](../results.md#array-utilization) and [term pairs](../results.md#term-pairs): the
whole test split, 64 vectors per tile, from the cycle model (equal to the RTL's cycle count in
tests/sim). Dense and TQ rows run on an α = 1 array, column combining on its α, N:M and tile-wise
are packed losslessly for α = 8.

{markdown_table(DIGITS_SUMMARY, summary)}

![int8 accuracy against tiles, per configuration](digits_accuracy_tiles.png)

![cycles against sparsity, per configuration](digits_cycles_sparsity.png)

## The column-combining target

The paper's LeNet-5 trade-off, at α = 8, γ = 0.5: at most 1 point of accuracy lost with at least
2.5x fewer tiles than dense. Per seed:

{markdown_table(DIGITS_SEED, seed_rows)}

{verdict}.

## Through the RTL

{digits_rtl(rows)}
"""
    os.makedirs(directory, exist_ok=True)
    path = pathlib.Path(directory) / "digits.md"
    write_atomically(path, page)
    return [str(path), *digits_plots(rows, directory)]


PAGES = {"digits": write_digits}


def write(plan, rows, directory, argv, seconds):
    """Write the plan's page into ``directory``; returns the paths written."""
    return PAGES[plan.page](plan, rows, directory, argv, seconds)
