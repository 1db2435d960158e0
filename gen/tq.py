"""Flags of the term-quantization multiplier (`python -m gen --unit tq`)."""

import argparse

from spec.tq import FORMS, TQConfig

DESCRIPTION = ("Generate a streaming term-quantization (TQ) multiplier (Amaranth -> Verilog): weights "
               "arrive as lists of signed power-of-two terms encoded by the front-end, the activation "
               "is HESE-encoded in hardware and truncated to --data-terms terms, and the product is "
               "the sum over term pairs of +-2**(e_w + e_x). Also writes a manifest JSON with the "
               "configuration, ports, payload packing, latency and cycle model.")
EPILOG = ("Example: python -m gen --unit tq --width 8 --weight-terms 2 --data-terms 3 --form serial  "
               "(one term pair per clock: at most 6 clocks per product)")


def add_arguments(p):
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
    p.add_argument("--form", choices=FORMS, default="serial",
                   help="serial: one term pair per clock, max(1, pairs) clocks per product, few LUTs; "
               "parallel: all term pairs in one clock (adder tree), one product per clock "
               "(default serial)")
    return p


def config_from_args(args):
    return TQConfig(width=args.width, signed=args.signed, weight_signed=args.weight_signed,
                       weight_terms=args.weight_terms, data_terms=args.data_terms, form=args.form)
