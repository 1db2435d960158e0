"""`python -m gen`: generate the Verilog of a column-combining systolic array and its manifest."""

import argparse
import hashlib
import os

from software import beats
from software.config import MACS, MULTIPLIERS, ArrayConfig, ConfigError
from software.cycles import CYCLE_FORMULA
from software.schedule import __doc__ as STREAM_ORDER

from .output import fail, output_problem, write_design

TOP = "sparsegen_array"
VERSION = "0.1.0"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are a single line (no usage dump) and exit with status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_array_arguments(parser, *, default_rows=32):
    """Add the array configuration flags (`--rows` ... `--max-batch`) to `parser`.

    Shared with `python -m fpga`, so both commands read an array configuration the same way;
    `config_from_args` turns the parsed flags into an ArrayConfig.
    """
    p = parser
    p.add_argument("--rows", type=int, default=default_rows,
                   help=f"array rows = output channels per tile (default {default_rows})")
    p.add_argument("--cols", type=int, help="array columns = column groups per tile (default: same as --rows)")
    p.add_argument("--sparsity", choices=("dense", "colcomb"), default="colcomb",
                   help="dense: one activation per column, no multiplexer; colcomb: column combining "
                        "(default colcomb)")
    p.add_argument("--alpha", type=int,
                   help="activations per column group, i.e. columns combined (default 8 for colcomb; "
                        "dense means 1)")
    p.add_argument("--act-width", type=int, default=8, help="activation bits (default 8)")
    p.add_argument("--act-signed", action=argparse.BooleanOptionalAction, default=True,
                   help="signed activations (default); --no-act-signed for unsigned, e.g. after ReLU")
    p.add_argument("--weight-width", type=int, default=8, help="weight bits (default 8)")
    p.add_argument("--weight-signed", action=argparse.BooleanOptionalAction, default=True,
                   help="signed weights (default); --no-weight-signed for unsigned")
    p.add_argument("--acc-width", type=int, default=32,
                   help="partial-sum and accumulator bits, signed (default 32); must hold a full row of a tile")
    p.add_argument("--multiplier", choices=MULTIPLIERS, default="parallel",
                   help="multiplier style (default parallel: one product per cell per clock)")
    p.add_argument("--double-buffer", action=argparse.BooleanOptionalAction, default=True,
                   help="two weight banks so the next tile loads while this one computes (default on)")
    p.add_argument("--max-batch", type=int, default=64,
                   help="vectors per tile the output accumulator holds (default 64)")
    return p


def build_parser():
    p = OneLineParser(
        prog="python -m gen",
        description="Generate a weight-stationary column-combining systolic array (Amaranth -> Verilog) "
                    "and a manifest JSON describing its configuration, ports, payload packing, latency and "
                    "cycle model.",
        epilog="Example: python -m gen --rows 32 --sparsity colcomb  (32x32 array, 8 columns combined per group)")
    add_array_arguments(p)
    add_mac_arguments(p)
    p.add_argument("-o", "--output", help="output directory (default build/<rows>x<cols>_<sparsity>_a<alpha>, "
                                          "plus _tq<weight-terms>x<data-terms> with --mac tq)")
    return p


# Defaults of the term budgets when --mac tq is given without them (the paper's ResNet-18 point
# is 1.75 weight terms and 3 data terms).
TQ_DEFAULT_TERMS = {"weight_terms": 2, "data_terms": 3}


def add_mac_arguments(parser):
    """The multiply-accumulate flags (`--mac`, `--weight-terms`, `--data-terms`)."""
    p = parser
    p.add_argument("--mac", choices=MACS, default="int",
                   help="int: integer multiply-accumulate (default); tq: term quantization, weights arrive "
                        "as lists of signed power-of-two terms encoded by the front-end, activations are "
                        "HESE-encoded once at the array's edge and truncated to --data-terms terms, and "
                        "each cell sums its term pairs in one clock")
    p.add_argument("--weight-terms", type=int,
                   help=f"with --mac tq: term slots per weight (default {TQ_DEFAULT_TERMS['weight_terms']})")
    p.add_argument("--data-terms", type=int,
                   help=f"with --mac tq: terms each activation keeps (default {TQ_DEFAULT_TERMS['data_terms']})")
    return p


def config_from_args(args):
    if args.sparsity == "dense":
        if args.alpha not in (None, 1):
            raise ConfigError(f"--sparsity dense means alpha 1, not {args.alpha}")
        alpha = 1
    else:
        alpha = 8 if args.alpha is None else args.alpha
        if alpha < 2:
            raise ConfigError(f"--sparsity colcomb needs alpha of at least 2, not {alpha}")
    return ArrayConfig(
        rows=args.rows, cols=args.rows if args.cols is None else args.cols, alpha=alpha,
        act_width=args.act_width, act_signed=args.act_signed,
        weight_width=args.weight_width, weight_signed=args.weight_signed,
        acc_width=args.acc_width, multiplier=args.multiplier,
        double_buffer=args.double_buffer, max_batch=args.max_batch, **mac_fields(args))


def mac_fields(args):
    """ArrayConfig's mac fields from the flags (parsers without add_mac_arguments give mac int)."""
    mac = getattr(args, "mac", "int")
    fields = {"mac": mac}
    for name, default in TQ_DEFAULT_TERMS.items():
        value = getattr(args, name, None)
        if value is not None and mac != "tq":
            raise ConfigError(f"--{name.replace('_', '-')} applies only to --mac tq")
        fields[name] = (default if value is None else value) if mac == "tq" else None
    return fields


def generate_verilog(config):
    # Imported here so that `--help` and bad arguments answer without loading Amaranth.
    from amaranth.back import verilog
    from hdl.systolic import SystolicArray
    # emit_src=False: no source paths in the output, so it is identical on every machine.
    return verilog.convert(SystolicArray(config), name=TOP, emit_src=False)


def manifest(config, sparsity, verilog_text):
    return {
        "generator": f"sparsegen {VERSION}",
        "unit": "column_combining_systolic_array",
        "sparsity": sparsity,
        "top": TOP,
        "verilog": f"{TOP}.v",
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
        "config": config.as_dict(),
        "derived": {
            "select_width": config.select_width,
            "inputs_per_vector": config.inputs,
            "min_acc_width": config.min_acc_width,
            "weight_banks": config.banks,
            "cells": config.rows * config.cols,
            **({"weight_term_width": config.weight_term_width,
                "activation_term_width": config.act_term_width,
                "operand_ranges": [list(r) for r in config.operand_ranges]} if config.mac == "tq" else {}),
        },
        "ports": beats.manifest_ports(config),
        "latency": config.latency,
        "throughput": "one activation vector per clock once the pipeline is full",
        "cycle_model": CYCLE_FORMULA,
        "stream_order": STREAM_ORDER.strip(),
        "accumulation": "tiles of one output block accumulate in an on-chip memory of max_batch vectors; "
                        "sums wrap modulo 2**acc_width",
    }


def design_name(config):
    """The default output name of an array: <rows>x<cols>_<sparsity>_a<alpha>[_tq<W>x<D>]."""
    sparsity = "dense" if config.alpha == 1 else "colcomb"
    name = f"{config.rows}x{config.cols}_{sparsity}_a{config.alpha}"
    if config.mac == "tq":
        name += f"_tq{config.weight_terms}x{config.data_terms}"
    return name


def main(argv=None):
    prog = "python -m gen"
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        return fail(prog, e)
    out = args.output or os.path.join("build", design_name(config))
    if problem := output_problem(out):
        return fail(prog, problem)
    text = generate_verilog(config)
    verilog_path, manifest_path = write_design(out, TOP, text, manifest(config, args.sparsity, text))
    mac = f", TQ {config.weight_terms}x{config.data_terms} terms" if config.mac == "tq" else ""
    print(f"{verilog_path}: {config.rows}x{config.cols} {args.sparsity} array, "
          f"alpha {config.alpha}{mac}, latency {config.latency}, {len(text.splitlines())} lines")
    print(f"{manifest_path}: ports, payload packing, cycle model")
    return 0
