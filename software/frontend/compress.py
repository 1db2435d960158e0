"""``python -m software compress``: train, prune, quantize and pack a model for the array, in one command.

    python -m software compress --model digits --method colcomb --alpha 8 --gamma 0.5 \\
        --quant int8 --rows 32 --cols 32 -o out/

1. the model: ``digits`` (the 64->128->64->10 MLP, trained ``--epochs`` from ``--seed``) or a file
   written by ``torch.save(model)`` (an nn.Sequential of Linear/Conv2d/ReLU/Flatten/Unflatten
   taking digits images as 64 values in [0, 1]; fine-tuned ``--epochs``, default 0);
2. pruning during ``--finetune-epochs`` of training by the ``--method`` of the registry
   software.frontend.sparsity (one module per method): column combining under joint optimization,
   unstructured magnitude, N:M, tile-wise, or none (dense);
3. integer export for the array (software.frontend.intmodel): per-channel power-of-two weights,
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
from software.frontend.intmodel import IntModel, TermBudget, export_model, plan_model
from software.packfile import PackedModelError, load, save, write_atomically
from software.packing.schedule import schedule_layer
from software.frontend.sparsity import SPARSITY, CompressError, SparsityMethod, lookup, method_flags

METHODS = tuple(SPARSITY)       # the --method names; software/frontend/sparsity/ has one module per method
QUANTS = {"int8": 8, "int6": 6, "int4": 4, "tq": 8}
ACC_WIDTH = 32
DIGITS_INPUTS, DIGITS_CLASSES = 64, 10


# ----------------------------------------------------------------------------------------------
# Options


@dataclasses.dataclass(frozen=True)
class Options:
    model: str = "digits"
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
    epochs: int | None = None       # dense training (default 30 for digits, 0 for a model file)
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


def check_digits_model(model: nn.Module, where: str):
    """The model must map onto the array and take 64 digits inputs to 10 logits."""
    plan = plan_model(model, (DIGITS_INPUTS,))
    out = plan[-1][4]
    if out != (DIGITS_CLASSES,):
        raise CompressError(f"{where}: the model outputs {out} per image; digits needs {DIGITS_CLASSES} logits")


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


def packed_cost(model: IntModel, x_int) -> ModelCost:
    """The packed integer model on its own array."""
    return _cost(model.config, [l.packing for l in model.layers], model.layer_inputs(x_int))


def dense_cost(model: IntModel, x_int) -> ModelCost:
    """The same layer shapes, every weight kept, on a dense (alpha 1) array of the same size."""
    config = dataclasses.replace(model.config, alpha=1)
    packings, inputs = [], []
    for layer, vectors in zip(model.layers, model.layer_inputs(x_int)):
        F, K = layer.out_features, layer.in_features
        packings.append(pack(np.ones((F, K), dtype=np.int64), dense_grouping(K), 1))
        inputs.append(np.zeros_like(vectors))
    return _cost(config, packings, inputs)


def weight_sparsity(model: IntModel) -> float:
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
    int_model: IntModel
    accuracy: dict          # float_dense, pruned_float, integer
    sparsity: float         # zero weights of the integer model
    dense: ModelCost
    packed: ModelCost
    term_pairs: int
    test_images: int
    pruning_log: list
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
            "packing_kept": {name: list(kept) for name, kept in self.packing_kept.items()},
            "pruning_events": [{"event": k, "epoch": e, "sparsity": s} for k, e, s in self.pruning_log],
        }


def accuracy_of(predictions, labels) -> float:
    return float((np.asarray(predictions) == np.asarray(labels)).mean())


def float_accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return accuracy_of(model(x).argmax(dim=1).numpy(), y.numpy())


def compress(opts: Options, *, dense_model: nn.Module | None = None) -> Result:
    """Run the pipeline; ``dense_model`` (already trained) skips the dense training (benchmarks reuse it)."""
    from software.models.digits import build_model, load_digits_split, train

    opts.validate()
    config = opts.array_config()
    split = load_digits_split()
    if dense_model is None:
        if opts.model == "digits":
            model, epochs = build_model(seed=opts.seed), 30 if opts.epochs is None else opts.epochs
            where = "digits"
        else:
            model, epochs = load_model_file(opts.model, trust_pickle=opts.trust_pickle), opts.epochs or 0
            where = opts.model
        check_digits_model(model, where)     # before spending time on training
        if epochs:
            train(model, epochs=epochs, seed=opts.seed, progress=opts.progress, split=split)
        dense_model = model
    else:
        check_digits_model(dense_model, "model")
    accuracy = {"float_dense": float_accuracy(dense_model, split.x_test, split.y_test)}

    schedule = make_schedule(opts, dense_model)
    if schedule is None:
        pruned = dense_model
    else:
        pruned = copy.deepcopy(dense_model)
        train(pruned, epochs=opts.finetune_epochs, masks_hook=schedule, lr=opts.lr, seed=opts.seed,
              progress=opts.progress, split=split)
    accuracy["pruned_float"] = float_accuracy(pruned, split.x_test, split.y_test)

    groups = None if schedule is None else opts.sparsity_method.groups(schedule)
    int_model = export_model(pruned, config, split.x_train, groups=groups, term_budget=opts.term_budget())
    x_int = int_model.quantize_input(split.x_test)
    accuracy["integer"] = accuracy_of(int_model.predict(x_int), split.y_test.numpy())
    return Result(options=opts, dense_model=dense_model, pruned_model=pruned, int_model=int_model,
                  accuracy=accuracy, sparsity=weight_sparsity(int_model),
                  dense=dense_cost(int_model, x_int), packed=packed_cost(int_model, x_int),
                  term_pairs=int_model.term_pairs(x_int), test_images=len(x_int),
                  pruning_log=list(schedule.log) if schedule is not None else [],
                  packing_kept=dict(getattr(schedule, "kept", {})))


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
    head = (f"digits: {opts.label()}, {opts.quant_label()}, {cfg.rows}x{cfg.cols} array "
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
                       for l in result.int_model.layers)
    summary = (f"{result.dense.tiles / result.packed.tiles:.2f}x fewer tiles, "
               f"{result.dense.cycles / result.packed.cycles:.2f}x fewer cycles; {groups}")
    return "\n\n".join([head, accuracy, array, summary])


def write_outputs(result: Result, out_dir):
    """model.npz, manifest.json, report.json into ``out_dir``, each atomically."""
    os.makedirs(out_dir, exist_ok=True)
    report = result.report()
    manifest = save(result.int_model, os.path.join(out_dir, "model.npz"), info=report)
    write_atomically(os.path.join(out_dir, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    write_atomically(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2, sort_keys=True) + "\n")


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
        description=_fill("Train (or fine-tune) a digits model, prune it while training, quantize it to integers "
                          "with power-of-two scales, pack it for an R x C array with alpha activations per column, "
                          "print accuracy (float dense, pruned float, integer) and the array's tiles, cycles and "
                          "utilization dense vs packed, and write model.npz, manifest.json and report.json into -o."),
        epilog=_fill("Example: python -m software compress --model digits --method colcomb --alpha 8 --gamma 0.5 "
                     "--quant int8 --rows 32 --cols 32 -o out/"))
    p.add_argument("--model", default="digits",
                   help="'digits' (the 64-128-64-10 MLP) or a file written by torch.save(model), which needs "
                        "--trust-pickle (default digits)")
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
    p.add_argument("--epochs", type=int, help="dense training epochs (default 30 for digits, 0 for a model file)")
    p.add_argument("--finetune-epochs", type=int, default=30, help="epochs of training while pruning (default 30)")
    p.add_argument("--lr", type=float, default=3e-3, help="fine-tuning learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization and shuffling (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", required=True, help="output directory for model.npz, manifest.json, report.json")

    e = sub.add_parser("evaluate", help="integer accuracy of a packed model on the digits test split")
    e.add_argument("packed", help="a model.npz written by compress")
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
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise CompressError(f"output path {args.output} exists and is not a directory")
    fields = {f.name for f in dataclasses.fields(Options)}
    opts = Options(**{k: v for k, v in vars(args).items() if k in fields}, progress=not args.quiet).validate()
    result = compress(opts)
    write_outputs(result, args.output)
    print(format_result(result))
    print(f"\nwrote {os.path.join(args.output, 'model.npz')}, manifest.json, report.json")
    return 0


def _evaluate(args) -> int:
    from software.models.digits import load_digits_split
    model, manifest = load(args.packed)
    split = load_digits_split()
    if int(np.prod(model.input_shape)) != DIGITS_INPUTS:
        raise PackedModelError(f"{args.packed}: takes inputs of shape {model.input_shape}, digits images have "
                               f"{DIGITS_INPUTS} values")
    x_int = model.quantize_input(split.x_test)
    accuracy = accuracy_of(model.predict(x_int), split.y_test.numpy())
    cfg = model.config
    rows = [[l.name, f"{l.out_features}x{l.in_features}", l.groups,
             f"{1 - np.count_nonzero(l.packing.packed) / (l.out_features * l.in_features):.2%}",
             "hidden" if l.hidden else "logits"] for l in model.layers]
    print(f"{args.packed}: {cfg.rows}x{cfg.cols} array, alpha {cfg.alpha}, {cfg.act_width}-bit unsigned "
          f"activations, {cfg.weight_width}-bit weights")
    print(format_table(["layer", "F x K", "groups", "sparsity", "output"], rows))
    cost = packed_cost(model, x_int)
    print(f"integer accuracy {accuracy:.2%} on {len(x_int)} test images; {cost.tiles} tiles, {cost.cycles} cycles, "
          f"utilization {cost.utilization:.3f}")
    return 0
