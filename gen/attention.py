"""`python -m gen --unit attention`: generate the one-head attention unit's Verilog and manifest."""

import hashlib
import os

from software import attention_beats
from software.attention import CYCLE_FORMULA, QUERY_OVERHEAD
from software.attention import __doc__ as ARITHMETIC
from software.attention_beats import __doc__ as STREAM_ORDER
from software.attention_config import PRUNE_MODES, AttentionConfig, ConfigError

from .cli import VERSION, OneLineParser
from .output import fail, output_problem, write_design

TOP = "sparsegen_attention"


def build_parser():
    p = OneLineParser(
        prog="python -m gen --unit attention",
        description="Generate a one-head attention unit (Amaranth -> Verilog): K and V in on-chip memory, "
                    "query rows streaming in; integer scores, fixed-point scaling, integer softmax (row-max "
                    "subtraction, base-2 exponent from a table, reciprocal normalization), attention-aware "
                    "pruning that skips pruned positions in p.V, requantized outputs. Also writes a manifest "
                    "JSON with the configuration, ports, payload packing, arithmetic and cycle model.",
        epilog="Example: python -m gen --unit attention --head-dim 32 --max-len 64 --prune threshold "
               "--threshold 5  (keeps positions within 2**-5 of the row's largest probability)")
    p.add_argument("--head-dim", type=int, default=32, help="d: elements per query/key/value/output row (default 32)")
    p.add_argument("--max-len", type=int, default=64,
                   help="L: most key/value rows held on chip, i.e. the longest sequence (default 64)")
    p.add_argument("--data-width", type=int, default=8, help="bits of Q, K, V elements, signed (default 8)")
    p.add_argument("--out-width", type=int, default=8,
                   help="bits of output elements, signed and saturated (default 8)")
    p.add_argument("--scale-width", type=int, default=16,
                   help="bits of the per-query softmax scale multiplier carried by each query beat (default 16)")
    p.add_argument("--exp-frac-bits", type=int, default=6,
                   help="softmax precision: fraction bits of the base-2 exponent; the exponent table has "
                        "2**N entries (default 6)")
    p.add_argument("--exp-bits", type=int, default=12,
                   help="softmax precision: fraction bits of the exponentials 2**-z (default 12)")
    p.add_argument("--prob-bits", type=int, default=10,
                   help="softmax precision: fraction bits of the normalized probabilities (default 10)")
    p.add_argument("--prune", choices=PRUNE_MODES,
                   help="attention-aware pruning: none, threshold (drop positions more than --threshold "
                        "log2 units below the row max), topk (keep the --top-k highest scores) or both "
                        "(default: whichever of --threshold / --top-k is given, else none)")
    p.add_argument("--threshold", type=int,
                   help="pruning threshold T in log2 units: keep a position only if its probability is at "
                        "least 2**-T times the row's largest (0 .. exp-bits + 1)")
    p.add_argument("--top-k", type=int, help="keep only the K highest scores of each row (1 .. max-len)")
    p.add_argument("-o", "--output",
                   help="output directory (default build/attention_d<head-dim>_L<max-len>[_t<T>][_k<K>])")
    return p


def config_from_args(args):
    prune = args.prune
    if prune is None:
        prune = {(False, False): "none", (True, False): "threshold", (False, True): "topk",
                 (True, True): "both"}[args.threshold is not None, args.top_k is not None]
    return AttentionConfig(
        head_dim=args.head_dim, max_len=args.max_len, data_width=args.data_width, out_width=args.out_width,
        scale_width=args.scale_width, exp_frac_bits=args.exp_frac_bits, exp_bits=args.exp_bits,
        prob_bits=args.prob_bits, prune=prune, threshold=args.threshold, top_k=args.top_k)


def default_output(config):
    name = f"attention_d{config.head_dim}_L{config.max_len}"
    if config.threshold is not None:
        name += f"_t{config.threshold}"
    if config.top_k is not None:
        name += f"_k{config.top_k}"
    return os.path.join("build", name)


def generate_verilog(config):
    from amaranth.back import verilog
    from hdl.attention import AttentionUnit
    unit = AttentionUnit(config)
    return verilog.convert(unit, name=TOP, emit_src=False), unit.latency


def manifest(config, verilog_text, latency):
    return {
        "generator": f"sparsegen {VERSION}",
        "unit": "attention",
        "top": TOP,
        "verilog": f"{TOP}.v",
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
        "config": config.as_dict(),
        "derived": {
            "score_width": config.score_width,
            "diff_width": config.diff_width,
            "scaled_score_width": config.product_width,
            "sum_width": config.sum_width,
            "recip_shift": config.recip_shift,
            "recip_width": config.recip_width,
            "acc_width": config.acc_width,
            "kept_width": config.kept_width,
            "exp_table": list(config.exp_table),
        },
        "ports": attention_beats.manifest_ports(config),
        "latency": latency,
        "latency_note": "clocks from a query handshake to its output valid, for max_len rows, nothing pruned",
        "cycle_model": CYCLE_FORMULA,
        "query_overhead": QUERY_OVERHEAD,
        "arithmetic": ARITHMETIC.strip(),
        "stream_order": STREAM_ORDER.strip(),
    }


def main(argv=None):
    args = build_parser().parse_args(argv)
    prog = "python -m gen --unit attention"
    try:
        config = config_from_args(args)
    except ConfigError as e:
        return fail(prog, e)
    out = args.output or default_output(config)
    if problem := output_problem(out):
        return fail(prog, problem)
    text, latency = generate_verilog(config)
    verilog_path, manifest_path = write_design(out, TOP, text, manifest(config, text, latency))
    print(f"{verilog_path}: attention unit d={config.head_dim} L={config.max_len} "
          f"prune {config.prune}, {len(text.splitlines())} lines")
    print(f"{manifest_path}: ports, payload packing, arithmetic, cycle model")
    return 0
