"""Numbers for the attention unit on the pretrained MiniLM-L6 (all-MiniLM-L6-v2): error of the
unit vs float attention per head, sentence-embedding similarity with the golden unit in all 72
heads, and how similarity falls as pruning cuts cycles. Prints tables; asserts nothing.

    python benchmarks/attention.py           # the three tables (golden model + cycle model, 1-3 min)
    python benchmarks/attention.py --rtl     # also real heads through the Verilog in Verilator
    python benchmarks/attention.py --docs    # also write docs/results/attention.md and its plot

The golden model is bit-exact with the RTL and the cycle model equals the RTL's cycles (both
asserted in tests/sim/test_attention_rtl.py), so the tables use them for all 6 x 12 heads.
Q, V and K are quantized to int8 per head (Q per row, K and V per tensor) for every sentence.
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

from software.golden.attention import dense_head_cycles, float_attention, head_cycles, unit_attention  # noqa: E402
from spec.attention import AttentionConfig                                       # noqa: E402
from software.models.minilm import (HEADS, LAYERS, PASSAGES, SENTENCES, MiniLM,             # noqa: E402
                                    float_head_attention, unit_head_attention)

import report  # noqa: E402

PRUNING = [
    dict(),
    dict(prune="threshold", threshold=10),
    dict(prune="threshold", threshold=8),
    dict(prune="threshold", threshold=6),
    dict(prune="threshold", threshold=5),
    dict(prune="threshold", threshold=4),
    dict(prune="threshold", threshold=3),
    dict(prune="threshold", threshold=2),
    dict(prune="topk", top_k=16),
    dict(prune="topk", top_k=8),
    dict(prune="topk", top_k=4),
    dict(prune="both", threshold=5, top_k=8),
]


def label(fields):
    if not fields:
        return "none"
    return ", ".join(f"{k}={v}" for k, v in fields.items() if k != "prune") or fields["prune"]


def per_head_error(model, config, texts):
    """Relative error ||unit - float|| / ||float|| of each head's output on the float model's own
    Q, K, V, accumulated over `texts`."""
    err, ref = np.zeros((LAYERS, HEADS)), np.zeros((LAYERS, HEADS))
    worst = np.zeros((LAYERS, HEADS))

    def measure(layer, head, q, k, v):
        exact = float_attention(q.double().numpy(), k.double().numpy(), v.double().numpy())
        out, _ = unit_attention(config, q.double().numpy(), k.double().numpy(), v.double().numpy())
        err[layer, head] += ((out - exact) ** 2).sum()
        ref[layer, head] += (exact ** 2).sum()
        worst[layer, head] = max(worst[layer, head], np.abs(out - exact).max() / np.abs(exact).max())
        return float_head_attention(layer, head, q, k, v)

    for text in texts:
        model.token_states(model.encode(text).ids, measure)
    return np.sqrt(err / ref), worst


def sweep(model, texts, reference):
    rows = []
    dense_cycles = None
    for fields in PRUNING:
        config = AttentionConfig(**fields)
        log = []
        emb = model.embed(texts, unit_head_attention(config, kept_log=log))
        cosine = (emb * reference).sum(axis=1)
        n_total = sum(n * len(kept) for n, _, kept in log)
        kept = sum(int(k.sum()) for _, _, k in log) / n_total
        cand = sum(int(c.sum()) for _, c, _ in log) / n_total
        cycles = sum(head_cycles(config, n, c, k) for n, c, k in log)
        if dense_cycles is None:
            dense_cycles = sum(dense_head_cycles(config, n, len(k)) for n, _, k in log)
        rows.append([label(fields), f"{cand:.3f}", f"{kept:.3f}", cycles, f"{cycles / dense_cycles:.3f}",
                     f"{cosine.min():.4f}", f"{cosine.mean():.4f}"])
    return rows


def rtl_check(model):
    """Real heads of one passage through the generated Verilog, dense and pruned."""
    from sim.attention import Head, run_heads
    from sim.runner import build
    from software.golden.attention import quantize_head
    heads = [(0, 3), (3, 6), (5, 10)]
    captured = model.capture_heads(PASSAGES[0], heads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in (("none", []), ("threshold=5, top_k=8", ["--threshold", "5", "--top-k", "8"])):
            out = pathlib.Path(tmp) / name.replace(" ", "").replace(",", "_").replace("=", "")
            subprocess.run([sys.executable, "-m", "gen", "--unit", "attention", *args, "-o", str(out)],
                           check=True, cwd=ROOT, capture_output=True)
            built = build(out, pathlib.Path(tmp) / "sim_build", optimize=True)
            unit_heads = []
            for key in heads:
                h = quantize_head(built.config, *captured[key])
                unit_heads.append(Head(k=h.k, v=h.v, q=h.q, mul=h.mul, shift=h.shift))
            run = run_heads(built, unit_heads, name="bench")       # raises unless bit-exact
            rows.append([name, len(unit_heads), len(captured[heads[0]][0]), run.cycles, run.model_cycles,
                         "yes", f"{run.total_cycles / run.sim_seconds:,.0f}"])
    return rows


SWEEP_HEADERS = ["pruning", "candidates", "kept", "cycles", "vs none", "cos min", "cos mean"]
RTL_HEADERS = ["pruning", "heads", "n", "RTL cycles", "model cycles", "bit-exact", "clk/s"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtl", action="store_true", help="also run real heads through Verilator")
    report.docs_argument(parser, "attention.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model = MiniLM()
    config = AttentionConfig()
    sections = []

    unit = (f"Unit: d={config.head_dim}, L={config.max_len}, int{config.data_width} Q/K/V, "
            f"exp table 2^{config.exp_frac_bits} entries, E={config.exp_bits}, P={config.prob_bits}")
    print(unit + "\n")

    rel, worst = per_head_error(model, config, SENTENCES)
    heading = (f"Relative error of each head's output, unit vs float attention "
               f"(RMS over the {len(SENTENCES)} sentences, %)")
    print(heading + ":")
    headers = ["layer"] + [f"h{h}" for h in range(HEADS)] + ["mean"]
    rows = [[layer] + [f"{100 * e:.2f}" for e in rel[layer]] + [f"{100 * rel[layer].mean():.2f}"]
            for layer in range(LAYERS)]
    report.print_table(headers, rows)
    overall = (f"all heads: mean {100 * rel.mean():.2f}%, worst head {100 * rel.max():.2f}%, "
               f"worst single element {100 * worst.max():.1f}% of its row's largest")
    print(overall + "\n")
    sections.append(f"## Error of each head\n\n{heading}.\n\n{report.markdown_table(headers, rows)}\n\n"
                    f"{overall[0].upper() + overall[1:]}.")

    sweeps = {}
    for name, texts in (("sentences", SENTENCES), ("passages", PASSAGES)):
        reference = model.embed(texts)
        lengths = [len(model.encode(t).ids) for t in texts]
        heading = (f"Golden unit in all {LAYERS * HEADS} heads, {len(texts)} {name} of {min(lengths)}-{max(lengths)} "
                   f"tokens: cosine of sentence embeddings to the float model, and the unit's cycles "
                   f"(cycle model = RTL) relative to no pruning")
        print(heading + ":")
        sweeps[name] = sweep(model, texts, reference)
        report.print_table(SWEEP_HEADERS, sweeps[name])
        sections.append(f"## Pruning: {len(texts)} {name}\n\n{heading}.\n\n"
                        f"{report.markdown_table(SWEEP_HEADERS, sweeps[name])}")

    rtl_rows = None
    if args.rtl:
        heading = "Real heads (layers 0, 3, 5) of a 49-token passage through the Verilog in Verilator"
        print(heading + ":")
        rtl_rows = rtl_check(model)
        report.print_table(RTL_HEADERS, rtl_rows)
        sections.append(f"## Through the RTL\n\n{heading}.\n\n{report.markdown_table(RTL_HEADERS, rtl_rows)}")
    else:
        sections.append("## Through the RTL\n\nNot run for this page: `--rtl` also runs three real heads of a "
                        "passage through the generated Verilog in Verilator, dense and pruned.")
    if args.docs:
        argv = sys.argv[1:] if argv is None else argv
        for path in write_docs(args.docs, argv, unit, sections, sweeps, time.perf_counter() - start):
            print(f"wrote {path}", file=sys.stderr)


def plot_pruning(sweeps, directory):
    """Cosine (min over texts) against cycles relative to no pruning, one point per setting."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (name, rows), color, marker in zip(sweeps.items(), ("tab:blue", "tab:orange"), ("o", "^")):
        xs, ys = [float(r[4]) for r in rows], [float(r[5]) for r in rows]
        ax.plot(xs, ys, linestyle="none", marker=marker, color=color, label=name)
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(r[0], (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("cycles relative to no pruning (cycle model = RTL)")
    ax.set_ylabel("cosine of embeddings to float (min)")
    ax.grid(True, linewidth=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return report.save_figure(fig, directory, "attention_pruning.png")


def write_docs(directory, argv, unit, sections, sweeps, seconds):
    plot = plot_pruning(sweeps, directory)
    body = f"""
The one-head attention unit (golden model, bit-exact with the RTL, and cycle model, equal to the
RTL's cycles; both asserted in tests/sim/test_attention_rtl.py) in all 72 heads of the pretrained
all-MiniLM-L6-v2. What the unit computes: [Attention unit](../attention.md). {unit}.

![cosine against cycles, per pruning setting](attention_pruning.png)

""" + "\n\n".join(sections)
    page = report.write_page(directory, "attention.md", "Results: attention unit on MiniLM-L6",
                             report.command("attention.py", argv), body,
                             note=f"The run took {seconds / 60:.0f} minutes.")
    return page, plot


if __name__ == "__main__":
    main()
