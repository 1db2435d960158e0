"""The hardware of each multiply-accumulate style in spec.macs.MACS: a registry of the same names.

A style gives the array what differs between MACs: the shape of a stationary weight, the shape of
the operand a cell receives, the logic at the array's edge that turns an incoming activation into
that operand (once per activation, not once per cell), and the product a cell computes. A new
style is one class here and one line in MAC_HARDWARE (and its spec in spec/macs.py).
"""

from spec.terms import term_max_exponent

from .hese import term_list_layout, value_shape
from .tq import ShiftAddMultiply, TruncatedActivation, truncated_layout


class IntegerMacHardware:
    """Integer operands; the cell multiplies (`multiply` None: `activation * weight`)."""

    def weight_shape(self, config):
        return value_shape(config.weight_width, config.weight_signed)

    def operand_shape(self, config):
        return value_shape(config.act_width, config.act_signed)

    def edge_operand(self, m, config, activation, name):
        return activation

    def multiply(self, config):
        return None


class TermMacHardware:
    """Term quantization as a shift-add (DESIGN.md §3, §9): weights are term lists; each activation
    is HESE-encoded once at the array's edge, truncated to `data_terms` terms and passed on as the
    magnitude and sign of its truncated value (hdl.tq.TruncatedActivation); a cell shifts that
    magnitude by each weight term's exponent and adds the signed results (hdl.tq.ShiftAddMultiply).
    No multiplier, and no term pairs: the cell's cost grows with `weight_terms` only."""

    def weight_shape(self, config):
        return term_list_layout(term_max_exponent(config.weight_width, config.weight_signed), config.weight_terms)

    def operand_shape(self, config):
        return truncated_layout(config.act_width, config.act_signed)

    def edge_operand(self, m, config, activation, name):
        edge = TruncatedActivation(width=config.act_width, signed=config.act_signed, budget=config.data_terms)
        m.submodules[name] = edge
        m.d.comb += edge.value.eq(activation)
        return edge.operand.as_value()

    def multiply(self, config):
        return ShiftAddMultiply(weight_max_exponent=term_max_exponent(config.weight_width, config.weight_signed),
                                act_width=config.act_width, act_signed=config.act_signed)


MAC_HARDWARE = {"int": IntegerMacHardware(), "tq": TermMacHardware()}
