"""The term-quantization multiplier unit (`python -m gen --unit tq`): its configuration, golden
model, cycle model and payload packing. Written from DESIGN.md §3, never from hdl/.

Arithmetic. A weight is a list of at most `weight_terms` signed power-of-two terms (the
front-end's encoding: a prefix of the HESE terms of a `width`-bit value, software/termquant.py).
The activation, a `width`-bit integer, keeps the first `data_terms` of its HESE terms. The product
is sum(weight terms) x (truncated activation) = the sum over term pairs of +-2**(e_w + e_x).

Cycles (no stalls, products always taken). The unit has three register stages (operands with
the encoded activation, term pairs, product) and takes the next operands in the clock its current
job sends its last pair on. A product with n_w weight terms and n_x data terms works for
max(1, n_w * n_x) clocks (serial) or 1 clock (parallel), so a stream of products takes
sum_k work_k + 3 clocks from the first operand handshake to the last product handshake, inclusive.

Payloads, least significant bit first (element 0 lowest):
  operands : weight[weight_terms] terms, each valid (1 bit), sign (1 bit, 1 = negative),
             exponent (bit_length of the largest exponent); then activation (width bits,
             two's complement if signed)
  products : the product, product_width bits, two's complement
"""

import dataclasses

from . import beats
from .config import (MAX_DATA_WIDTH, ConfigError, FieldsConfig, check_int, term_max_exponent, term_value_max_terms,
                     term_width)

FORMS = ("serial", "parallel")
TOP = "sparsegen_tq"

CYCLE_FORMULA = ("work_k = max(1, n_w * n_x) (serial) or 1 (parallel), n_w = valid weight terms, "
                 "n_x = data terms kept; cycles = sum_k work_k + 3, first operand handshake to last "
                 "product handshake inclusive")


@dataclasses.dataclass(frozen=True)
class TQConfig(FieldsConfig):
    """A streaming TQ multiplier.

    width          bits of the integer values (weights before encoding, activations).
    signed         signed activations (weights: weight_signed).
    weight_terms   term slots per weight.
    data_terms     terms the activation keeps after HESE encoding.
    form           "serial" (one term pair per clock) or "parallel" (all pairs in one clock).
    """

    kind = "tq configuration"   # for messages; not a field (no annotation)

    width: int = 8
    signed: bool = True
    weight_terms: int = 2
    data_terms: int = 3
    form: str = "serial"
    weight_signed: bool = True

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("width", check_int("width", self.width, 2, MAX_DATA_WIDTH))
        for name in ("signed", "weight_signed"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, not {getattr(self, name)!r}")
        for name, signed in (("weight_terms", self.weight_signed), ("data_terms", self.signed)):
            set_(name, check_int(name, getattr(self, name), 1, term_value_max_terms(self.width, signed)))
        if self.form not in FORMS:
            raise ConfigError(f"form must be one of {', '.join(FORMS)}, not {self.form!r}")

    @property
    def weight_max_exponent(self):
        return term_max_exponent(self.width, self.weight_signed)

    @property
    def data_max_exponent(self):
        return term_max_exponent(self.width, self.signed)

    @property
    def weight_term_width(self):
        return term_width(self.width, self.weight_signed)

    @property
    def product_width(self):
        return self.weight_max_exponent + self.data_max_exponent + 2

    @property
    def operands_width(self):
        return self.weight_terms * self.weight_term_width + self.width

    @property
    def latency(self):
        """Clocks from an operand handshake to its product, for one clock of work."""
        return 3

    @property
    def act_range(self):
        if self.signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1

    @property
    def weight_range(self):
        if self.weight_signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1



# ---------------------------------------------------------------------------------------------
# Golden and cycle model

def _hese_terms(value, width):
    from .termquant import hese_terms   # torch is only loaded when values are encoded
    return hese_terms(value, width)


def _check_activation(config, x):
    lo, hi = config.act_range
    if not lo <= x <= hi:
        raise ValueError(f"activation {x} outside the {config.width}-bit range [{lo}, {hi}]")


def activation_terms(config, x):
    """The (sign, exponent) terms the unit keeps of activation `x`, largest first."""
    _check_activation(config, x)
    return _hese_terms(x, config.width)[:config.data_terms]


def weight_terms_of(config, w, budget=None):
    """The front-end's encoding of integer weight `w`: its first `budget` HESE terms
    (default: weight_terms)."""
    lo, hi = config.weight_range
    if not lo <= w <= hi:
        raise ValueError(f"weight {w} outside the {config.width}-bit range [{lo}, {hi}]")
    return _hese_terms(w, config.width)[:config.weight_terms if budget is None else budget]


def terms_value(terms):
    return sum(sign << exponent for sign, exponent in terms)


def product(config, weight_terms, x):
    """The unit's product: sum of the weight's terms x the truncated activation."""
    return terms_value(weight_terms) * terms_value(activation_terms(config, x))


def term_pairs(config, weight_terms, x):
    return len(weight_terms) * len(activation_terms(config, x))


def work_cycles(config, weight_terms, x):
    """Clocks the unit works on one product."""
    if config.form == "parallel":
        return 1
    return max(1, term_pairs(config, weight_terms, x))


def stream_cycles(config, operands):
    """Clocks from the first operand handshake to the last product handshake, inclusive, for
    (weight terms, activation) pairs streamed without stalls."""
    if not operands:
        return 0
    return sum(work_cycles(config, w, x) for w, x in operands) + config.latency


# ---------------------------------------------------------------------------------------------
# Payloads

def operand_beat(config, weight_terms, x):
    _check_activation(config, x)
    if len(weight_terms) > config.weight_terms:
        raise ValueError(f"{len(weight_terms)} weight terms do not fit {config.weight_terms} slots")
    for _, exponent in weight_terms:
        if not 0 <= exponent <= config.weight_max_exponent:
            raise ValueError(f"weight term exponent {exponent} outside 0..{config.weight_max_exponent}")
    signs = [s for s, _ in weight_terms]
    exponents = [e for _, e in weight_terms]
    word = beats.pack_terms(signs, exponents, config.weight_terms, config.weight_term_width)
    weight_bits = config.weight_terms * config.weight_term_width
    return word | ((x & ((1 << config.width) - 1)) << weight_bits)


def product_value(config, word):
    return beats.unpack_fields(int(word), config.product_width, 1, signed=True)[0]


def product_word(config, value):
    return beats.pack_fields([value], config.product_width)


def manifest_ports(config):
    weight_bits = config.weight_terms * config.weight_term_width
    operands = [
        {"field": "weight", "count": config.weight_terms, "width": config.weight_term_width, "lsb": 0,
         "note": "the weight's terms +-2**exponent, largest first, unused slots 0 (a prefix of the "
                 "HESE terms of a width-bit weight)",
         "fields": beats.term_fields(config.weight_term_width)},
        {"field": "activation", "width": config.width, "signed": config.signed, "lsb": weight_bits,
         "note": f"HESE-encoded by the unit, keeping its {config.data_terms} largest terms"},
    ]
    products = [{"field": "product", "width": config.product_width, "signed": True, "lsb": 0}]
    return [
        {"name": "clk", "direction": "in", "width": 1},
        {"name": "rst", "direction": "in", "width": 1, "note": "synchronous, active high"},
        beats.stream_port("operands", "in", config.operands_width, operands),
        beats.stream_port("products", "out", config.product_width, products),
    ]
