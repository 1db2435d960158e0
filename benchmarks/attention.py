"""Numbers for the attention unit on the pretrained MiniLM-L6 (all-MiniLM-L6-v2): error of the
unit vs float attention per head, sentence-embedding similarity with the golden unit in all 72
heads, and how similarity falls as pruning cuts cycles. Prints tables; asserts nothing.

    python benchmarks/attention.py           # the three tables (golden model + cycle model, 1-3 min)
    python benchmarks/attention.py --rtl     # also real heads through the Verilog in Verilator

The golden model is bit-exact with the RTL and the cycle model equals the RTL's cycles (both
asserted in tests/sim/test_attention_rtl.py), so the tables use them for all 6 x 12 heads.
Q, V and K are quantized to int8 per head (Q per row, K and V per tensor) for every sentence.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from software.attention import dense_head_cycles, float_attention, head_cycles, unit_attention  # noqa: E402
from spec.attention import AttentionConfig                                       # noqa: E402
from software.models.minilm import (HEADS, LAYERS, PASSAGES, SENTENCES, MiniLM,             # noqa: E402
                                    float_head_attention, unit_head_attention)

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


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))
    print(line(headers))
    print(line("-" * w for w in widths))
    for r in rows:
        print(line(r))
    print()


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
    from software.attention import quantize_head
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtl", action="store_true", help="also run real heads through Verilator")
    args = parser.parse_args()
    model = MiniLM()
    config = AttentionConfig()

    print(f"Unit: d={config.head_dim}, L={config.max_len}, int{config.data_width} Q/K/V, "
          f"exp table 2^{config.exp_frac_bits} entries, E={config.exp_bits}, P={config.prob_bits}\n")

    rel, worst = per_head_error(model, config, SENTENCES)
    print(f"Relative error of each head's output, unit vs float attention "
          f"(RMS over the {len(SENTENCES)} sentences, %):")
    table(["layer"] + [f"h{h}" for h in range(HEADS)] + ["mean"],
          [[layer] + [f"{100 * e:.2f}" for e in rel[layer]] + [f"{100 * rel[layer].mean():.2f}"]
           for layer in range(LAYERS)])
    print(f"all heads: mean {100 * rel.mean():.2f}%, worst head {100 * rel.max():.2f}%, "
          f"worst single element {100 * worst.max():.1f}% of its row's largest\n")

    for name, texts in (("sentences", SENTENCES), ("passages", PASSAGES)):
        reference = model.embed(texts)
        lengths = [len(model.encode(t).ids) for t in texts]
        print(f"Golden unit in all {LAYERS * HEADS} heads, {len(texts)} {name} of {min(lengths)}-{max(lengths)} "
              f"tokens: cosine of sentence embeddings to the float model, and the unit's cycles "
              f"(cycle model = RTL) relative to no pruning:")
        table(["pruning", "candidates", "kept", "cycles", "vs none", "cos min", "cos mean"],
              sweep(model, texts, reference))

    if args.rtl:
        print("Real heads (layers 0, 3, 5) of a 49-token passage through the Verilog in Verilator:")
        table(["pruning", "heads", "n", "RTL cycles", "model cycles", "bit-exact", "clk/s"], rtl_check(model))


if __name__ == "__main__":
    main()
