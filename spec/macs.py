"""The multiply-accumulate styles of the array's cells: a registry.

A style says what a weight is on the weight stream (an integer or a list of terms), which operand
values the cells can see, which fields of an ArrayConfig it needs, what a cell computes (`cell`,
written into the manifest's "derived" section), and how its payloads are described in the
manifest. A new style is a new class here plus one line in MACS; hdl/ keeps a
registry of the same names for the hardware that computes it (hdl/macs.py).
"""

from .checks import ConfigError, check_int, int_range
from .terms import term_value_max_terms, term_width, truncated_range


def term_fields(width):
    """Manifest description of one term's bits."""
    return [
        {"field": "valid", "width": 1, "lsb": 0, "note": "0 = unused slot (then all bits are 0)"},
        {"field": "sign", "width": 1, "lsb": 1, "note": "1 = negative"},
        {"field": "exponent", "width": width - 2, "lsb": 2, "signed": False},
    ]


class IntegerMac:
    """Integer operands: each cell multiplies the activation by the weight."""

    name = "int"
    summary = "integer multiply-accumulate"
    cell = "activation * weight; one product per cell per clock"
    uses_terms = False

    def validate(self, config):
        if config.weight_terms is not None or config.data_terms is not None:
            raise ConfigError(f"weight_terms and data_terms apply only to mac 'tq' or 'tq-serial', not {self.name!r}")

    def operand_ranges(self, config):
        return (int_range(config.act_width, config.act_signed),
                int_range(config.weight_width, config.weight_signed))

    def weight_field_width(self, config):
        return config.weight_width

    def weight_field(self, config):
        return {"field": "weights", "count": config.cols, "width": config.weight_width,
                "signed": config.weight_signed, "lsb": 0}

    def activation_note(self, config):
        return ""

    def derived(self, config):
        return {"cell": self.cell}

    def label(self, config):
        return ""

    def name_suffix(self, config):
        return ""

    def clocks_per_vector(self, config):
        """Clocks each activation vector occupies in the array (1: one vector per clock)."""
        return 1

    def product_stages(self, config, multiplier_stages):
        """Register stages of a cell's product, given the multiplier style's."""
        return multiplier_stages


class TermMac:
    """Term quantization (DESIGN.md §3, §9): weights arrive as lists of `weight_terms` signed
    power-of-two terms encoded by the front-end; the array's edge HESE-encodes each activation
    once, truncates it to its `data_terms` largest terms and passes the truncated value on as an
    integer (magnitude and sign); each cell shifts that value by each of its weight's terms and
    adds the signed results, in one clock, without a multiplier. The product is the same as the sum
    over term pairs of +-2**(e_w + e_x): weight terms x truncated activation."""

    name = "tq"
    summary = ("term quantization: weights are term lists from the front-end, activations are "
               "truncated to their largest HESE terms at the array's edge, each cell shifts the "
               "truncated activation by each weight term and adds (no multiplier), one MAC per clock")
    cell = ("sum over the weight's term slots of (valid ? sign * (truncated activation << exponent) : 0), "
            "the truncated activation being the sum of the activation's data_terms largest HESE terms; "
            "one product per cell per clock, no multiplier")
    uses_terms = True
    default_terms = {"weight_terms": 2, "data_terms": 3}

    def validate(self, config):
        for name, width, signed in (("weight_terms", config.weight_width, config.weight_signed),
                                    ("data_terms", config.act_width, config.act_signed)):
            most = term_value_max_terms(width, signed)
            if getattr(config, name) is None:
                raise ConfigError(f"mac {self.name!r} needs {name} (1 to {most})")
            config._set(name, check_int(name, getattr(config, name), 1, most))

    def operand_ranges(self, config):
        # Term quantization can round a magnitude up to a power of two beyond the integer
        # format (127 -> 128).
        return (truncated_range(config.act_width, config.act_signed),
                truncated_range(config.weight_width, config.weight_signed))

    def weight_term_width(self, config):
        return term_width(config.weight_width, config.weight_signed)

    def weight_field_width(self, config):
        return config.weight_terms * self.weight_term_width(config)

    def weight_field(self, config):
        tw = self.weight_term_width(config)
        return {"field": "weights", "count": config.cols, "width": self.weight_field_width(config), "lsb": 0,
                "note": f"each weight a list of {config.weight_terms} terms +-2**exponent, largest "
                        f"first, unused slots 0; the weight is their sum",
                "element": {"field": "terms", "count": config.weight_terms, "width": tw,
                            "fields": term_fields(tw)}}

    def activation_note(self, config):
        return (f"; the array truncates each to its {config.data_terms} largest HESE terms and multiplies "
                f"that value")

    def truncated_activation_width(self, config):
        """Bits of the truncated activation a cell receives: its magnitude (up to
        2**term_max_exponent) and, if signed, its sign."""
        return truncated_range(config.act_width, config.act_signed)[1].bit_length() + int(config.act_signed)

    def derived(self, config):
        return {"weight_term_width": self.weight_term_width(config),
                "truncated_activation_width": self.truncated_activation_width(config),
                "operand_ranges": [list(r) for r in self.operand_ranges(config)],
                "cell": self.cell}

    def label(self, config):
        return f"TQ {config.weight_terms}x{config.data_terms} terms"

    def name_suffix(self, config):
        return f"_tq{config.weight_terms}x{config.data_terms}"

    def clocks_per_vector(self, config):
        return 1

    def product_stages(self, config, multiplier_stages):
        return multiplier_stages


class TermSerialMac(TermMac):
    """Term quantization, term-serial (DESIGN.md §3, §9; the TQ paper's tMAC): weights and data
    terms as for "tq", but a cell adds ONE term pair +-2**(e_w + e_x) per clock into the partial
    sum running along its row. Each activation vector occupies weight_terms x data_terms clocks
    (its term-pair budget), one per pair: the array's edge presents data term i of every
    activation and each column's cells use weight term j, the pair (j, i) travelling beside the
    vector; the row's weight_terms x data_terms partial sums of one vector meet in the accumulator.
    A cell has no shifter and no multiplier: an exponent adder, a one-hot and the partial-sum
    adder."""

    name = "tq-serial"
    summary = ("term quantization, term-serial: as 'tq', but each cell adds one term pair "
               "+-2**(e_w + e_x) per clock; a vector takes weight_terms x data_terms clocks")
    cell = ("psum_in + (valid ? sign * 2**(e_w + e_x) : 0) for the clock's term pair: weight term j of the "
            "cell's weight, data term i of its selected activation (the activation's data_terms largest "
            "HESE terms); the pair (j, i) cycles through weight_terms x data_terms clocks per vector")

    def validate(self, config):
        super().validate(config)
        if config.multiplier != "pipelined":
            raise ConfigError(f"mac 'tq-serial' has no multiplier to choose (its cells add one term pair "
                              f"per clock): leave multiplier at 'pipelined', not {config.multiplier!r}")

    def clocks_per_vector(self, config):
        return config.weight_terms * config.data_terms

    def product_stages(self, config, multiplier_stages):
        # One register stage holds the pair's exponent, sign and validity; the one-hot is decoded
        # in the accumulate stage.
        return 1

    def data_term_width(self, config):
        """Bits of one data term on the skew lines: valid, sign, exponent."""
        return term_width(config.act_width, config.act_signed)

    def derived(self, config):
        return {**super().derived(config), "clocks_per_vector": self.clocks_per_vector(config),
                "data_term_width": self.data_term_width(config)}

    def label(self, config):
        return f"TQ term-serial {config.weight_terms}x{config.data_terms} terms"

    def name_suffix(self, config):
        return f"_tqs{config.weight_terms}x{config.data_terms}"


MACS = {style.name: style for style in (IntegerMac(), TermMac(), TermSerialMac())}
