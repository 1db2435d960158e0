"""Flags of the one-head attention unit (`python -m gen --unit attention`)."""

from spec.attention import PRUNE_MODES, AttentionConfig

DESCRIPTION = ("Generate a one-head attention unit (Amaranth -> Verilog): K and V in on-chip memory, "
               "query rows streaming in; integer scores, fixed-point scaling, integer softmax (row-max "
               "subtraction, base-2 exponent from a table, reciprocal normalization), attention-aware "
               "pruning that skips pruned positions in p.V, requantized outputs. Also writes a manifest "
               "JSON with the configuration, ports, payload packing, arithmetic and cycle model.")
EPILOG = ("Example: python -m gen --unit attention --head-dim 32 --max-len 64 --prune threshold "
               "--threshold 5  (keeps positions within 2**-5 of the row's largest probability)")


def add_arguments(p):
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


def manifest_extras(config):
    """The golden model's arithmetic and the stream order, for readers of the manifest."""
    from software.golden import attention
    from software.packing import attention_beats
    return {"arithmetic": attention.__doc__.strip(), "stream_order": attention_beats.__doc__.strip()}
