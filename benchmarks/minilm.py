"""MiniLM-L6 with column-combined FFNs: embedding agreement with the dense model against FFN tiles on
a 32x32 alpha 8 array, with and without sparse progressive distillation. Prints tables; asserts nothing.

    python -m software.distill.spd --out runs/minilm --steps 4000 --batch 16 --events 4 \\
        --prune-until 0.5000625 --qat-from 0.8 --sparsity 0.72 --lr 0.0002 --max-tokens 40   # the run
    python benchmarks/minilm.py --run runs/minilm            # evaluate it (~15 minutes on 2 busy cores)
    python benchmarks/minilm.py --run runs/minilm --docs     # also write docs/results/minilm.md and its plot
    python benchmarks/minilm.py --run runs/minilm --rtl --encoder-rtl --docs   # with the Verilator runs (~3 more min)

Held-out sentences: software/distill/corpus.py's held-out split (never trained on). Metrics:
software/distill/evaluate.py (cosine of each sentence embedding to the dense model's: mean and 5th
percentile; top-1 nearest-neighbour agreement among all held-out sentences).
Points of the curve:
  without distillation  the pretrained model, every FFN matrix magnitude-pruned at once to the
                        rates of the run's events, then column-combined (alpha, gamma of the run): no training;
  with distillation     the run's students after the recovery that follows each event
                        (event-K.pt), and the final int8 quantization-aware model (final.pt).
FFN tiles: the 12 FFN matrices int8 per channel, packed by their grouping and cut into tiles
by software/packing/schedule.py; dense = every weight on an alpha 1 array of the same size.
Cycles: software/golden/cycles.py for one sentence of --tokens tokens per matrix.
--rtl: one FFN matrix of final.pt on the generated array in Verilator. --encoder-rtl: one whole encoder
layer of final.pt (software/distill/encoder_int.py, scales calibrated on training sentences) through
the array and the attention unit in Verilator (sim/encoder.py), stage by stage against the golden model.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import report  # noqa: E402
from software.distill import evaluate as ev  # noqa: E402
from software.distill import spd  # noqa: E402
from software.distill.corpus import load_corpus  # noqa: E402

HEADERS = ["model", "FFN sparsity", "FFN tiles", "fewer tiles", "mean cos", "p5 cos", "NN top-1 agree"]


def ffn_sparsity_of(costs):
    total = sum(c.shape[0] * c.shape[1] for c in costs)
    return 1 - sum(c.nonzeros for c in costs) / total


class Cache:
    """Evaluated points in <run>/benchmark-cache.json, keyed by what they depend on, so that a rerun
    (e.g. with --docs) only evaluates what changed. Plain JSON: nothing is unpickled."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def get(self, key):
        entry = self.entries.get(key)
        if entry is None:
            return None
        return dict(entry, agreement=ev.Agreement(**entry["agreement"]),
                    costs=[ev.MatrixCost(**dict(c, shape=tuple(c["shape"]))) for c in entry["costs"]])

    def put(self, key, p):
        self.entries[key] = dict(p, agreement=dataclasses.asdict(p["agreement"]),
                                 costs=[dataclasses.asdict(c) for c in p["costs"]])
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1))
        os.replace(tmp, self.path)


def point(label, kind, student, groups, model, sentences, reference, dense_tiles, tokens):
    start = time.time()
    costs = ev.ffn_costs(student, groups, tokens=tokens)
    agree = ev.agreement(reference, ev.embed(student, model, sentences))
    tiles = ev.tiles_of(costs)
    print(f"  {label}: {tiles} tiles, mean cos {agree.mean_cosine:.4f} ({time.time() - start:.0f} s)", flush=True)
    return {"label": label, "kind": kind, "sparsity": ffn_sparsity_of(costs), "tiles": tiles,
            "reduction": dense_tiles / tiles, "agreement": agree, "costs": costs}


def cached_point(cache, key, make):
    """The cached point for `key`, or make() -> (label, kind, student, groups) evaluated by `evaluate`."""
    found = cache.get(key)
    if found is not None:
        print(f"  {found['label']}: cached", flush=True)
        return found
    p = make()
    cache.put(key, p)
    return p


def row(p):
    a = p["agreement"]
    return [p["label"], f"{p['sparsity']:.1%}", p["tiles"], f"{p['reduction']:.2f}x", f"{a.mean_cosine:.4f}",
            f"{a.p5_cosine:.4f}", f"{a.neighbour_agreement:.1%}"]


def per_matrix_rows(dense_costs, packed_costs):
    return [[d.name.replace("encoder.layer.", "L").replace(".dense", ""), f"{d.shape[0]}x{d.shape[1]}",
             d.tiles, p.tiles, d.cycles, p.cycles, p.groups, f"{d.cycles / p.cycles:.2f}x"]
            for d, p in zip(dense_costs, packed_costs)]


def plot(points, dense_tiles, directory):
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, style in (("without distillation", "o--"), ("with distillation", "s-")):
        pts = sorted((p for p in points if p["kind"] == kind), key=lambda p: -p["tiles"])
        if pts:
            ax.plot([p["tiles"] for p in pts], [p["agreement"].mean_cosine for p in pts], style, label=kind)
    ax.plot([dense_tiles], [1.0], "k*", markersize=10, label="dense (alpha 1)")
    ax.axhline(0.99, color="grey", linewidth=0.8, linestyle=":")
    ax.axvline(dense_tiles / 4, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("FFN tiles on a 32x32 alpha 8 array (12 matrices)")
    ax.set_ylabel("mean cosine to dense (held-out)")
    ax.set_title("MiniLM-L6: column-combined FFNs")
    ax.legend(loc="lower right")
    return report.save_figure(fig, directory, "minilm_tiles_cosine.png")


def rtl_ffn(path, model, sentence, name="encoder.layer.0.intermediate.dense", rows=32, cols=32, alpha=8):
    """One FFN matrix of the distilled int8 model on the generated array in Verilator, on the real
    activations of one held-out sentence: the RTL's outputs against the integer product and the
    model's quantization-aware float output, its cycles against the cycle model."""
    import tempfile
    from gen import cli
    from sim.array import run_schedule
    from sim.runner import build
    from software.frontend.quant import compute_scale, quantize
    from software.golden.cycles import layer_cycles
    from software.models.minilm import batch_ids
    from software.packing.colcomb import pack
    from software.packing.schedule import schedule_layer

    student, record = spd.load_student(path, model=model)
    module = student.ffn_linears()[name]
    captured = {}
    # Prepended, so it sees the raw input before the quantization-aware hook quantizes it.
    hook = module.register_forward_pre_hook(lambda m, args: captured.setdefault("x", args[0].detach()), prepend=True)
    with torch.no_grad():
        student(*batch_ids(model, [sentence]))
        hook.remove()
        w = (module.weight_orig * module.weight_mask).detach()
        x = captured["x"][0]
        w_scale = compute_scale(w, 8, per_channel=True, power_of_two=True)
        x_scale = compute_scale(x, 8, power_of_two=True)
        w_int, x_int = quantize(w, w_scale, 8).numpy().astype(np.int64), quantize(x, x_scale, 8).numpy().astype(np.int64)
        qat = torch.nn.functional.linear(spd.fake_quant_tensor(x, 8, power_of_two=True),
                                         spd.fake_quant_tensor(w, 8, per_channel=True, power_of_two=True))
    product = x_int @ w_int.T
    model_match = float((torch.from_numpy(product).float() * x_scale * w_scale - qat).abs().max())
    packing = pack(w_int, record["groups"][name], alpha)
    assert np.array_equal(packing.unpack(), w_int), "the grouping must hold every weight"
    with tempfile.TemporaryDirectory() as out:
        if cli.main(["--rows", str(rows), "--cols", str(cols), "--alpha", str(alpha), "-o", out]) != 0:
            raise RuntimeError("gen failed")
        start = time.time()
        built = build(out)
        build_seconds = time.time() - start
    schedule = schedule_layer(built.config, packing, x_int)
    got, run = run_schedule(built, schedule, name="minilm_ffn")
    return {"matrix": name, "shape": tuple(w_int.shape), "tokens": int(x_int.shape[0]), "tiles": len(schedule.tiles),
            "exact": bool(np.array_equal(got, product)), "rtl_cycles": run.cycles,
            "model_cycles": layer_cycles(built.config, schedule.tile_batches),
            "max_abs_vs_qat": model_match, "build_seconds": build_seconds, "sim_seconds": run.sim_seconds,
            "sentence": sentence}


def rtl_lines(r):
    return [f"{r['matrix']} ({r['shape'][0]}x{r['shape'][1]}, int8, packed by its grouping) on a generated "
            f"32x32 alpha 8 array in Verilator, on the {r['tokens']} tokens of the held-out sentence "
            f"\"{r['sentence']}\": {r['tiles']} tiles, outputs "
            f"{'bit-exact' if r['exact'] else 'DIFFERENT'} against the integer product; RTL {r['rtl_cycles']} "
            f"cycles, cycle model {r['model_cycles']} ({'equal' if r['rtl_cycles'] == r['model_cycles'] else 'DIFFERENT'}); "
            f"integer product x scales vs the model's quantization-aware float output: max |diff| "
            f"{r['max_abs_vs_qat']:.2e}. Build {r['build_seconds']:.0f} s, simulation {r['sim_seconds']:.1f} s."]


ENCODER_HEADERS = ["stage", "unit", "shape", "tiles / heads", "RTL cycles", "cycle model", "bit-exact", "sim s"]
CLOSENESS_HEADERS = ["layer", "mean cosine", "lowest cosine", "lowest token cosine", "mean abs diff", "largest abs diff"]
ENCODER_ATTENTION = dict(head_dim=32, max_len=64)


def student_states(student, model, text):
    """The student's hidden states of one sentence (n x 384 each: the embedding output and every
    layer's output). It runs as trained: its FFN matrices int8 quantization-aware."""
    from software.models.minilm import batch_ids
    with torch.no_grad():
        hidden, _ = student(*batch_ids(model, [text]))
    return [h[0] for h in hidden]


def integer_layer(student, record, layer, calibration_states):
    """software/distill/encoder_int.py's integer form of one layer of the student, its scales
    calibrated on the layer's inputs of the calibration (training) sentences."""
    from software.distill import encoder_int
    from spec.attention import AttentionConfig
    groups = {part: record["groups"][f"encoder.layer.{layer}.{part}.dense"] for part in ("intermediate", "output")}
    return encoder_int.from_float(student.encoder["layer"][layer], [s[layer] for s in calibration_states],
                                  AttentionConfig(**ENCODER_ATTENTION), groups)


def rtl_encoder(path, model, sentence, calibration, layer=0, rows=32, cols=32, alpha=8, closeness=()):
    """One whole encoder layer of the distilled int8 model through the hardware on one held-out
    sentence (sim/encoder.py): the six matrices on a generated rows x cols alpha array, the 12 heads
    on the attention unit, layer norm, GELU and residuals in the integer host model
    (software/distill/encoder_int.py, exponents calibrated on the `calibration` sentences, which are
    training sentences). Also the integer layer's output against the float student's layer on that
    sentence, and (golden model, every layer) on the held-out sentences `closeness`."""
    from sim.encoder import run_layer
    from software.distill import encoder_int
    from spec.array import ArrayConfig

    student, record = spd.load_student(path, model=model)
    calibration_states = [student_states(student, model, s) for s in calibration]
    integer = integer_layer(student, record, layer, calibration_states)
    states = student_states(student, model, sentence)
    x, y = states[layer], states[layer + 1]
    result = run_layer(integer, integer.quantize_input(x.numpy()), ArrayConfig(rows=rows, cols=cols, alpha=alpha))
    out = integer.output_float(result.rtl["h2"])
    per_layer = []
    held_out = [student_states(student, model, s) for s in closeness]
    for k in range(len(student.encoder["layer"]) if held_out else 0):
        golden = integer_layer(student, record, k, calibration_states)
        per_layer.append([encoder_int.Closeness.of(golden.output_float(golden.run(golden.quantize_input(h[k].numpy()))["h2"]),
                                                   h[k + 1].numpy()) for h in held_out])
    return {"layer": layer, "sentence": sentence, "tokens": int(x.shape[0]), "calibration": len(calibration),
            "run": result, "array": f"{rows}x{cols} alpha {alpha}",
            "vs_student": encoder_int.Closeness.of(out, y.numpy()),
            "vs_float": encoder_int.Closeness.of(out, encoder_int.float_stages(student.encoder["layer"][layer], x)["out"].numpy()),
            "per_layer": per_layer}


def encoder_rows(r):
    return [[s.stage, s.unit, s.shape, s.work, s.rtl_cycles, s.model_cycles,
             "yes" if s.exact else "NO", f"{s.sim_seconds:.1f}"] for s in r["run"].stages]


def closeness_rows(per_layer):
    return [[k, f"{np.mean([c.cosine for c in cs]):.5f}", f"{min(c.cosine for c in cs):.5f}",
             f"{min(c.min_token_cosine for c in cs):.5f}", f"{np.mean([c.mean_abs for c in cs]):.4f}",
             f"{max(c.max_abs for c in cs):.3f}"] for k, cs in enumerate(per_layer)]


def encoder_lines(r):
    run = r["run"]
    total_rtl = sum(s.rtl_cycles for s in run.stages)
    total_model = sum(s.model_cycles for s in run.stages)
    close = lambda c: (f"max |diff| {c.max_abs:.3f}, mean |diff| {c.mean_abs:.4f}, cosine {c.cosine:.5f} "
                       f"(lowest token {c.min_token_cosine:.5f})")
    builds = ", ".join(f"{unit} {run.generate_seconds[unit]:.0f} s + {seconds:.0f} s" for unit, seconds in run.build_seconds.items())
    lines = [
        f"Encoder layer {r['layer']} of the final int8 student, whole, through the hardware "
        f"(`sim/encoder.py`, `software/distill/encoder_int.py`) on the {r['tokens']} tokens of the held-out "
        f"sentence \"{r['sentence']}\": Q, K, V, attention output (384x384, dense) and the two FFN matrices "
        f"(column-combined by their grouping) on a generated {r['array']} array, the 12 heads on the generated "
        f"attention unit (d 32, L 64, no pruning), each in Verilator; layer norm, GELU (a 4096-entry table) and "
        f"the residual adds in the integer host model. Power-of-two scales calibrated on {r['calibration']} "
        f"training sentences. Every stage's integers "
        f"{'equal' if not run.mismatched else 'DIFFER from'} the golden model's "
        f"({len(run.golden)} stages compared{'' if not run.mismatched else ': ' + ', '.join(run.mismatched)}); "
        f"RTL cycles {'equal' if run.cycles_equal else 'DIFFER from'} the cycle models' "
        f"({total_rtl} in all, cycle models {total_model}). Generation + Verilator build: {builds} "
        f"(a build reused from the simulator cache counts 0 s).",
        report.markdown_table(ENCODER_HEADERS, encoder_rows(r)),
        f"The integer layer's output against the float student's layer output on that sentence (its FFN "
        f"matrices quantization-aware int8, as trained): {close(r['vs_student'])}; against the same layer "
        f"entirely in float (nothing quantized): {close(r['vs_float'])}.",
    ]
    if r["per_layer"]:
        lines += [f"Every layer as an integer layer (golden model, scales calibrated likewise), each on the float "
                  f"student's input to that layer, against the student's output of that layer, over "
                  f"{len(r['per_layer'][0])} held-out sentences (per sentence: cosine of all its n x 384 values, "
                  f"the lowest cosine of one token's 384, the mean and largest |diff|):",
                  report.markdown_table(CLOSENESS_HEADERS, closeness_rows(r["per_layer"]))]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/minilm", help="folder of a software.distill.spd run")
    parser.add_argument("--tokens", type=int, default=32, help="input vectors per matrix for the cycle counts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-oneshot", action="store_true", help="skip the points without distillation")
    parser.add_argument("--only-oneshot", action="store_true",
                        help="evaluate only the points without distillation (e.g. while the run trains)")
    parser.add_argument("--rtl", action="store_true",
                        help="also run one FFN matrix of final.pt on the generated array in Verilator")
    parser.add_argument("--encoder-rtl", action="store_true",
                        help="also run one whole encoder layer of final.pt through the array and the attention "
                             "unit in Verilator (sim/encoder.py)")
    parser.add_argument("--layer", type=int, default=0, help="the encoder layer of --encoder-rtl")
    parser.add_argument("--closeness", type=int, default=200,
                        help="held-out sentences on which --encoder-rtl also compares every integer layer (golden "
                             "model) with the float student's")
    parser.add_argument("--calibration", type=int, default=64,
                        help="training sentences that calibrate the integer layer's scales (--encoder-rtl)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N held-out sentences (quick checks; the page needs them all)")
    report.docs_argument(parser, "minilm.md")
    args = parser.parse_args(argv)
    if not 0 <= args.layer < 6 or args.calibration < 1 or args.closeness < 0:
        print("error: --layer must be 0 to 5, --calibration at least 1 and --closeness at least 0", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    run = pathlib.Path(args.run)
    snapshots = sorted(run.glob("event-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    snapshots += [run / "final.pt"] if (run / "final.pt").exists() else []
    # The plan as the run ended (a run resumed with --replan changed its budget on the way).
    source = run / spd.CHECKPOINT if (run / spd.CHECKPOINT).exists() else (snapshots[0] if snapshots else run / spd.CHECKPOINT)
    if not source.exists():
        print(f"error: no event-K.pt, final.pt or {spd.CHECKPOINT} in {run}: run python -m software.distill.spd "
              f"--out {run} first", file=sys.stderr)
        return 2
    try:
        plan = spd.Plan(**torch.load(source, weights_only=True)["plan"])
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, spd.DistillError) as error:
        print(f"error: cannot read {source}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.only_oneshot:
        snapshots = []

    from software.models.minilm import Encoder, MiniLM
    corpus = load_corpus()
    sentences = list(corpus.held_out)[:args.limit]
    model = MiniLM(max_tokens=plan.max_tokens)
    teacher = Encoder.pretrained(model)
    print(f"{len(sentences)} held-out sentences; dense reference ...", flush=True)
    reference = ev.embed(teacher, model, sentences)
    dense_costs = ev.ffn_costs(teacher, None, tokens=args.tokens)
    dense_tiles = ev.tiles_of(dense_costs)

    cache = Cache(run / "benchmark-cache.json")
    common = (model, sentences, reference, dense_tiles, args.tokens)
    setting = f"{len(sentences)} sentences, {args.tokens} tokens"
    points = []
    if not args.no_oneshot:
        for k in range(1, plan.events + 1):
            rate = plan.rate(k)

            def oneshot(rate=rate):
                student = Encoder.pretrained(model)
                combined = spd.column_combine(student, rate, plan.alpha, plan.gamma, plan.grouping)
                groups = {name: g for name, (g, _) in combined.items()}
                return point(f"one-shot {rate:.0%} + colcomb", "without distillation", student, groups, *common)
            key = f"one-shot {rate!r} alpha {plan.alpha} gamma {plan.gamma!r} {plan.grouping}, {setting}"
            points.append(cached_point(cache, key, oneshot))
    for path in snapshots:
        if path.stem == "final":
            label = "SPD final (int8 QAT)"
        else:
            k = int(path.stem.split("-")[1])
            label = f"SPD event {k} ({plan.rate(k):.0%})"

        def distilled(path=path, label=label):
            student, record = spd.load_student(path, model=model)
            return point(label, "with distillation", student, record["groups"], *common)
        points.append(cached_point(cache, f"{path.name} {path.stat().st_mtime_ns}, {setting}", distilled))

    print()
    if not points:
        return 0
    table = [row(p) for p in points]
    print(report.markdown_table(HEADERS, [["dense", "0.0%", dense_tiles, "1.00x", "1.0000", "1.0000", "100.0%"]] + table))
    final = points[-1]
    matrix_headers = ["matrix", "F x K", "tiles dense", "tiles packed", "cycles dense", "cycles packed",
                      "groups", "fewer cycles"]
    matrices = per_matrix_rows(dense_costs, final["costs"])
    print(f"\nper FFN matrix, {final['label']} ({args.tokens} input vectors):")
    print(report.markdown_table(matrix_headers, matrices))
    a = final["agreement"]
    met = a.mean_cosine >= 0.99 and final["reduction"] >= 4
    verdict = (f"target (mean cosine >= 0.99 with >= 4x fewer FFN tiles): mean cosine {a.mean_cosine:.4f} "
               f"at {final['reduction']:.2f}x fewer tiles -> {'met' if met else 'MISSED'}")
    print("\n" + verdict)
    rtl = []
    if args.rtl and (run / "final.pt").exists():
        result = rtl_ffn(run / "final.pt", model, sentences[0])
        rtl = rtl_lines(result)
        print("\n" + rtl[0])
    encoder = []
    if args.encoder_rtl and (run / "final.pt").exists():
        result = rtl_encoder(run / "final.pt", model, sentences[0], list(corpus.train)[:args.calibration],
                             layer=args.layer, closeness=sentences[:args.closeness])
        encoder = encoder_lines(result)
        print("\n" + "\n\n".join(encoder))

    if args.docs:
        png = plot(points, dense_tiles, args.docs)
        argv_used = ["--run", str(args.run), *(["--rtl"] if args.rtl else []),
                     *(["--encoder-rtl"] if args.encoder_rtl else []),
                     *(["--layer", str(args.layer)] if args.encoder_rtl and args.layer else []),
                     *(["--calibration", str(args.calibration)] if args.encoder_rtl and args.calibration != 64 else []),
                     *(["--closeness", str(args.closeness)] if args.encoder_rtl and args.closeness != 200 else []),
                     "--docs"]
        body = "\n\n".join([
            f"MiniLM-L6 (all-MiniLM-L6-v2) with its 12 FFN matrices column-combined (alpha {plan.alpha}, "
            f"gamma {plan.gamma:g}, grouping `{plan.grouping}`), evaluated on {len(sentences)} held-out sentences "
            f"against the dense model. The run's plan as it ended: {plan.steps} steps, the last ones of {plan.batch} "
            f"sentences, {plan.events} pruning events (at steps {', '.join(map(str, plan.event_steps()))}) to "
            f"{plan.sparsity:.0%} magnitude sparsity, int8 quantization-aware from step {plan.qat_step}, "
            f"lr {plan.lr:g}, at most {plan.max_tokens} tokens"
            f"{f', attention-map KL weight {plan.attention_kl:g}' if plan.attention_kl else ''} (a run resumed with --replan may have used "
            f"other batch sizes before; see docs/minilm.md). "
            f"Training corpus: {len(corpus.train)} sentences "
            f"({', '.join(f'{n}: {c}' for n, c in corpus.sources)}).",
            report.markdown_table(HEADERS, [["dense", "0.0%", dense_tiles, "1.00x", "1.0000", "1.0000", "100.0%"]]
                                  + table),
            f"![FFN tiles vs mean cosine]({png.name})",
            f"Per FFN matrix, {final['label']}, {args.tokens} input vectors (cycle model):",
            report.markdown_table(matrix_headers, matrices),
            verdict,
            *rtl,
            *encoder,
        ])
        page = report.write_page(args.docs, "minilm.md", "MiniLM-L6: column combining with progressive distillation",
                                 report.command("minilm.py", argv_used), body)
        print(f"wrote {page} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
