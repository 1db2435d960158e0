"""The hardware of each multiply-accumulate style in spec.macs.MACS: a registry of the same names.

A style gives the array what differs between MACs: the shape of a stationary weight, the shape of
the operand a cell receives, the logic at the array's edge that turns an incoming activation into
that operand (once per activation, not once per cell), and the product a cell computes. A new
style is one class here and one line in MAC_HARDWARE (and its spec in spec/macs.py).
"""

from amaranth.hdl import Module

from spec.terms import term_max_exponent, term_product_width

from .booth import BoothMultiply
from .cell import ColumnCombiningCell
from .hese import encode_term, term_layout, term_list_layout, value_shape
from .tq import ShiftAddMultiply, TruncatedActivation, truncated_layout
from .tq_serial import TermSerialCell


class MacHardware:
    """What every style shares: its cell is a ColumnCombiningCell with the style's operand, weight
    and product, and its activation vectors take one clock each."""

    serial = False      # True: vectors take config.clocks_per_vector clocks, one data term each (below)

    def cell(self, config, *, acc_width, dsp=False, defer_negation=False, weight_stage="register"):
        """`defer_negation`: the cell leaves its LUT multiplier's +1s to its row's head where it
        has one (hdl/booth.py; `negations` says what they are). `weight_stage`: hdl/cell.py's."""
        multiply = self.multiply(config)
        return ColumnCombiningCell(dsp=dsp, alpha=config.alpha, act_shape=self.operand_shape(config),
                                   weight_shape=self.weight_shape(config), acc_width=acc_width, banks=config.banks,
                                   multiply=multiply, product_stages=config.product_stages,
                                   defer_negation=defer_negation and multiply is None and not dsp,
                                   weight_stage=weight_stage)

    def negations(self, config, weight, *, dsp=False):
        """The `negations` of `weight` for the cell `cell(config, dsp=dsp, defer_negation=True)`
        makes: [(bit, shift)], what it leaves out of its product for its row's head to add."""
        return []


class IntegerMacHardware(MacHardware):
    """Integer operands; the cell multiplies (`multiply` None: `activation * weight`)."""

    def negations(self, config, weight, *, dsp=False):
        if dsp:
            return []
        return BoothMultiply(act_width=config.act_width, act_signed=config.act_signed, weight_width=config.weight_width,
                             weight_signed=config.weight_signed, defer_negation=True).negations(weight)

    def weight_shape(self, config):
        return value_shape(config.weight_width, config.weight_signed)

    def operand_shape(self, config):
        return value_shape(config.act_width, config.act_signed)

    def edge_operand(self, m, config, activation, name):
        return activation

    def multiply(self, config):
        return None


class TermMacHardware(MacHardware):
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


class TermSerialMacHardware(MacHardware):
    """Term quantization, one term pair per clock (hdl/tq_serial.py): weights are term lists as
    for "tq"; the array's edge holds each activation for the vector's weight_terms x data_terms
    clocks and presents one of its `data_terms` largest HESE terms per clock (hdl/systolic.py);
    the cell adds one +-2**(e_w + e_x) per clock."""

    serial = True

    def weight_shape(self, config):
        return term_list_layout(term_max_exponent(config.weight_width, config.weight_signed), config.weight_terms)

    def operand_shape(self, config):
        return term_layout(term_max_exponent(config.act_width, config.act_signed))

    def edge_term(self, m, config, activation, index, name):
        """Term `index` (a Value) of the activation's `data_terms` largest HESE terms, once per
        activation at the array's edge (a submodule, so that its signals keep their names)."""
        edge = Module()
        m.submodules[name] = edge
        term = encode_term(edge, activation, index, width=config.act_width, signed=config.act_signed,
                           budget=config.data_terms)
        return term

    def cell(self, config, *, acc_width, dsp=False, defer_negation=False, weight_stage="register"):
        pair_width = term_product_width(term_max_exponent(config.weight_width, config.weight_signed),
                                        term_max_exponent(config.act_width, config.act_signed))
        return TermSerialCell(alpha=config.alpha, data_term_layout=self.operand_shape(config),
                              weight_layout=self.weight_shape(config), acc_width=acc_width,
                              pair_width=pair_width, banks=config.banks, weight_stage=weight_stage)


MAC_HARDWARE = {"int": IntegerMacHardware(), "tq": TermMacHardware(), "tq-serial": TermSerialMacHardware()}
