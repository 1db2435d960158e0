"""``python -m software compress``: train, prune, quantize and pack a model for the array, in one command.

    python -m software compress --model digits --method colcomb --alpha 8 --gamma 0.5 \\
        --quant int8 --rows 32 --cols 32 -o out/

1. the model (software.frontend.arrival): ``digits`` (the 64->128->64->10 MLP, trained ``--epochs`` from
   ``--seed``), ``pkg.module:factory`` with ``--weights``, an ONNX file, or a whole-module pickle with
   ``--trust-pickle``; the data: digits or ``--data file.npz``. The model is captured into a layer
   graph (software.frontend.capture / onnx_import) before any training, so that what cannot run is
   refused first;
2. pruning during ``--finetune-epochs`` of training by the ``--method`` of the registry
   software.frontend.sparsity (one module per method): column combining under joint optimization,
   unstructured magnitude, N:M, tile-wise, or none (dense);
3. integer export of the captured graph (software.frontend.intgraph): per-channel power-of-two weights,
   calibrated power-of-two activations, requantization by shifts; optionally term quantization;
4. packing for an R x C array with alpha activations per column (by the method's own grouping,
   column combining's, or else a lossless gamma=0 grouping) and its cost on the test split from the
   cycle model (equal to the RTL's cycles, asserted in tests/sim);
5. ``-o DIR``: ``model.npz`` (packed model, manifest inside), ``manifest.json`` (the same manifest,
   readable) and ``report.json`` (the table), each written atomically once everything succeeded.

Bad input (an unsupported layer, a shape that does not fit, a corrupt file, an invalid array)
gets one line on stderr naming the layer or file and exit status 2; nothing is written.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import pickle
import shutil
import sys
import textwrap
import zipfile

import numpy as np
import torch
from torch import nn

from software.packing.colcomb import dense_grouping, pack
from spec import ArrayConfig
from software.golden.cycles import layer_cost
from software.frontend.intgraph import GraphModel
from software.frontend.intmodel import TermBudget
from software.output_set import output_problem, output_set
from software.output_set import write_atomically
from software.packfile import PackedModelError, load, save
from software.packing.schedule import schedule_layer
from software.frontend.sparsity import SPARSITY, CompressError, SparsityMethod, lookup, method_flags

METHODS = tuple(SPARSITY)       # the --method names; software/frontend/sparsity/ has one module per method
QUANTS = {"int8": 8, "int6": 6, "int4": 4, "tq": 8}
ACC_WIDTH = 32
DIGITS_INPUTS = 64
DIGITS_PIXEL_MAX = 1.0         # software.models.digits scales pixels to [0, 1]


# ----------------------------------------------------------------------------------------------
# Options


@dataclasses.dataclass(frozen=True)
class Options:
    model: str = "digits"           # digits, pkg.module:factory, model.onnx or a pickled module file
    weights: str | None = None      # a state_dict for a factory (torch.load weights_only=True)
    data: str = "digits"            # digits or a .npz with x (and y)
    input_shape: tuple | None = None    # reshape every sample of the data
    trust_pickle: bool = False      # unpickle a whole-module --model file (runs code from the file)
    method: str = "colcomb"
    alpha: int = 8
    # The methods' parameters (software/frontend/sparsity/: the Flags of the methods that read them).
    gamma: float = 0.5              # colcomb
    sparsity: float = 0.75          # magnitude and tile-wise target
    nm: tuple = (2, 4)
    tile_size: int | None = None    # tile-wise: output channels per tile (default: array rows)
    quant: str = "int8"
    term_group: int = 8
    weight_terms: float = 1.75      # per weight, on average over a group (tq)
    data_terms: int = 3             # per activation (tq)
    rows: int = 32
    cols: int | None = None
    max_batch: int = 64
    epochs: int | None = None       # dense training (default 30 for digits or a factory without weights, else 0)
    finetune_epochs: int = 30
    lr: float = 3e-3
    seed: int = 0
    progress: bool = True

    def array_config(self) -> ArrayConfig:
        bits = QUANTS[self.quant]
        return ArrayConfig(rows=self.rows, cols=self.rows if self.cols is None else self.cols, alpha=self.alpha,
                           act_width=bits, act_signed=False, weight_width=bits, weight_signed=True,
                           acc_width=ACC_WIDTH, max_batch=self.max_batch)

    def term_budget(self) -> TermBudget | None:
        if self.quant != "tq":
            return None
        budget = self.weight_terms * self.term_group
        if self.weight_terms <= 0 or abs(budget - round(budget)) > 1e-9:
            raise CompressError(f"--weight-terms {self.weight_terms} x --term-group {self.term_group} must be a "
                                "positive whole number of terms per group")
        return TermBudget(group=self.term_group, weight_terms=int(round(budget)), data_terms=self.data_terms)

    @property
    def sparsity_method(self) -> SparsityMethod:
        return lookup(self.method)

    def label(self) -> str:
        return self.sparsity_method.label(self)

    def quant_label(self) -> str:
        tb = self.term_budget()
        if tb is None:
            return self.quant
        return f"tq g={tb.group} w={tb.weight_terms}/{tb.group} d={tb.data_terms}"

    def validate(self):
        method = self.sparsity_method       # CompressError on an unknown method
        if self.quant not in QUANTS:
            raise CompressError(f"unknown quantization {self.quant!r}; choose from {', '.join(QUANTS)}")
        for flag, _ in method_flags():     # every method's parameters, whichever method runs
            flag.validate(getattr(self, flag.dest))
        for name in ("finetune_epochs", "term_group", "data_terms"):
            value = getattr(self, name)
            if value < (0 if name == "finetune_epochs" else 1):
                raise CompressError(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'finetune_epochs' else '>= 1'}, not {value}")
        for name in ("lr", "weight_terms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise CompressError(f"--{name.replace('_', '-')} must be a positive number, not {value}")
        if self.epochs is not None and self.epochs < 0:
            raise CompressError(f"--epochs must be >= 0, not {self.epochs}")
        method.validate(self)
        self.array_config()     # ConfigError (a ValueError) on a bad array
        self.term_budget()
        return self


# ----------------------------------------------------------------------------------------------
# Models


def load_model_file(path, *, trust_pickle=False) -> nn.Module:
    """A model written by ``torch.save(model)``; CompressError naming the file if it is not one.

    Such a file is a pickle of the whole module, and unpickling runs whatever code the file names.
    So it is read with ``weights_only=True`` (tensors and plain containers only, nothing executed)
    unless ``trust_pickle`` says the user trusts the file."""
    if not os.path.isfile(path):
        raise CompressError(f"{path}: no such model file (give 'digits' or a file written by torch.save(model))")
    try:
        model = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, AttributeError, ImportError,
            ModuleNotFoundError, ValueError, OSError, IndexError, KeyError, TypeError) as e:
        text = str(e).strip()
        if not trust_pickle and "unsupported global" in text.lower():     # the file names a class or function
            raise CompressError(f"{path}: a pickled module, and unpickling it would run code from the file; "
                                "pass --trust-pickle only if you trust where it came from") from None
        # weights_only's own complaint is a paragraph: keep its line that says what was wrong.
        details = [line.strip() for line in text.splitlines() if "WeightsUnpickler error" in line or "Unsupported" in line]
        reason = (details[-1] if details else text.splitlines()[0]) if text else type(e).__name__
        raise CompressError(f"{path}: not a readable torch model file ({reason})") from None
    if not isinstance(model, nn.Module):
        raise CompressError(f"{path}: holds a {type(model).__name__}, not an nn.Module (save the model itself, "
                            "not its state_dict)")
    return model.float().cpu()


def make_schedule(opts: Options, model: nn.Module):
    """The method's pruning during fine-tuning (a masks_hook), or None to keep ``model`` as it is."""
    return opts.sparsity_method.schedule(opts, model)


# ----------------------------------------------------------------------------------------------
# Cost on the array


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Cost of running a model over a batch, layer after layer, on one array (cycle model)."""

    tiles: int          # weight tiles of one pass over the layers (loaded again for every max_batch chunk)
    cycles: int         # first weight beat to last result beat, summed over the layers
    useful_macs: int    # nonzero weights x vectors
    cells: int

    @property
    def utilization(self):
        return self.useful_macs / (self.cells * self.cycles) if self.cycles else 0.0

    def as_dict(self):
        return {**dataclasses.asdict(self), "utilization": self.utilization}


def _cost(config, packings, inputs):
    tiles = cycles = macs = 0
    for packing, vectors in zip(packings, inputs):
        schedule = schedule_layer(config, packing, vectors)
        cost = layer_cost(schedule)
        F, G = packing.packed.shape
        tiles += math.ceil(F / config.rows) * max(1, math.ceil(G / config.cols))
        cycles += cost.cycles
        macs += cost.useful_macs
    return ModelCost(tiles=tiles, cycles=cycles, useful_macs=macs, cells=config.rows * config.cols)


def packed_cost(model: GraphModel, x_int) -> ModelCost:
    """The packed integer model on its own array."""
    return _cost(model.config, [l.packing for l in model.layers], model.layer_inputs(x_int))


def dense_cost(model: GraphModel, x_int) -> ModelCost:
    """The same layer shapes, every weight kept, on a dense (alpha 1) array of the same size."""
    config = dataclasses.replace(model.config, alpha=1)
    packings, inputs = [], []
    for layer, vectors in zip(model.layers, model.layer_inputs(x_int)):
        F, K = layer.out_features, layer.in_features
        packings.append(pack(np.ones((F, K), dtype=np.int64), dense_grouping(K), 1))
        inputs.append(np.zeros_like(vectors))
    return _cost(config, packings, inputs)


def weight_sparsity(model: GraphModel) -> float:
    total = sum(l.out_features * l.in_features for l in model.layers)
    nonzero = sum(int(np.count_nonzero(l.packing.packed)) for l in model.layers)
    return 1.0 - nonzero / total


# ----------------------------------------------------------------------------------------------
# The pipeline


@dataclasses.dataclass
class Result:
    options: Options
    dense_model: nn.Module
    pruned_model: nn.Module
    int_model: GraphModel
    accuracy: dict          # float_dense, pruned_float, integer
    sparsity: float         # zero weights of the integer model
    dense: ModelCost
    packed: ModelCost
    term_pairs: int
    test_images: int
    pruning_log: list
    data: str = "digits"
    labelled: bool = True
    compile_seconds: float = 0.0
    macs: int = 0
    packing_kept: dict = dataclasses.field(default_factory=dict)   # layer -> per event, nonzeros kept by packing

    def report(self) -> dict:
        return {
            "method": self.options.label(), "quant": self.options.quant_label(),
            "array": self.int_model.config.as_dict(), "test_images": self.test_images,
            "accuracy": self.accuracy, "sparsity": self.sparsity,
            "dense": self.dense.as_dict(), "packed": self.packed.as_dict(),
            "tiles_reduction": self.dense.tiles / self.packed.tiles,
            "cycles_reduction": self.dense.cycles / self.packed.cycles,
            "term_pairs": self.term_pairs,
            "groups": {l.name: l.groups for l in self.int_model.layers},
            "data": self.data, "accuracy_is": "accuracy" if self.labelled else "agreement with the float model",
            "array_layers": len(self.int_model.layers),
            "host_ops": [n.name for n in getattr(self.int_model, "host_ops", [])],
            "macs": self.macs, "compile_seconds": self.compile_seconds,
            "packing_kept": {name: list(kept) for name, kept in self.packing_kept.items()},
            "pruning_events": [{"event": k, "epoch": e, "sparsity": s} for k, e, s in self.pruning_log],
        }


def accuracy_of(predictions, labels) -> float:
    return float((np.asarray(predictions) == np.asarray(labels)).mean())


def float_accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return accuracy_of(model(x).argmax(dim=1).numpy(), y.numpy())


def _arrive(opts: Options):
    """The dense model: (nn.Module or None, float Graph or None, where, default epochs)."""
    from software.models.digits import build_model
    from .arrival import load_factory
    if opts.model == "digits":
        return build_model(seed=opts.seed), None, "digits", 30
    if opts.weights is not None and ":" not in opts.model:
        raise CompressError("--weights goes with --model pkg.module:factory")
    if opts.model.endswith(".onnx"):
        from .onnx_import import import_onnx
        return None, import_onnx(opts.model), opts.model, 0
    if ":" in opts.model and not os.path.exists(opts.model):
        # a factory without weights is trained from its initialization (from --seed), like digits
        with torch.random.fork_rng():
            torch.manual_seed(opts.seed)
            model = load_factory(opts.model, opts.weights)
        return model, None, opts.model, 0 if opts.weights else 30
    return load_model_file(opts.model, trust_pickle=opts.trust_pickle), None, opts.model, 0


def _check_fit(graph, input_shape, labels, where):
    from .graph import infer_shapes
    out = infer_shapes(graph, input_shape)[graph.output]
    if labels is not None:
        classes = int(labels.max()) + 1
        if len(out) != 1 or out[0] < classes:
            raise CompressError(f"{where}: the model outputs {out} per sample; the data has {classes} classes")


def compress(opts: Options, *, dense_model: nn.Module | None = None) -> Result:
    """Run the pipeline; ``dense_model`` (already trained) skips the dense training (benchmarks reuse it)."""
    import time
    from software.models.digits import DigitsSplit, train
    from .arrival import load_data
    from .capture import capture
    from .graph import GraphError, run_float
    from .intgraph import export_graph

    opts.validate()
    config = opts.array_config()
    (x_train, y_train, x_test, y_test), data_name = load_data(opts.data, opts.input_shape, opts.seed)
    input_shape = tuple(x_train.shape[1:])
    labelled = y_train is not None
    split = DigitsSplit(x_train, y_train, x_test, y_test) if labelled else None
    graph = None
    try:
        if dense_model is None:
            model, graph, where, default_epochs = _arrive(opts)
            epochs = default_epochs if opts.epochs is None else opts.epochs
            if model is not None:
                graph = capture(model, input_shape)
                _check_fit(graph, input_shape, y_train, where)   # before spending time on training
                if epochs and labelled:
                    train(model, epochs=epochs, seed=opts.seed, progress=opts.progress, split=split)
                    graph = None        # captured before training: the weights changed
                dense_model = model
            else:
                _check_fit(graph, input_shape, y_train, where)
        else:
            graph = capture(dense_model, input_shape)
            _check_fit(graph, input_shape, y_train, "model")
    except GraphError as e:
        raise CompressError(str(e)) from None

    def float_outputs(m):
        if isinstance(m, nn.Module):
            m.eval()
            with torch.no_grad():
                return m(x_test)
        return run_float(m, x_test)

    reference = float_outputs(dense_model if dense_model is not None else graph)
    score = (lambda out: accuracy_of(np.asarray(out).reshape(len(out), -1).argmax(1), y_test.numpy())) if labelled \
        else (lambda out: accuracy_of(np.asarray(out).reshape(len(out), -1).argmax(1),
                                      reference.reshape(len(reference), -1).argmax(1).numpy()))
    accuracy = {"float_dense": score(reference)}

    schedule = None
    if dense_model is not None and labelled:
        schedule = make_schedule(opts, dense_model)
    elif opts.method != "dense":
        why = "an ONNX model is not trained here" if dense_model is None else "the data has no labels (y)"
        raise CompressError(f"--method {opts.method} prunes while training, but {why}: use --method dense")
    if schedule is None:
        pruned = dense_model
    else:
        pruned = copy.deepcopy(dense_model)
        train(pruned, epochs=opts.finetune_epochs, masks_hook=schedule, lr=opts.lr, seed=opts.seed,
              progress=opts.progress, split=split)
    if pruned is not None:
        accuracy["pruned_float"] = score(float_outputs(pruned))
    else:
        accuracy["pruned_float"] = accuracy["float_dense"]

    groups = None if schedule is None else opts.sparsity_method.groups(schedule)
    start = time.perf_counter()
    try:
        if pruned is not None and (schedule is not None or graph is None):
            graph = capture(pruned, input_shape)
        int_model = export_graph(graph, config, x_train, groups=groups, term_budget=opts.term_budget(),
                                 progress=opts.progress)
    except GraphError as e:
        raise CompressError(str(e)) from None
    compile_seconds = time.perf_counter() - start
    x_int = int_model.quantize_input(x_test)
    accuracy["integer"] = score(int_model.run_golden(x_int))
    return Result(options=opts, dense_model=dense_model, pruned_model=pruned, int_model=int_model,
                  accuracy=accuracy, sparsity=weight_sparsity(int_model),
                  dense=dense_cost(int_model, x_int), packed=packed_cost(int_model, x_int),
                  term_pairs=int_model.term_pairs(x_int), test_images=len(x_int),
                  pruning_log=list(schedule.log) if schedule is not None else [],
                  data=data_name, labelled=labelled, compile_seconds=compile_seconds,
                  macs=int_model.macs(x_int),
                  packing_kept=_kept_by_layer(graph, getattr(schedule, "kept", {})))


def _kept_by_layer(graph, kept_by_module):
    """The pruning schedule's kept fractions (by module path) under the names of the graph's
    layers (by which the report and the packed model name them)."""
    return {node.name: list(kept_by_module[node.source]) for node in graph.nodes if node.source in kept_by_module}


# ----------------------------------------------------------------------------------------------
# Output


def format_table(headers, rows) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line("-" * w for w in widths), *(line(r) for r in rows)])


def format_result(result: Result) -> str:
    opts, cfg = result.options, result.int_model.config
    acc = result.accuracy
    head = (f"{result.data}: {opts.label()}, {opts.quant_label()}, {cfg.rows}x{cfg.cols} array "
            f"(alpha {cfg.alpha}), {result.test_images} test images")
    accuracy = format_table(["model", "accuracy"], [
        ["float dense", f"{acc['float_dense']:.2%}"],
        [f"pruned float ({opts.label()})", f"{acc['pruned_float']:.2%}"],
        [f"integer ({opts.quant_label()})", f"{acc['integer']:.2%}"],
    ])
    array = format_table(["on the array", "sparsity", "tiles", "cycles", "utilization"], [
        ["dense (alpha 1)", "0.00%", result.dense.tiles, result.dense.cycles, f"{result.dense.utilization:.3f}"],
        [f"packed (alpha {cfg.alpha})", f"{result.sparsity:.2%}", result.packed.tiles, result.packed.cycles,
         f"{result.packed.utilization:.3f}"],
    ])
    kept = lambda name: (f" (packing kept {min(result.packing_kept[name]):.1%} of the nonzeros "  # noqa: E731
                         f"at worst over {len(result.packing_kept[name])} events)" if result.packing_kept.get(name) else "")
    groups = ", ".join(f"{l.name}: {l.out_features}x{l.in_features} -> {l.groups} groups{kept(l.name)}"
                       for l in result.int_model.layers[:12]) + (" ..." if len(result.int_model.layers) > 12 else "")
    host = [n.name for n in getattr(result.int_model, "host_ops", [])]
    groups += f"\n{len(result.int_model.layers)} matrices on the array, host ops: {', '.join(host) or 'none'}; " \
              f"{result.macs} MACs; compiled (capture, calibration, packing) in {result.compile_seconds:.1f} s"
    if not result.labelled:
        head += " (no labels: accuracy is agreement with the float model's argmax)"
    summary = (f"{result.dense.tiles / result.packed.tiles:.2f}x fewer tiles, "
               f"{result.dense.cycles / result.packed.cycles:.2f}x fewer cycles; {groups}")
    return "\n\n".join([head, accuracy, array, summary])


OUTPUT_MARKER = "model.npz"     # what makes a directory an earlier output of compress


def write_outputs(result: Result, out_dir):
    """model.npz, manifest.json, report.json as directory ``out_dir``, written as a set
    (software.output_set): all three or, on any failure, the previous output untouched."""
    report = result.report()
    with output_set(out_dir, marker=OUTPUT_MARKER) as staging:
        manifest = save(result.int_model, os.path.join(staging, OUTPUT_MARKER), info=report)
        write_atomically(os.path.join(staging, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        write_atomically(os.path.join(staging, "report.json"), json.dumps(report, indent=2, sort_keys=True) + "\n")


def check_input(model: GraphModel, path, x, name="the data"):
    """A packed model that can run the samples ``x``: as many values per sample, and an input scale that
    does not saturate them: with 2**e * (2**act_width - 1) < max |x| the largest inputs would all become
    the same integer and the model would answer from clipped samples."""
    values = int(np.prod(tuple(x.shape[1:])))
    if int(np.prod(model.input_shape)) != values:
        raise PackedModelError(f"{path}: takes inputs of shape {tuple(model.input_shape)}, {name} samples have "
                               f"{values} values")
    return _check_input_scale(model, path, float(np.abs(np.asarray(x)).max(initial=0.0)), name)


def _check_input_scale(model, path, x_max, name):
    top = (1 << model.act_bits) - 1
    if 2.0 ** model.input_exponent * top < x_max:
        least = math.ceil(math.log2(x_max / top))
        raise PackedModelError(f"{path}: input scale 2**{model.input_exponent} saturates {name} (up to "
                               f"{x_max:g}); a {model.act_bits}-bit input needs an exponent of at least {least}")
    return model


def check_digits_input(model: GraphModel, path):
    """A packed model that the digits commands can run: 64 inputs, pixels (0 to 1) not saturated."""
    if int(np.prod(model.input_shape)) != DIGITS_INPUTS:
        raise PackedModelError(f"{path}: takes inputs of shape {model.input_shape}, digits images have "
                               f"{DIGITS_INPUTS} values")
    return _check_input_scale(model, path, DIGITS_PIXEL_MAX, "digits pixels")


# ----------------------------------------------------------------------------------------------
# Command line


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage dump) with exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _help_width():
    return max(shutil.get_terminal_size().columns - 2, 40)      # as argparse.HelpFormatter


def _fill(text, indent=""):
    return textwrap.fill(text, _help_width(), initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False)


def methods_help() -> str:
    """The registry as a table for --help (argparse indents it by 2): every method's name and summary."""
    width = max(map(len, SPARSITY)) + 2
    lines = []
    for name, method in SPARSITY.items():
        lines += textwrap.wrap(method.summary, _help_width() - 2, initial_indent=f"{name:<{width}}",
                               subsequent_indent=" " * width, break_on_hyphens=False)
    return "\n".join(lines)


def _add_method_arguments(p):
    """--method and the flags of the methods (software/frontend/sparsity/), defaults from Options."""
    defaults = {f.name: f.default for f in dataclasses.fields(Options)}
    group = p.add_argument_group("pruning methods (--method)", methods_help())
    group.add_argument("--method", choices=tuple(SPARSITY), default=defaults["method"],
                       help=f"pruning method, from the table above (default {defaults['method']})")
    for flag, users in method_flags():
        default = defaults[flag.dest]
        text = f"{flag.help} ({', '.join(users)}; default {flag.show(default)})"
        group.add_argument(flag.option, dest=flag.dest, type=flag.type, default=default, metavar=flag.metavar,
                           help=text.replace("%", "%%"))


def build_parser(prog="python -m software"):
    parser = OneLineParser(prog=prog, description="sparsegen front-end: compress a model for the array, "
                                                  "or evaluate a packed model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser(
        "compress", help="train, prune, quantize and pack a model; print its accuracy and cost",
        formatter_class=argparse.RawDescriptionHelpFormatter,   # keeps the methods table; the rest is _fill()ed
        description=_fill("Capture a model (digits, a factory, ONNX) into a layer graph, train (or fine-tune) it, "
                          "prune it while training, quantize it to integers "
                          "with power-of-two scales, pack it for an R x C array with alpha activations per column, "
                          "print accuracy (float dense, pruned float, integer) and the array's tiles, cycles and "
                          "utilization dense vs packed, and write model.npz, manifest.json and report.json into -o."),
        epilog=_fill("Example: python -m software compress --model digits --method colcomb --alpha 8 --gamma 0.5 "
                     "--quant int8 --rows 32 --cols 32 -o out/"))
    p.add_argument("--model", default="digits",
                   help="'digits' (the 64-128-64-10 MLP), pkg.module:factory (any nn.Module, captured with "
                        "torch.export; weights from --weights), model.onnx, or a file written by torch.save(model), "
                        "which needs --trust-pickle (default digits)")
    p.add_argument("--weights", help="state_dict file (torch.save(model.state_dict())) for a factory --model, "
                                     "read with torch.load(weights_only=True): nothing in it runs")
    p.add_argument("--data", default="digits",
                   help="'digits' or a .npz with x (n x sample shape, float) and optionally y (integer labels; "
                        "without y the integer model's fidelity to the float model is reported); 75%% calibrates "
                        "and trains, 25%% evaluates (default digits)")
    p.add_argument("--input-shape", help="reshape every sample, e.g. 1,8,8 for digits into a CNN (default: the "
                                         "data's own shape)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow --model to be a pickled whole module: unpickling runs code named in the file, so a "
                        "hostile file can do anything your account can; without this flag such a file is refused "
                        "and nothing in it runs")
    p.add_argument("--alpha", type=int, default=8, help="activations per array column = columns combined (default 8)")
    _add_method_arguments(p)
    p.add_argument("--quant", choices=tuple(QUANTS), default="int8",
                   help="integer format of weights and activations; tq = int8 with term quantization (default int8)")
    p.add_argument("--term-group", type=int, default=8, help="tq: weights per term budget group (default 8)")
    p.add_argument("--weight-terms", type=float, default=1.75, help="tq: weight terms per value (default 1.75)")
    p.add_argument("--data-terms", type=int, default=3, help="tq: terms per activation (default 3)")
    p.add_argument("--rows", type=int, default=32, help="array rows (default 32)")
    p.add_argument("--cols", type=int, help="array columns (default: --rows)")
    p.add_argument("--max-batch", type=int, default=64, help="array accumulator depth in vectors (default 64)")
    p.add_argument("--epochs", type=int, help="dense training epochs (default 30 for digits and a factory without "
                                              "--weights, 0 for trained weights)")
    p.add_argument("--finetune-epochs", type=int, default=30, help="epochs of training while pruning (default 30)")
    p.add_argument("--lr", type=float, default=3e-3, help="fine-tuning learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization and shuffling (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", required=True, help="output directory for model.npz, manifest.json, report.json")

    e = sub.add_parser("evaluate", help="integer accuracy of a packed model on the digits test split or --data")
    e.add_argument("packed", help="a model.npz written by compress")
    e.add_argument("--data", default="digits", help="'digits' or a .npz with x and y (its evaluation split, as "
                                                    "compress splits it)")
    e.add_argument("--seed", type=int, default=0, help="the split's seed, as given to compress (default 0)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        if args.command == "compress":
            return _compress(args)
        return _evaluate(args)
    except (ValueError, OSError) as e:   # CompressError, ExportError, ConfigError, PackedModelError, ...
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


def _compress(args) -> int:
    if problem := output_problem(args.output, OUTPUT_MARKER):      # before minutes of training
        raise CompressError(problem)
    fields = {f.name for f in dataclasses.fields(Options)}
    from .arrival import parse_shape
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["input_shape"] = parse_shape(args.input_shape) if args.input_shape else None
    opts = Options(**values, progress=not args.quiet).validate()
    result = compress(opts)
    write_outputs(result, args.output)
    print(format_result(result))
    print(f"\nwrote {os.path.join(args.output, 'model.npz')}, manifest.json, report.json")
    return 0


def _evaluate(args) -> int:
    from .arrival import load_data
    model, manifest = load(args.packed)
    shape = tuple(model.input_shape)
    (_, _, x_test, y_test), name = load_data(args.data, None, args.seed)
    check_input(model, args.packed, x_test, name)
    if y_test is None:
        raise CompressError(f"--data {args.data}: no labels (y) to evaluate against")
    x_int = model.quantize_input(x_test.reshape((-1,) + shape))
    accuracy = accuracy_of(model.predict(x_int), y_test.numpy())
    cfg = model.config
    rows = [[l.name, f"{l.out_features}x{l.in_features}", l.groups,
             f"{1 - np.count_nonzero(l.packing.packed) / (l.out_features * l.in_features):.2%}"]
            for l in model.layers]
    print(f"{args.packed}: {cfg.rows}x{cfg.cols} array, alpha {cfg.alpha}, {cfg.act_width}-bit unsigned "
          f"activations, {cfg.weight_width}-bit weights")
    print(format_table(["layer", "F x K", "groups", "sparsity"], rows))
    cost = packed_cost(model, x_int)
    print(f"integer accuracy {accuracy:.2%} on {len(x_int)} test images; {cost.tiles} tiles, {cost.cycles} cycles, "
          f"utilization {cost.utilization:.3f}")
    return 0
