"""Configuration of the one-head attention unit (DESIGN.md §4): the single source of truth.

Like `spec.array.ArrayConfig`, one frozen dataclass, validated on construction, derives every
width, the pipeline's clocks per query and the manifest; hdl/attention.py builds the unit from it,
and the golden model, the cycle model and the testbenches read it.

The arithmetic these fields parameterize is specified in `software.golden.attention` (module docstring).
"""

import dataclasses
import math

from .checks import ConfigError, FieldsConfig, check_choice, check_int, int_range, signed_width_for
from .ports import clock_and_reset, stream_port

PRUNE_MODES = ("none", "threshold", "topk", "both")

# Bits of the per-query score shift (0..63): enough for any product the unit forms.
SHIFT_WIDTH = 6
# Guard bits of the reciprocal 2**(E + P + G) // sum: they bound the error of a probability to
# 2**-G of its last bit before rounding (see software.golden.attention).
RECIP_GUARD_BITS = 4
# Quotient bits of the reciprocal the unit's divider computes per clock.
DIVIDER_BITS_PER_CLOCK = 4
# The golden model computes in int64; the unit's widest product must fit with room to spare.
MAX_PRODUCT_WIDTH = 62

# Clocks of a query beyond n + candidates + kept + divide_cycles: the query handshake (1), the
# scores pipeline's drain (4), the softmax pipeline's drain (4), the p.V pipeline's drain (3) and
# the output handshake (1).
QUERY_OVERHEAD = 13

TOP = "sparsegen_attention"

MAX_HEAD_DIM = 256
MAX_LEN = 1024


@dataclasses.dataclass(frozen=True)
class AttentionConfig(FieldsConfig):
    """One attention head: K and V (at most `max_len` rows of `head_dim`) in on-chip memory,
    query rows streaming in, one output row per query.

    head_dim       d, elements of a query, key, value and output row.
    max_len        L, the most key/value rows the memories hold.
    data_width     bits of Q, K and V elements (signed).
    out_width      bits of output elements (signed, saturated).
    scale_width    bits of the per-query score multiplier (unsigned), the mantissa of the
                   fixed-point softmax scale that comes with every query.
    exp_frac_bits  F: fraction bits of the base-2 exponent; the exponent table has 2**F entries.
    exp_bits       E: fraction bits of exponentials, 2**-z in [0, 1] as integers in [0, 2**E].
    prob_bits      P: fraction bits of probabilities after normalization.
    prune          none | threshold | topk | both (attention-aware pruning).
    threshold      (threshold, both) keep only positions whose probability is at least
                   2**-threshold times the row's largest: z <= threshold in log2 units.
    top_k          (topk, both) keep only the k highest scores (ties: lower position first).
    """

    kind = "attention configuration"   # for messages; not a field (no annotation)

    head_dim: int = 32
    max_len: int = 64
    data_width: int = 8
    out_width: int = 8
    scale_width: int = 16
    exp_frac_bits: int = 6
    exp_bits: int = 12
    prob_bits: int = 10
    prune: str = "none"
    threshold: int | None = None
    top_k: int | None = None

    def __post_init__(self):
        set_ = self._set
        set_("head_dim", check_int("head_dim", self.head_dim, 1, MAX_HEAD_DIM))
        set_("max_len", check_int("max_len", self.max_len, 1, MAX_LEN))
        set_("data_width", check_int("data_width", self.data_width, 2, 16))
        set_("out_width", check_int("out_width", self.out_width, 2, 32))
        set_("scale_width", check_int("scale_width", self.scale_width, 1, 24))
        set_("exp_frac_bits", check_int("exp_frac_bits", self.exp_frac_bits, 1, 10))
        set_("exp_bits", check_int("exp_bits", self.exp_bits, 2, 20))
        set_("prob_bits", check_int("prob_bits", self.prob_bits, 2, 16))
        check_choice("prune", self.prune, PRUNE_MODES)
        if self.prune in ("threshold", "both"):
            if self.threshold is None:
                raise ConfigError(f"prune {self.prune} needs a threshold")
            set_("threshold", check_int("threshold", self.threshold, 0, self.exp_bits + 1))
        elif self.threshold is not None:
            raise ConfigError(f"a threshold is only used with prune threshold or both, not {self.prune}")
        if self.prune in ("topk", "both"):
            if self.top_k is None:
                raise ConfigError(f"prune {self.prune} needs top_k")
            set_("top_k", check_int("top_k", self.top_k, 1, self.max_len))
        elif self.top_k is not None:
            raise ConfigError(f"top_k is only used with prune topk or both, not {self.prune}")
        if self.product_width > MAX_PRODUCT_WIDTH:
            raise ConfigError(
                f"data_width {self.data_width}, head_dim {self.head_dim} and scale_width "
                f"{self.scale_width} make a {self.product_width}-bit scaled score; at most "
                f"{MAX_PRODUCT_WIDTH} bits are supported")

    # Derived quantities: hdl/attention.py and the golden model read them from here.

    @property
    def data_range(self):
        return int_range(self.data_width, True)

    @property
    def out_range(self):
        return int_range(self.out_width, True)

    @property
    def score_range(self):
        lo, hi = self.data_range
        corners = [a * b for a in (lo, hi) for b in (lo, hi)]
        return min(corners) * self.head_dim, max(corners) * self.head_dim

    @property
    def score_width(self):
        """Signed bits of an exact score q . k."""
        return signed_width_for(*self.score_range)

    @property
    def diff_width(self):
        """Unsigned bits of (row max - score)."""
        lo, hi = self.score_range
        return (hi - lo).bit_length()

    @property
    def product_width(self):
        """Unsigned bits of (row max - score) * scale."""
        return self.diff_width + self.scale_width

    @property
    def exp_table(self):
        """T[f] = round(2**(E - f / 2**F)), f = 0 .. 2**F - 1: 2**E * 2**-(f / 2**F)."""
        F, E = self.exp_frac_bits, self.exp_bits
        return tuple(math.floor(2.0 ** (E - f / (1 << F)) + 0.5) for f in range(1 << F))

    @property
    def recip_shift(self):
        """N: the reciprocal is 2**N // sum, N = E + P + G."""
        return self.exp_bits + self.prob_bits + RECIP_GUARD_BITS

    @property
    def recip_width(self):
        """Bits of the reciprocal (its largest value is 2**(P + G), for a sum of 2**E)."""
        return self.prob_bits + RECIP_GUARD_BITS + 1

    @property
    def divide_cycles(self):
        """Clocks of the divider: recip_width quotient bits, DIVIDER_BITS_PER_CLOCK per clock."""
        return -(-self.recip_width // DIVIDER_BITS_PER_CLOCK)

    @property
    def sum_width(self):
        """Unsigned bits of the sum of exponentials (at most max_len * 2**E)."""
        return (self.max_len << self.exp_bits).bit_length()

    @property
    def acc_range(self):
        lo, hi = self.data_range
        top = self.max_len << self.prob_bits   # every kept probability is at most 2**P
        return lo * top, hi * top

    @property
    def acc_width(self):
        """Signed bits of an output accumulator sum_j p_j * v_j."""
        return signed_width_for(*self.acc_range)

    @property
    def index_width(self):
        return max(1, (self.max_len - 1).bit_length())

    @property
    def kept_width(self):
        """Bits of the count of kept positions (0 .. max_len)."""
        return self.max_len.bit_length()

    @property
    def exp_width(self):
        """Unsigned bits of an exponential 2**-z in [0, 2**E]."""
        return self.exp_bits + 1

    @property
    def prob_width(self):
        """Unsigned bits of a probability in [0, 2**P]."""
        return self.prob_bits + 1

    def query_cycles(self, n, candidates, kept):
        """Clocks from a query's handshake to its output's handshake, inclusive, with the output
        always ready, for n keys: handshake 1, scores n + 4, softmax candidates + 4, divide,
        p.V kept + 3, output 1."""
        return n + candidates + kept + self.divide_cycles + QUERY_OVERHEAD

    @property
    def latency(self):
        """Clocks from a query handshake to its output being valid, for a full-length sequence
        with nothing pruned (the longest)."""
        L = self.max_len
        return self.query_cycles(L, L, L) - 1

    @property
    def cycle_formula(self):
        return ("per head: n (one K/V row per clock) + sum over its queries of "
                f"(n + candidates + kept + divide_cycles + {QUERY_OVERHEAD}), "
                f"divide_cycles = ceil(recip_width / {DIVIDER_BITS_PER_CLOCK}) = {self.divide_cycles}; "
                "counted from the first kv handshake to the last out handshake, inclusive, "
                "with inputs always valid and the output always ready")

    @property
    def design_name(self):
        name = f"attention_d{self.head_dim}_L{self.max_len}"
        if self.threshold is not None:
            name += f"_t{self.threshold}"
        if self.top_k is not None:
            name += f"_k{self.top_k}"
        defaults = {"data_width": 8, "out_width": 8, "scale_width": 16, "exp_frac_bits": 6, "exp_bits": 12,
                    "prob_bits": 10}
        short = {"data_width": "x", "out_width": "o", "scale_width": "s", "exp_frac_bits": "f",
                 "exp_bits": "e", "prob_bits": "p"}
        for field, default in defaults.items():
            if getattr(self, field) != default:
                name += f"_{short[field]}{getattr(self, field)}"
        return name

    @property
    def summary(self):
        return f"attention unit d={self.head_dim} L={self.max_len} prune {self.prune}"

    # ------------------------------------------------------------------------------------------
    # Payloads, least significant bit first (software/packing/attention_beats.py packs them).

    @property
    def kv_beat_width(self):
        return 2 * self.head_dim * self.data_width + 1

    @property
    def query_beat_width(self):
        return self.head_dim * self.data_width + self.scale_width + SHIFT_WIDTH + 1

    @property
    def out_beat_width(self):
        return self.head_dim * self.out_width + self.kept_width

    def ports(self):
        d, w = self.head_dim, self.data_width
        kv = [
            {"field": "key", "count": d, "width": w, "signed": True, "lsb": 0},
            {"field": "value", "count": d, "width": w, "signed": True, "lsb": d * w},
            {"field": "last", "width": 1, "lsb": 2 * d * w, "note": "last row of the sequence"},
        ]
        S = self.scale_width
        query = [
            {"field": "q", "count": d, "width": w, "signed": True, "lsb": 0},
            {"field": "scale", "width": S, "signed": False, "lsb": d * w,
             "note": "score multiplier m: z = ((max score - score) * m) >> shift"},
            {"field": "shift", "width": SHIFT_WIDTH, "signed": False, "lsb": d * w + S},
            {"field": "last", "width": 1, "lsb": d * w + S + SHIFT_WIDTH,
             "note": "last query against this K, V: then load the next sequence"},
        ]
        out = [
            {"field": "out", "count": d, "width": self.out_width, "signed": True, "lsb": 0},
            {"field": "kept", "width": self.kept_width, "signed": False, "lsb": d * self.out_width,
             "note": "positions that survived pruning and were multiplied by V"},
        ]
        return [
            *clock_and_reset(),
            stream_port("kv", "in", self.kv_beat_width, kv),
            stream_port("query", "in", self.query_beat_width, query),
            stream_port("out", "out", self.out_beat_width, out),
        ]

    def derived(self):
        return {
            "score_width": self.score_width,
            "diff_width": self.diff_width,
            "scaled_score_width": self.product_width,
            "sum_width": self.sum_width,
            "recip_shift": self.recip_shift,
            "recip_width": self.recip_width,
            "acc_width": self.acc_width,
            "kept_width": self.kept_width,
            "exp_table": list(self.exp_table),
        }

    def manifest_extras(self):
        return {
            "latency_note": "clocks from a query handshake to its output valid, for max_len rows, nothing pruned",
            "query_overhead": QUERY_OVERHEAD,
        }
