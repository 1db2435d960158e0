"""Bring your own model: models that arrive through graph capture (or ONNX), packed for a 32x32 array.

    python benchmarks/byom.py            # the tables (about 10 minutes on 2 cores)
    python benchmarks/byom.py --docs     # also write docs/results/byom.md

Summary table, one row per model (software/frontend/: capture with torch.export, integer graph,
packing), array 32x32, alpha 8, int8 (8-bit unsigned activations, 8-bit signed weights):
  on array / host   matrices the array multiplies (a grouped convolution counts one per group) /
                    ops the host runs in the integer model (named below the table)
  MACs              dense multiply-accumulates of one sample
  tiles, cycles     the cycle model (equal to the RTL's, asserted in tests/sim) over one pass of the
                    evaluation inputs: dense (every weight, alpha 1) vs packed (column combining)
  float / int8 / packed   accuracy of the float model (dense), the dense model in integers, and the
                    pruned model in integers as packed; models without labels report agreement
  compile           capture + calibration + quantization + packing of the packed model, seconds

Digits models (MLP, the ResNet with BatchNorm and two residual blocks, a depthwise-separable CNN) are
trained here (30 dense epochs, then 30 epochs of column combining with joint optimization, alpha 8,
gamma 0.5; seed 0) and evaluated on the 450 test images. ResNet-18 (examples/models/resnet.py,
torchvision's layout, random weights: the numbers are shapes and sparsity, not accuracy) takes one
3x32x32 input, column-combined in one shot (the last pruning event of joint optimization, no
training). MiniLM-L6 (the pretrained all-MiniLM-L6-v2 encoder over 16 embedded tokens) is dense int8;
its fidelity is the cosine similarity of the mean token state to the float model's.
"""

import argparse
import dataclasses
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import report  # noqa: E402
from software.frontend.capture import capture  # noqa: E402
from software.frontend.compress import Options, _cost, compress, dense_cost, packed_cost  # noqa: E402
from software.frontend.intgraph import export_graph  # noqa: E402
from software.frontend.jointopt import ColumnCombiningSchedule  # noqa: E402
from software.frontend.pruning import prunable_layers  # noqa: E402
from software.packing.colcomb import dense_grouping, pack  # noqa: E402

ROWS, ALPHA, GAMMA = 32, 8, 0.5
DIGITS = [
    ("digits MLP", "digits", None),
    ("digits ResNet (BN, 2 residual blocks)", "examples.models.resnet:digits_resnet", (1, 8, 8)),
    ("digits depthwise-separable CNN", "examples.models.mobile:digits_separable", (1, 8, 8)),
]
HEADERS = ["model", "on array / host", "MACs / sample", "tiles dense", "tiles packed", "cycles dense",
           "cycles packed", "float", "int8", "packed", "compile s"]


@dataclasses.dataclass
class Row:
    name: str
    array: int
    host: list
    macs: int
    dense: object
    packed: object
    accuracy: tuple
    compile_seconds: float

    def cells(self):
        fmt = lambda a: "-" if a is None else a if isinstance(a, str) else f"{a:.2%}"  # noqa: E731
        return [self.name, f"{self.array} / {len(self.host)}", f"{self.macs:,}", self.dense.tiles, self.packed.tiles,
                f"{self.dense.cycles:,}", f"{self.packed.cycles:,}", *map(fmt, self.accuracy),
                f"{self.compile_seconds:.1f}"]


def digits_row(name, model, shape, progress):
    opts = Options(model=model, input_shape=shape, method="colcomb", alpha=ALPHA, gamma=GAMMA, rows=ROWS,
                   progress=progress)
    result = compress(opts)
    int8 = dense_int8_accuracy(result, opts)
    return Row(name, len(result.int_model.layers), [n.name for n in result.int_model.host_ops],
               result.macs // result.test_images, result.dense, result.packed,
               (result.accuracy["float_dense"], int8, result.accuracy["integer"]), result.compile_seconds)


def dense_int8_accuracy(result, opts):
    from software.frontend.arrival import load_data
    (x_train, _, x_test, y_test), _ = load_data("digits", opts.input_shape)
    model = export_graph(capture(result.dense_model, tuple(x_train.shape[1:])), opts.array_config(), x_train)
    return float((model.predict(model.quantize_input(x_test)) == y_test.numpy()).mean())


def one_shot_colcomb(model):
    """The last pruning event of joint optimization on every layer, without training: {module path: grouping}."""
    schedule = ColumnCombiningSchedule(epochs=1, alpha=ALPHA, gamma=GAMMA)
    for name, module in prunable_layers(model):
        schedule.prune_event(name, module, schedule.events)
    return schedule.groups


def per_layer(config, int_model, x_int):
    rows = []
    dense_config = dataclasses.replace(config, alpha=1)
    for layer, vectors in zip(int_model.layers, int_model.layer_inputs(x_int)):
        F, K = layer.out_features, layer.in_features
        d = _cost(dense_config, [pack(np.ones((F, K), dtype=np.int64), dense_grouping(K), 1)], [np.zeros_like(vectors)])
        p = _cost(config, [layer.packing], [vectors])
        rows.append([layer.name, f"{F}x{K}", len(vectors), f"{F * K * len(vectors):,}", d.tiles, p.tiles,
                     f"{d.cycles:,}", f"{p.cycles:,}", f"{d.cycles / p.cycles:.2f}x"])
    return rows


def resnet18_rows():
    from examples.models.resnet import resnet18
    torch.manual_seed(0)
    model = resnet18().eval()
    config = Options(rows=ROWS, alpha=ALPHA).array_config()
    start = time.perf_counter()
    groups = one_shot_colcomb(model)
    x = torch.rand(8, 3, 32, 32)
    int_model = export_graph(capture(model, (3, 32, 32)), config, x, groups=groups)
    seconds = time.perf_counter() - start
    x_int = int_model.quantize_input(x[:1])
    macs = int_model.macs(x_int)
    row = Row("ResNet-18, 3x32x32 (random weights, one-shot colcomb)", len(int_model.layers),
              [n.name for n in int_model.host_ops], macs, dense_cost(int_model, x_int), packed_cost(int_model, x_int),
              (None, None, None), seconds)
    return row, per_layer(config, int_model, x_int)


def minilm_row():
    from examples.models.minilm import FFN_LAYERS, encoder, token_embeddings
    sentences = ["The quick brown fox jumps over the lazy dog.", "Systolic arrays multiply matrices in lockstep.",
                 "It will rain in the afternoon, then clear up.", "FPGAs can run sparse neural networks.",
                 "Column combining packs sparse columns together.", "She read the book in one evening.",
                 "The train to the city leaves every hour.", "Quantized models need calibration data.",
                 "A cat sat on the warm windowsill.", "Prices rose sharply over the last month."]
    x = token_embeddings(sentences, 16)
    model = encoder()
    config = Options(rows=ROWS, alpha=ALPHA).array_config()
    start = time.perf_counter()
    graph = capture(model, (16, 384))
    int_model = export_graph(graph, config, x[:8])
    seconds = time.perf_counter() - start
    x_int = int_model.quantize_input(x[8:])
    y = int_model.dequantize_output(int_model.run_golden(x_int)).mean(axis=1)
    with torch.no_grad():
        f = model(x[8:]).numpy().mean(axis=1)
    cosine = float(np.mean((y * f).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(f, axis=1)))
    ffn = [n.name for n in graph.array_nodes if n.source in FFN_LAYERS]
    macs = int_model.macs(x_int)
    row = Row("MiniLM-L6 encoder, 16 tokens (pretrained, dense int8)", len(int_model.layers),
              [n.name for n in int_model.host_ops], macs // len(x_int), dense_cost(int_model, x_int),
              packed_cost(int_model, x_int), (None, f"cosine {cosine:.3f}", None), seconds)
    return row, ffn


SEPARABLE_NOTE = ("The depthwise-separable CNN's depthwise convolutions are one 1 x 9 matrix per channel (as a grouped "
                  "convolution is lowered here), each a tile of its own with every output position as a vector: they "
                  "dominate its cycles, whatever the packing, and column combining leaves them dense.")


def page_note():
    """The docstring's column definitions (as preformatted text) and its paragraph on the models."""
    parts = __doc__.split("\n\n")
    return "```text\n" + parts[2].strip() + "\n```\n\n" + parts[3].strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-resnet18", action="store_true", help="skip ResNet-18")
    parser.add_argument("--no-minilm", action="store_true", help="skip MiniLM-L6")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    report.docs_argument(parser, "byom.md")
    args = parser.parse_args(argv)
    rows, notes, sections = [], [SEPARABLE_NOTE], []
    for name, model, shape in DIGITS:
        rows.append(digits_row(name, model, shape, not args.quiet))
        print(report.markdown_table(HEADERS, [r.cells() for r in rows[-1:]]), flush=True)
    if not args.no_resnet18:
        row, layers = resnet18_rows()
        rows.append(row)
        sections.append(("ResNet-18 per layer (one 3x32x32 input, 32x32 array, alpha 8)",
                         report.markdown_table(["matrix", "F x K", "vectors", "MACs", "tiles dense", "tiles packed",
                                                "cycles dense", "cycles packed", "fewer cycles"], layers)))
    if not args.no_minilm:
        row, ffn = minilm_row()
        rows.append(row)
        notes.append(f"MiniLM-L6: the int8 column is the cosine similarity of the integer model's mean token state "
                     f"to the float model's (no labels; every tensor, softmax and LayerNorm outputs included, is "
                     f"8-bit with one power-of-two scale per tensor); its 12 FFN layers on the array are {', '.join(ffn)}; "
                     f"the other 24 matrices are the attention projections (query, key, value, output).")
    table = report.markdown_table(HEADERS, [r.cells() for r in rows])
    host = "\n".join(f"- {r.name}: {', '.join(sorted(set(h.rstrip('_0123456789') for h in r.host)))} "
                     f"({len(r.host)} nodes)" for r in rows if r.host)
    print("\n" + table)
    print("\nhost ops:\n" + (host or "none"))
    for title, body in sections:
        print(f"\n{title}\n{body}")
    for note in notes:
        print("\n" + note)
    if args.docs:
        body = "\n\n".join([table, "Host ops (run in the integer golden model on the host):\n\n" + (host or "none"),
                            *notes, *(f"## {t}\n\n{b}" for t, b in sections)])
        page = report.write_page(args.docs, "byom.md", "Results: bring your own model",
                                 report.command("byom.py", ["--docs"]), body,
                                 note=page_note())
        print(f"\nwrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
