"""The multiply-accumulate styles of the array's cells: a registry.

A style says what a weight is on the weight stream (an integer or a list of terms), which operand
values the cells can see, which fields of an ArrayConfig it needs, and how its payloads are
described in the manifest. A new style is a new class here plus one line in MACS; hdl/ keeps a
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
    uses_terms = False

    def validate(self, config):
        if config.weight_terms is not None or config.data_terms is not None:
            raise ConfigError(f"weight_terms and data_terms apply only to mac 'tq', not {self.name!r}")

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
        return {}

    def label(self, config):
        return ""

    def name_suffix(self, config):
        return ""


class TermMac:
    """Term quantization (DESIGN.md §3): weights arrive as lists of `weight_terms` signed
    power-of-two terms encoded by the front-end, activations are HESE-encoded at the array's edge
    and truncated to `data_terms` terms, and each cell sums the +-2**(e_w + e_x) of its term pairs
    in one clock."""

    name = "tq"
    summary = ("term quantization: weights are term lists from the front-end, activations are "
               "HESE-encoded at the array's edge, each cell sums its term pairs in one clock")
    uses_terms = True
    default_terms = {"weight_terms": 2, "data_terms": 3}

    def validate(self, config):
        for name, width, signed in (("weight_terms", config.weight_width, config.weight_signed),
                                    ("data_terms", config.act_width, config.act_signed)):
            most = term_value_max_terms(width, signed)
            if getattr(config, name) is None:
                raise ConfigError(f"mac 'tq' needs {name} (1 to {most})")
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
        return f"; the array HESE-encodes each and keeps its {config.data_terms} largest terms"

    def derived(self, config):
        return {"weight_term_width": self.weight_term_width(config),
                "activation_term_width": term_width(config.act_width, config.act_signed),
                "operand_ranges": [list(r) for r in self.operand_ranges(config)]}

    def label(self, config):
        return f"TQ {config.weight_terms}x{config.data_terms} terms"

    def name_suffix(self, config):
        return f"_tq{config.weight_terms}x{config.data_terms}"


MACS = {style.name: style for style in (IntegerMac(), TermMac())}
