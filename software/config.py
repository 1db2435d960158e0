"""Configuration of the column-combining systolic array: the single source of truth.

One frozen dataclass, validated on construction, drives everything: `gen` builds the Amaranth
component from it (hdl/ reads its attributes, it never imports this module), it is written into the
manifest JSON next to the Verilog, and the golden model, the cycle model and the testbenches read it.
"""

import dataclasses
import operator

MULTIPLIERS = ("parallel",)
MACS = ("int", "tq")

# Widths beyond these are almost certainly typos; they would also blow up synthesis and Verilator.
MAX_DATA_WIDTH = 32
MAX_ACC_WIDTH = 64
MAX_ALPHA = 64
MAX_DIM = 256


class ConfigError(ValueError):
    """An invalid accelerator configuration. The message is one line, fit for a command line."""


def check_int(name, value, lo, hi):
    """`value` as an int in [lo, hi], or a one-line ConfigError naming the field."""
    try:
        value = operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be an integer, not {value!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, not {value}")
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, not {value!r}")
    return value


def int_range(width, signed):
    """The (min, max) integers representable in `width` bits."""
    if signed:
        return -(1 << (width - 1)), (1 << (width - 1)) - 1
    return 0, (1 << width) - 1


def term_max_exponent(width, signed):
    """Largest HESE exponent of a `width`-bit value, also after truncation to a term budget.

    A signed value has |v| <= 2**(width-1): exponents up to width-1 (127 = +128 - 1, -128 = -128).
    An unsigned one has v < 2**width: up to width (255 = +256 - 1). Truncation keeps a prefix of the
    terms, so a truncated value's magnitude is at most 2**term_max_exponent (127 -> +128).
    """
    return width - 1 if signed else width


def term_value_max_terms(width, signed):
    """Most HESE terms of any `width`-bit value: floor(2 * (bits + 1) / 3) for magnitudes below
    2**bits (software.termquant.max_terms), bits = width - 1 when signed (-2**(width-1) has one)."""
    bits = width - 1 if signed else width
    return max(1, 2 * (bits + 1) // 3)


def term_width(width, signed):
    """Bits of one term in hardware: valid, sign (1 = negative), exponent."""
    return 2 + term_max_exponent(width, signed).bit_length()


def truncated_range(width, signed):
    """The integers a term-quantized `width`-bit value can take: magnitudes up to 2**max exponent."""
    top = 1 << term_max_exponent(width, signed)
    return (-top if signed else 0), top


def signed_width_for(lo, hi):
    """The smallest two's complement width that holds every integer in [lo, hi]."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


class FieldsConfig:
    """Round trip of a frozen configuration dataclass through a plain dict (the manifest's
    "config"), rejecting unknown fields with a one-line message."""

    kind = "configuration"

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ConfigError(f"unknown {cls.kind} field(s): {', '.join(sorted(unknown))}")
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class ArrayConfig(FieldsConfig):
    """A weight-stationary R x C array of column-combining cells.

    rows, cols     R output channels by C column groups per tile.
    alpha          activations per column group (1 = dense: no multiplexer).
    act_width, act_signed, weight_width, weight_signed
                   operand formats.
    acc_width      partial-sum / accumulator width (signed). Must hold the sum of one tile row
                   without overflow; across tiles the accumulator wraps modulo 2**acc_width.
    multiplier     multiplier style: "parallel" (one product per cell per clock).
    mac            "int": integer operands, `activation * weight`. "tq": term quantization
                   (DESIGN.md section 3): weights arrive as lists of `weight_terms` signed
                   power-of-two terms from the front-end, activations are HESE-encoded at the
                   array's edge and truncated to `data_terms` terms, and each cell sums the
                   +-2**(e_w + e_x) of all term pairs in one clock. act/weight widths and signedness
                   still give the integer formats the terms come from.
    weight_terms, data_terms
                   term budgets per weight and per activation (mac "tq" only; None otherwise).
    double_buffer  two weight banks per cell, so the next tile loads while this one computes.
    max_batch      input vectors per tile the output accumulator can hold (its depth).
    """

    kind = "array configuration"   # for messages; not a field (no annotation)

    rows: int
    cols: int
    alpha: int = 1
    act_width: int = 8
    act_signed: bool = True
    weight_width: int = 8
    weight_signed: bool = True
    acc_width: int = 32
    multiplier: str = "parallel"
    double_buffer: bool = True
    max_batch: int = 64
    mac: str = "int"
    weight_terms: int | None = None
    data_terms: int | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("rows", check_int("rows", self.rows, 1, MAX_DIM))
        set_("cols", check_int("cols", self.cols, 1, MAX_DIM))
        set_("alpha", check_int("alpha", self.alpha, 1, MAX_ALPHA))
        set_("act_width", check_int("act_width", self.act_width, 2, MAX_DATA_WIDTH))
        set_("weight_width", check_int("weight_width", self.weight_width, 2, MAX_DATA_WIDTH))
        set_("acc_width", check_int("acc_width", self.acc_width, 2, MAX_ACC_WIDTH))
        set_("max_batch", check_int("max_batch", self.max_batch, 1, 1 << 16))
        check_bool("act_signed", self.act_signed)
        check_bool("weight_signed", self.weight_signed)
        check_bool("double_buffer", self.double_buffer)
        if self.multiplier not in MULTIPLIERS:
            raise ConfigError(f"multiplier must be one of {', '.join(MULTIPLIERS)}, not {self.multiplier!r}")
        if self.mac not in MACS:
            raise ConfigError(f"mac must be one of {', '.join(MACS)}, not {self.mac!r}")
        if self.mac == "tq":
            for name, width, signed in (("weight_terms", self.weight_width, self.weight_signed),
                                        ("data_terms", self.act_width, self.act_signed)):
                most = term_value_max_terms(width, signed)
                if getattr(self, name) is None:
                    raise ConfigError(f"mac 'tq' needs {name} (1 to {most})")
                set_(name, check_int(name, getattr(self, name), 1, most))
        elif self.weight_terms is not None or self.data_terms is not None:
            raise ConfigError("weight_terms and data_terms apply only to mac 'tq'")
        if self.acc_width < self.min_acc_width:
            operands = "term-quantized " if self.mac == "tq" else ""
            raise ConfigError(
                f"acc_width {self.acc_width} is too narrow: a row of {self.cols} products of "
                f"{self.act_width}-bit x {self.weight_width}-bit {operands}operands needs {self.min_acc_width} bits")

    # Derived quantities. hdl/ derives its own from the same attributes; tests check they agree.

    @property
    def select_width(self):
        """Bits of a cell's select index (0 when dense)."""
        return (self.alpha - 1).bit_length()

    @property
    def inputs(self):
        """Activations per input vector of one tile: C groups of alpha."""
        return self.cols * self.alpha

    @property
    def act_range(self):
        return int_range(self.act_width, self.act_signed)

    @property
    def weight_range(self):
        return int_range(self.weight_width, self.weight_signed)

    @property
    def operand_ranges(self):
        """(activation range, weight range) of the values the cells multiply. Term quantization
        can round a magnitude up to a power of two beyond the integer format (127 -> 128)."""
        if self.mac == "tq":
            return (truncated_range(self.act_width, self.act_signed),
                    truncated_range(self.weight_width, self.weight_signed))
        return self.act_range, self.weight_range

    @property
    def product_range(self):
        acts, weights = self.operand_ranges
        corners = [a * w for a in acts for w in weights]
        return min(corners), max(corners)

    @property
    def weight_term_width(self):
        """Bits of one weight term (mac "tq"): valid, sign, exponent."""
        return term_width(self.weight_width, self.weight_signed)

    @property
    def act_term_width(self):
        """Bits of one activation term (mac "tq") on the array's input skew lines."""
        return term_width(self.act_width, self.act_signed)

    @property
    def weight_field_width(self):
        """Bits of one weight in a weight beat: the integer, or (mac "tq") its term list."""
        if self.mac == "tq":
            return self.weight_terms * self.weight_term_width
        return self.weight_width

    @property
    def min_acc_width(self):
        """Width that holds any sum of `cols` products exactly (one tile row, no wrap)."""
        lo, hi = self.product_range
        return signed_width_for(lo * self.cols, hi * self.cols)

    @property
    def banks(self):
        return 2 if self.double_buffer else 1

    @property
    def latency(self):
        """Clocks from an activation vector's handshake to its result being valid.

        One input register, one partial-sum register per column, one accumulator register.
        """
        return self.cols + 2
