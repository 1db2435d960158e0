"""The model accelerator's fit and speed (issue 22): per board build, resources used and available,
Fmax, cycles per image at batch 1 and at batch B, images per second at Fmax (compute-bound) and over
the UART link, against today's layer-by-layer UART path on the same model and the same int8 model in
numpy on one core of this machine.

    python benchmarks/accel.py                          # cycles and throughput of the digits models
    python benchmarks/accel.py --models M --builds DIR [DIR ...] [--docs]
        # ... with the builds of `fpga build --model M/colcomb/model.npz` (or M/dense/model.npz): a
        # build holds the SHA-256 of the very file it was built from, so give the same files
    python benchmarks/accel.py ... --resnet R/model.npz
        # ... and a residual CNN on the graph accelerator (python -m software compress --model
        # examples.models.resnet:digits_resnet --input-shape 1,8,8 ...), its builds among --builds

Where the numbers come from:
  cycles       software/golden/model_cycles.py, the cycle model of the whole schedule, which the
               Verilator tests (tests/accel/test_rtl.py) assert equal to the RTL's clocks; `--rtl`
               runs the 100-image check here too.
  Fmax, LUT4   the build's summary.json (nextpnr's report, the clock constrained at --clock-mhz).
  link         bytes per image of the host link protocol (docs/formats.md) at the build's baud,
               10 bits a byte: frames of pixel beats and the reads of the logits, both ways.
  per-layer    the same model over the same link, layer by layer (software.host.Board): every
               tile's weight beats and activation beats, and the result reads.
  numpy        the int8 model (dense integer matrices, bias, shift, ReLU) in numpy, one thread; for
               the residual CNN, the golden integer model itself (im2col, numpy), one thread.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402
from software.golden.model_cycles import model_cycles  # noqa: E402

FRAME_OVERHEAD = 6          # 0xA5 seq kind count ... crc_hi crc_lo (a frame with beats)
REPLY_OVERHEAD = 5          # 0xA5 seq kind ... crc_hi crc_lo
READ_FRAME = 6              # 'R' 0: 0xA5 seq 'R' 0 crc crc
STEADY_BATCHES = 4


def compress(directory, method):
    from software.frontend.compress import main
    flags = ["--method", "colcomb", "--alpha", "8", "--gamma", "0.5"] if method == "colcomb" else ["--method", "dense"]
    out = pathlib.Path(directory) / method
    if main(["compress", "--model", "digits", "--quant", "int8", "--rows", "4", "--seed", "0", "-q", *flags,
             "-o", str(out)]) != 0:
        raise SystemExit(f"compressing the digits model ({method}) failed")
    return out / "model.npz"


def cycles_per_image(config, batch):
    """Clocks per image once batches of `batch` images follow each other (the cycle model)."""
    images = STEADY_BATCHES * batch
    return (model_cycles(config, 2 * images, batch) - model_cycles(config, images, batch)) / images


def link_bytes_per_image(config, max_act_beats, batch):
    """Line bytes per image, both ways, of ModelBoard.run_images with `batch` images per batch."""
    beat = (config.image_beat_width + 7) // 8
    pixels = batch * config.in_features
    frames = -(-pixels // max_act_beats)
    sent = pixels * beat + frames * FRAME_OVERHEAD
    received = frames * REPLY_OVERHEAD                                  # 'K' per frame
    results = config.logit_blocks * batch
    result_bytes = (config.logit_beat_width + 7) // 8
    sent += results * READ_FRAME
    received += results * (REPLY_OVERHEAD + result_bytes)
    return (sent + received) / batch


def layer_path_bytes_per_image(model, batch):
    """Line bytes per image of the layer-by-layer path (software.host.Board.run_model) for batches
    of `batch` images: every tile's weights each batch, the activations and the result reads."""
    from hdl.hostlink import frame_beats
    from software.packing.schedule import schedule_layer
    cfg = model.config
    rx_buffer = 512
    max_w, max_a = frame_beats(rx_buffer, cfg.weight_beat_width), frame_beats(rx_buffer, cfg.activation_beat_width)
    wb, ab, rb = ((w + 7) // 8 for w in (cfg.weight_beat_width, cfg.activation_beat_width, cfg.result_beat_width))
    total = 0
    x = np.zeros((batch, *model.input_shape), dtype=np.int64)
    inputs = model.layer_inputs(x)
    for layer, vectors in zip(model.layers, inputs):
        schedule = schedule_layer(cfg, layer.packing, vectors)
        for tile in schedule.tiles:
            for beats, per_frame, size in ((cfg.rows, max_w, wb), (tile.batch, max_a, ab)):
                frames = -(-beats // per_frame)
                total += beats * size + frames * (FRAME_OVERHEAD + REPLY_OVERHEAD)
            if tile.emit:
                total += tile.batch * (READ_FRAME + REPLY_OVERHEAD + rb)
    return total / batch


def numpy_images_per_second(model, x_int, repeats=20):
    """The int8 model's forward pass in numpy (dense integer matrices), one thread."""
    layers = []
    for node in [n for n in model.nodes if n.op == "matmul"]:
        w = node.parts[0].weight_matrix.astype(np.int32)
        layers.append((w.T.copy(), node.arrays["bias"].astype(np.int64), node.arrays["shift"].astype(np.int64),
                       node.logits))
    top = (1 << model.config.act_width) - 1

    def forward(x):
        for w, bias, shift, logits in layers:
            total = (x.astype(np.int32) @ w).astype(np.int64) + bias
            if logits:
                return total << shift
            half = np.where(shift > 0, 1 << np.maximum(shift - 1, 0), 0)
            x = np.clip((total + half) >> np.maximum(shift, 0) << np.maximum(-shift, 0), 0, top)
        return x

    assert np.array_equal(forward(x_int), model.run_golden(x_int))      # the same model, not a faster one
    start = time.perf_counter()
    for _ in range(repeats):
        forward(x_int)
    return repeats * len(x_int) / (time.perf_counter() - start)


def golden_images_per_second(model, x_int, repeats=3):
    """The golden integer model (software.frontend.intgraph: im2col and integer matrices in numpy), one thread."""
    start = time.perf_counter()
    for _ in range(repeats):
        model.run_golden(x_int)
    return repeats * len(x_int) / (time.perf_counter() - start)


def read_build(directory):
    with open(pathlib.Path(directory) / "summary.json") as f:
        summary = json.load(f)
    with open(pathlib.Path(directory) / "manifest.json") as f:
        manifest = json.load(f)
    if summary.get("unit") != "model":
        raise SystemExit(f"{directory}: not a model accelerator build (python -m fpga build --model)")
    return summary, manifest


def _path(path):
    """A build's critical path in one line (fpga/report.py's description, without its label)."""
    if not path:
        return "not timed"
    from fpga.report import describe_critical_path
    return " ".join(line.strip() for line in describe_critical_path(path)).split(": ", 1)[-1]


def rows_for(models, builds, x_ints):
    from software.packfile import digest, load
    from spec.graph_model import model_config_from_dict
    rows = []
    by_digest = {}
    for method, path in models.items():
        model, _ = load(path)
        by_digest[digest(path)] = (method, model, path)
    for directory in builds:
        summary, manifest = read_build(directory)
        config = model_config_from_dict(summary["config"])
        if config.model_sha256 not in by_digest:
            raise SystemExit(f"{directory}: built from a model this script did not compress (--model it)")
        method, model, _ = by_digest[config.model_sha256]
        res = summary["resources"]
        fmax = summary["fmax"][summary["array_clock"]]["achieved_mhz"] if summary.get("array_clock") else None
        clock = summary["clock_mhz"]
        run_mhz = min(fmax, clock) if fmax else clock
        baud = summary["baud"]
        one, full = cycles_per_image(config, 1), cycles_per_image(config, config.batch)
        link = link_bytes_per_image(config, manifest["link"]["max_activation_beats"], config.batch)
        layer_path = layer_path_bytes_per_image(model, config.batch)
        rows.append({
            "board": summary["board"], "model": method, "array": f"{config.rows}x{config.cols} a{config.alpha}",
            "batch": config.batch, "tiles": config.tiles,
            "resources": {k: f"{v['used']}/{v['available']}" for k, v in res.items()},
            "clock_mhz": clock, "fmax_mhz": fmax, "critical_path": _path(summary.get("critical_path")),
            "cycles_batch1": one, "cycles_batchB": full,
            "ips_batch1": run_mhz * 1e6 / one, "ips_batchB": run_mhz * 1e6 / full,
            "link_bytes": link, "link_ips": baud / 10 / link,
            "layer_path_bytes": layer_path, "layer_path_ips": baud / 10 / layer_path,
            "numpy_ips": None,
            "weights": (f"link: {config.weight_beats * ((config.array.weight_beat_width + 7) // 8):,} bytes per "
                        "connection" if config.weights_loaded else "bitstream"),
        })
    return rows


def model_rows(models, x_ints, shapes):
    """Cycles and compute-bound images/s per MHz for array shapes without a build."""
    from software.packfile import digest, load
    from software.packing.graph_program import compile_model
    out = []
    for method, path in models.items():
        model, _ = load(path)
        for rows, cols, batch in shapes:
            program = compile_model(model, digest(path), rows=rows, cols=cols, batch=batch)
            cfg = program.config
            out.append({"model": method, "array": f"{rows}x{cols} a{cfg.alpha}", "cells": rows * cols,
                        "batch": batch, "tiles": cfg.tiles,
                        "cycles_batch1": cycles_per_image(cfg, 1), "cycles_batchB": cycles_per_image(cfg, batch)})
    return out


def cycles_table(rows, first):
    """Cycles and images/s per 100 MHz per array shape, at batch 1 and at batch B; `first`: the
    column before the array's ("model", or "batch" when the batch varies)."""
    return report.markdown_table(
        [first, "array", "tiles", "cycles/image, batch 1", "cycles/image, batch B",
         "images/s per 100 MHz, batch 1", "images/s per 100 MHz, batch B"],
        [[r[first], r["array"], r["tiles"], f"{r['cycles_batch1']:.0f}", f"{r['cycles_batchB']:.0f}",
          f"{1e8 / r['cycles_batch1']:,.0f}", f"{1e8 / r['cycles_batchB']:,.0f}"] for r in rows])


def resnet_section(rows, golden_ips, build_rows):
    """The residual CNN's part of the page: cycles per array shape, the golden model's rate, its builds."""
    lines = ["## A residual CNN on the graph accelerator", "",
             "The digits ResNet (examples/models/resnet.py: a 3x3 stem, an identity block, a downsampling block, "
             "global average pool, linear; column combining alpha 8, gamma 0.5) on the graph accelerator "
             "(hdl/accel/graph.py, [how it works](../accel.md#residual-cnns-the-graph-accelerator)). Cycles are the "
             "cycle model, which tests/accel/test_graph_rtl.py asserts equal to the RTL's clocks.", "",
             cycles_table(rows, "batch"),
             "", f"The golden integer model (im2col and integer matrices in numpy), one thread of this machine: "
             f"{golden_ips:,.0f} images/s.", ""]
    if build_rows:
        lines += ["### Builds", "", *builds_lines(build_rows)]
    return lines


def builds_lines(build_rows):
    """The builds' table, what its columns mean, and their critical paths."""
    lines = [report.markdown_table(
        ["board", "model", "array", "batch", "weights from", "resources used/available", "clock MHz", "Fmax MHz",
         "images/s, batch 1", "images/s, batch B", "link bytes/image", "images/s over the link",
         "layer-by-layer bytes/image", "layer-by-layer images/s"],
        [[r["board"], r["model"], r["array"], r["batch"], r["weights"],
          ", ".join(f"{k} {v}" for k, v in r["resources"].items()), f"{r['clock_mhz']:g}",
          f"{r['fmax_mhz']:.1f}" if r["fmax_mhz"] else "-", f"{r['ips_batch1']:,.0f}",
          f"{r['ips_batchB']:,.0f}", f"{r['link_bytes']:.0f}", f"{r['link_ips']:.1f}",
          f"{r['layer_path_bytes']:,.0f}", f"{r['layer_path_ips']:.2f}"] for r in build_rows]),
        "", "Images/s at batch 1 and B: compute-bound, at the lower of Fmax and the clock the build is "
        "constrained at. Over the link: the protocol's bytes per image at the build's baud, 10 bits a "
        "byte; layer-by-layer: the same model on a bare array of the same shape over the same link "
        "(software.host.Board.run_model), every weight tile sent again for every batch of B images. "
        "Weights from the link (the iCE40's SPRAM): sent once after each reset, not counted per image.", "",
        "Critical paths:", ""]
    lines += [f"- {r['board']} {r['model']} {r['array']}: {r['critical_path']}" for r in build_rows]
    lines += ["", "The numpy rate is wall time on this machine and moves with its load; cycles, Fmax and "
              "resources do not."]
    return lines


def page_body(cycle_rows, numpy_ips, build_rows, resnet=None):
    """The result page's Markdown: the cycles table, numpy's rate, the builds."""
    lines = ["Digits MLP 64-128-64-10, int8, colcomb alpha 8 gamma 0.5 or dense, seed 0 (`python -m software "
             "compress ... --rows 4`). Cycles are the cycle model of the whole schedule, which "
             "tests/accel/test_rtl.py asserts equal to the RTL's clocks.", "",
             "## Cycles per image (any board)", "",
             cycles_table(cycle_rows, "model"),
             "", "numpy, the same int8 model (dense integer matrices), one thread of this machine: "
             + ", ".join(f"{m} {v:,.0f} images/s" for m, v in numpy_ips.items()) + ".", "",
             "![images per second per 100 MHz against the array's cells](accel_throughput.png)", ""]
    if build_rows:
        lines += ["## Builds", "", *builds_lines(build_rows)]
    if resnet:
        lines += ["", *resnet_section(*resnet)]
    return "\n".join(lines)


def plot(cycle_rows, directory):
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in sorted({r["model"] for r in cycle_rows}):
        rows = sorted((r for r in cycle_rows if r["model"] == model), key=lambda r: r["cells"])
        for key, style, label in (("cycles_batch1", "--", "batch 1"), ("cycles_batchB", "-", "batch 16")):
            ax.plot([r["cells"] for r in rows], [1e8 / r[key] for r in rows], style, marker="o",
                    label=f"{model}, {label}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("array cells (rows x cols), alpha 8")
    ax.set_ylabel("images/s per 100 MHz")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return report.save_figure(fig, directory, "accel_throughput.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", nargs="*", default=[], help="directories of python -m fpga build --model")
    parser.add_argument("--models", help="directory holding colcomb/model.npz and dense/model.npz (default: "
                                         "compress them into a temporary directory, seed 0, as the builds were)")
    parser.add_argument("--resnet", help="a packed residual CNN (8x8 digits): its cycles on the graph accelerator, "
                                         "and its builds among --builds")
    parser.add_argument("--rtl", action="store_true", help="also run 100 images through each array shape in "
                                                          "Verilator and check cycles against the cycle model")
    report.docs_argument(parser, "accel.md")
    args = parser.parse_args(argv)

    from software.frontend.arrival import load_data
    from software.packfile import load
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(args.models) if args.models else pathlib.Path(tmp)
        models = {m: (base / m / "model.npz" if args.models else compress(tmp, m)) for m in ("colcomb", "dense")}
        (_, _, x_test, _), _ = load_data("digits", None, 0)
        x_ints = {}
        numpy_ips = {}
        for method, path in models.items():
            model, _ = load(path)
            x_ints[method] = model.quantize_input(x_test).reshape(len(x_test), -1)
            numpy_ips[method] = numpy_images_per_second(model, x_ints[method])
        shapes = [(4, 4, 16), (4, 2, 16), (8, 8, 16), (16, 16, 16), (32, 32, 16)]
        cycle_rows = model_rows(models, x_ints, shapes)
        resnet = None
        if args.resnet:
            models["resnet colcomb"] = pathlib.Path(args.resnet)
            net, _ = load(args.resnet)
            x_ints["resnet colcomb"] = net.quantize_input(x_test)
            resnet = (model_rows({"resnet colcomb": models["resnet colcomb"]}, None,
                                 [(4, 4, 4), (4, 4, 16), (8, 8, 16), (16, 16, 16)]),
                      golden_images_per_second(net, x_ints["resnet colcomb"][:100]))
        build_rows = rows_for(models, args.builds, x_ints)
        if args.rtl:
            check_rtl(models, x_ints, shapes)

    body = page_body(cycle_rows, numpy_ips, [r for r in build_rows if r["model"] != "resnet colcomb"],
                     resnet and (*resnet, [r for r in build_rows if r["model"] == "resnet colcomb"]))
    print(body)
    if args.docs:
        page = report.write_page(args.docs, "accel.md", "The model accelerator: fit and speed",
                                 report.command("accel.py", sys.argv[1:] if argv is None else argv), body)
        print(f"wrote {page} and {plot(cycle_rows, args.docs)}")
    return 0


def check_rtl(models, x_ints, shapes):
    from sim.accel import run_accelerator
    from software.packfile import digest, load
    from software.packing.program import compile_program
    for method, path in models.items():
        model, _ = load(path)
        x = x_ints[method][:100]
        for rows, cols, batch in shapes[:3]:
            program = compile_program(model, digest(path), rows=rows, cols=cols, batch=batch)
            run = run_accelerator(program, model.run_golden(x), x)
            print(f"RTL {method} {rows}x{cols} batch {batch}: 100 images bit-exact, {run.cycles} cycles "
                  f"(model {run.model_cycles})", file=sys.stderr)
            if run.cycles != run.model_cycles:
                raise SystemExit("RTL cycles differ from the cycle model")


if __name__ == "__main__":
    sys.exit(main())
