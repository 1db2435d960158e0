"""`python -m gen`: generate the Verilog of a column-combining systolic array and its manifest."""

import argparse
import hashlib
import json
import os
import sys

from software import beats
from software.config import ArrayConfig, ConfigError, MULTIPLIERS
from software.cycles import CYCLE_FORMULA
from software.schedule import __doc__ as STREAM_ORDER

TOP = "sparsegen_array"
VERSION = "0.1.0"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are a single line (no usage dump) and exit with status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    p = OneLineParser(
        prog="python -m gen",
        description="Generate a weight-stationary column-combining systolic array (Amaranth -> Verilog) "
                    "and a manifest JSON describing its configuration, ports, payload packing, latency and "
                    "cycle model.",
        epilog="Example: python -m gen --rows 32 --sparsity colcomb  (32x32 array, 8 columns combined per group)")
    p.add_argument("--rows", type=int, default=32, help="array rows = output channels per tile (default 32)")
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
    p.add_argument("-o", "--output", help="output directory (default build/<rows>x<cols>_<sparsity>_a<alpha>)")
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
        double_buffer=args.double_buffer, max_batch=args.max_batch)


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
        },
        "ports": beats.manifest_ports(config),
        "latency": config.latency,
        "throughput": "one activation vector per clock once the pipeline is full",
        "cycle_model": CYCLE_FORMULA,
        "stream_order": STREAM_ORDER.strip(),
        "accumulation": "tiles of one output block accumulate in an on-chip memory of max_batch vectors; "
                        "sums wrap modulo 2**acc_width",
    }


def write_atomically(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        print(f"python -m gen: error: {e}", file=sys.stderr)
        return 2
    out = args.output or os.path.join("build", f"{config.rows}x{config.cols}_{args.sparsity}_a{config.alpha}")
    if os.path.exists(out) and not os.path.isdir(out):
        print(f"python -m gen: error: output path {out} exists and is not a directory", file=sys.stderr)
        return 2
    text = generate_verilog(config)
    meta = json.dumps(manifest(config, args.sparsity, text), indent=2, sort_keys=True) + "\n"
    os.makedirs(out, exist_ok=True)
    write_atomically(os.path.join(out, f"{TOP}.v"), text)
    write_atomically(os.path.join(out, "manifest.json"), meta)
    print(f"{os.path.join(out, TOP + '.v')}: {config.rows}x{config.cols} {args.sparsity} array, "
          f"alpha {config.alpha}, latency {config.latency}, {len(text.splitlines())} lines")
    print(f"{os.path.join(out, 'manifest.json')}: ports, payload packing, cycle model")
    return 0
