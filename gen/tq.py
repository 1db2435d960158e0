"""`python -m gen --unit tq`: generate the term-quantization multiplier's Verilog and manifest."""

import argparse
import hashlib
import os

from software import tq
from software.config import ConfigError

from .cli import VERSION, OneLineParser
from .output import fail, output_problem, write_design

TOP = tq.TOP


def build_parser():
    p = OneLineParser(
        prog="python -m gen --unit tq",
        description="Generate a streaming term-quantization (TQ) multiplier (Amaranth -> Verilog): weights "
                    "arrive as lists of signed power-of-two terms encoded by the front-end, the activation "
                    "is HESE-encoded in hardware and truncated to --data-terms terms, and the product is "
                    "the sum over term pairs of +-2**(e_w + e_x). Also writes a manifest JSON with the "
                    "configuration, ports, payload packing, latency and cycle model.",
        epilog="Example: python -m gen --unit tq --width 8 --weight-terms 2 --data-terms 3 --form serial  "
               "(one term pair per clock: at most 6 clocks per product)")
    p.add_argument("--width", type=int, default=8,
                   help="bits of the integer values: weights before encoding and activations (default 8)")
    p.add_argument("--signed", action=argparse.BooleanOptionalAction, default=True,
                   help="signed activations (default); --no-signed for unsigned, e.g. after ReLU")
    p.add_argument("--weight-signed", action=argparse.BooleanOptionalAction, default=True,
                   help="weights encoded from signed values (default); sets the largest weight exponent")
    p.add_argument("--weight-terms", type=int, default=2,
                   help="term slots per weight, the front-end's per-weight budget (default 2)")
    p.add_argument("--data-terms", type=int, default=3,
                   help="terms the activation keeps after HESE encoding (default 3)")
    p.add_argument("--form", choices=tq.FORMS, default="serial",
                   help="serial: one term pair per clock, max(1, pairs) clocks per product, few LUTs; "
                        "parallel: all term pairs in one clock (adder tree), one product per clock "
                        "(default serial)")
    p.add_argument("-o", "--output",
                   help="output directory (default build/tq_<form>_w<width>_t<weight-terms>x<data-terms>)")
    return p


def config_from_args(args):
    return tq.TQConfig(width=args.width, signed=args.signed, weight_signed=args.weight_signed,
                       weight_terms=args.weight_terms, data_terms=args.data_terms, form=args.form)


def default_output(config):
    return os.path.join("build", f"tq_{config.form}_w{config.width}_t{config.weight_terms}x{config.data_terms}")


def generate_verilog(config):
    from amaranth.back import verilog
    from hdl.tq import TQMultiplier
    unit = TQMultiplier(width=config.width, signed=config.signed, weight_signed=config.weight_signed,
                        weight_terms=config.weight_terms, data_terms=config.data_terms, form=config.form)
    return verilog.convert(unit, name=TOP, emit_src=False), unit.latency


def manifest(config, verilog_text, latency):
    return {
        "generator": f"sparsegen {VERSION}",
        "unit": "tq_multiplier",
        "top": TOP,
        "verilog": f"{TOP}.v",
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
        "config": config.as_dict(),
        "derived": {
            "weight_max_exponent": config.weight_max_exponent,
            "data_max_exponent": config.data_max_exponent,
            "weight_term_width": config.weight_term_width,
            "product_width": config.product_width,
            "max_pairs": config.weight_terms * config.data_terms,
        },
        "ports": tq.manifest_ports(config),
        "latency": latency,
        "latency_note": "clocks from an operand handshake to its product valid, for one clock of work "
                        "(serial: 1 + max(1, term pairs))",
        "cycle_model": tq.CYCLE_FORMULA,
        "arithmetic": tq.__doc__.strip(),
    }


def main(argv=None):
    args = build_parser().parse_args(argv)
    prog = "python -m gen --unit tq"
    try:
        config = config_from_args(args)
    except ConfigError as e:
        return fail(prog, e)
    out = args.output or default_output(config)
    if problem := output_problem(out):
        return fail(prog, problem)
    text, latency = generate_verilog(config)
    verilog_path, manifest_path = write_design(out, TOP, text, manifest(config, text, latency))
    print(f"{verilog_path}: {config.form} TQ multiplier, {config.width}-bit, "
          f"{config.weight_terms} weight terms x {config.data_terms} data terms, {len(text.splitlines())} lines")
    print(f"{manifest_path}: ports, payload packing, cycle model")
    return 0
