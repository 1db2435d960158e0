"""Flags of the column-combining systolic array (`python -m gen`, the default unit).

Shared with `python -m fpga`, so both commands read an array configuration the same way.
"""

import argparse

from spec import ARRAY_SPARSITY, MACS, MULTIPLIERS, ArrayConfig, ConfigError

DESCRIPTION = ("Generate a weight-stationary column-combining systolic array (Amaranth -> Verilog) and a "
               "manifest JSON describing its configuration, ports, payload packing, latency and cycle model.")
EPILOG = "Example: python -m gen --rows 32 --sparsity colcomb  (32x32 array, 8 columns combined per group)"

# Columns combined per group when --sparsity colcomb is given without --alpha.
DEFAULT_ALPHA = 8


def add_arguments(p, *, default_rows=32):
    """The array configuration flags (`--rows` ... `--data-terms`)."""
    p.add_argument("--rows", type=int, default=default_rows,
                   help=f"array rows = output channels per tile (default {default_rows})")
    p.add_argument("--cols", type=int, help="array columns = column groups per tile (default: same as --rows)")
    p.add_argument("--sparsity", choices=tuple(ARRAY_SPARSITY), default="colcomb",
                   help="; ".join(f"{name}: {text}" for name, text in ARRAY_SPARSITY.items()) + " (default colcomb)")
    p.add_argument("--alpha", type=int,
                   help=f"activations per column group, i.e. columns combined (default {DEFAULT_ALPHA} for "
                        "colcomb; dense means 1)")
    p.add_argument("--act-width", type=int, default=8, help="activation bits (default 8)")
    p.add_argument("--act-signed", action=argparse.BooleanOptionalAction, default=True,
                   help="signed activations (default); --no-act-signed for unsigned, e.g. after ReLU")
    p.add_argument("--weight-width", type=int, default=8, help="weight bits (default 8)")
    p.add_argument("--weight-signed", action=argparse.BooleanOptionalAction, default=True,
                   help="signed weights (default); --no-weight-signed for unsigned")
    p.add_argument("--acc-width", type=int, default=32,
                   help="partial-sum and accumulator bits, signed (default 32); must hold a full row of a tile")
    p.add_argument("--multiplier", choices=MULTIPLIERS, default="pipelined",
                   help="multiplier style (default pipelined: the product in two register stages, half the "
                        "logic depth of parallel's one; both make one product per cell per clock)")
    p.add_argument("--double-buffer", action=argparse.BooleanOptionalAction, default=True,
                   help="two weight banks so the next tile loads while this one computes (default on)")
    p.add_argument("--max-batch", type=int, default=64,
                   help="vectors per tile the output accumulator holds (default 64)")
    terms = MACS["tq"].default_terms
    p.add_argument("--mac", choices=tuple(MACS), default="int",
                   help="; ".join(f"{name}: {style.summary}" for name, style in MACS.items()) + " (default int)")
    p.add_argument("--weight-terms", type=int,
                   help=f"with --mac tq or tq-serial: term slots per weight (default {terms['weight_terms']})")
    p.add_argument("--data-terms", type=int,
                   help=f"with --mac tq or tq-serial: terms each activation keeps (default {terms['data_terms']})")
    return p


def alpha_from_args(args):
    if args.sparsity == "dense":
        if args.alpha not in (None, 1):
            raise ConfigError(f"--sparsity dense means alpha 1, not {args.alpha}")
        return 1
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if alpha < 2:
        raise ConfigError(f"--sparsity colcomb needs alpha of at least 2, not {alpha}")
    return alpha


def mac_fields(args):
    """ArrayConfig's MAC fields from the flags: the term budgets only for styles that use terms."""
    style = MACS[args.mac]
    fields = {"mac": style.name}
    for name, default in getattr(style, "default_terms", {"weight_terms": None, "data_terms": None}).items():
        value = getattr(args, name, None)
        if value is not None and not style.uses_terms:
            raise ConfigError(f"--{name.replace('_', '-')} applies only to --mac tq or tq-serial")
        fields[name] = (default if value is None else value) if style.uses_terms else None
    return fields


def config_from_args(args):
    return ArrayConfig(
        rows=args.rows, cols=args.rows if args.cols is None else args.cols, alpha=alpha_from_args(args),
        act_width=args.act_width, act_signed=args.act_signed,
        weight_width=args.weight_width, weight_signed=args.weight_signed,
        acc_width=args.acc_width, multiplier=args.multiplier,
        double_buffer=args.double_buffer, max_batch=args.max_batch, **mac_fields(args))
