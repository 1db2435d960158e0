"""The term-quantization multiplier unit's configuration (`python -m gen --unit tq`, DESIGN.md §3).

Arithmetic. A weight is a list of at most `weight_terms` signed power-of-two terms (the
front-end's encoding: a prefix of the HESE terms of a `width`-bit value, software/frontend/termquant.py).
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

from .checks import FieldsConfig, check_bool, check_choice, check_int, int_range
from .macs import term_fields
from .ports import clock_and_reset, stream_port
from .terms import MAX_TERM_WIDTH, term_max_exponent, term_product_width, term_value_max_terms, term_width

FORMS = ("serial", "parallel")
TOP = "sparsegen_tq"

# Register stages: operands (with the encoded activation), term pairs, product.
PIPELINE_STAGES = 3


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
        self._set("width", check_int("width", self.width, 2, MAX_TERM_WIDTH))
        check_bool("signed", self.signed)
        check_bool("weight_signed", self.weight_signed)
        for name, signed in (("weight_terms", self.weight_signed), ("data_terms", self.signed)):
            self._set(name, check_int(name, getattr(self, name), 1, term_value_max_terms(self.width, signed)))
        check_choice("form", self.form, FORMS)

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
        return term_product_width(self.weight_max_exponent, self.data_max_exponent)

    @property
    def operands_width(self):
        return self.weight_terms * self.weight_term_width + self.width

    @property
    def max_pairs(self):
        return self.weight_terms * self.data_terms

    @property
    def latency(self):
        """Clocks from an operand handshake to its product, for one clock of work."""
        return PIPELINE_STAGES

    @property
    def max_work(self):
        """Most clocks the unit spends on one product."""
        return self.max_pairs if self.form == "serial" else 1

    @property
    def act_range(self):
        return int_range(self.width, self.signed)

    @property
    def weight_range(self):
        return int_range(self.width, self.weight_signed)

    @property
    def cycle_formula(self):
        return ("work_k = max(1, n_w * n_x) (serial) or 1 (parallel), n_w = valid weight terms, "
                "n_x = data terms kept; cycles = sum_k work_k + latency, first operand handshake to last "
                f"product handshake inclusive, latency = {self.latency}")

    @property
    def design_name(self):
        name = f"tq_{self.form}_w{self.width}_t{self.weight_terms}x{self.data_terms}"
        if not self.signed:
            name += "_u"
        if not self.weight_signed:
            name += "_wu"
        return name

    @property
    def summary(self):
        return (f"{self.form} TQ multiplier, {self.width}-bit, {self.weight_terms} weight terms x "
                f"{self.data_terms} data terms")

    def ports(self):
        weight_bits = self.weight_terms * self.weight_term_width
        operands = [
            {"field": "weight", "count": self.weight_terms, "width": self.weight_term_width, "lsb": 0,
             "note": "the weight's terms +-2**exponent, largest first, unused slots 0 (a prefix of the "
                     "HESE terms of a width-bit weight)",
             "fields": term_fields(self.weight_term_width)},
            {"field": "activation", "width": self.width, "signed": self.signed, "lsb": weight_bits,
             "note": f"HESE-encoded by the unit, keeping its {self.data_terms} largest terms"},
        ]
        products = [{"field": "product", "width": self.product_width, "signed": True, "lsb": 0}]
        return [
            *clock_and_reset(),
            stream_port("operands", "in", self.operands_width, operands),
            stream_port("products", "out", self.product_width, products),
        ]

    def derived(self):
        return {
            "weight_max_exponent": self.weight_max_exponent,
            "data_max_exponent": self.data_max_exponent,
            "weight_term_width": self.weight_term_width,
            "product_width": self.product_width,
            "max_pairs": self.max_pairs,
        }

    def manifest_extras(self):
        return {
            "latency_note": "clocks from an operand handshake to its product valid, for one clock of work "
                            "(serial: 1 + max(1, term pairs))",
            "arithmetic": __doc__.strip(),
        }
