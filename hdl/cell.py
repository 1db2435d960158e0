"""One column-combining multiply-accumulate cell."""

import operator

from amaranth.hdl import Module, Shape, ShapeCastable, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


class ColumnCombiningCell(wiring.Component):
    """Selects one of its column group's `alpha` activations, multiplies it by the stationary
    weight and adds the product into the partial sum running along its row.

    The partial sum is registered (one register per cell is what makes the row systolic), and
    only moves when `enable` is high so that the whole array can stall on back-pressure.
    With `alpha == 1` there is no select port and no multiplexer: the dense cell.

    `multiply`, if given, replaces the integer product `activation * weight`: a callable
    (module, operand, weight) -> Value with a `shape` attribute, where operand and weight have the
    shapes (or layouts) `act_shape` and `weight_shape`. The term-quantized array passes
    hdl.tq.TermPairMultiply: operands and weights are then term lists.

    Members
    -------
    activations : In(ArrayLayout(act_shape, alpha))
    weight      : In(weight_shape)
    select      : In(range(alpha))  (only when alpha > 1)
    psum_in     : In(signed(acc_width))
    psum_out    : Out(signed(acc_width)), registered: psum_in + activations[select] * weight.
    enable      : In(1)
    """

    def __init__(self, *, alpha, act_shape, weight_shape, acc_width, multiply=None):
        self.alpha = operator.index(alpha)
        if self.alpha < 1:
            raise ValueError(f"alpha must be at least 1, not {alpha}")
        # Layouts (term lists) stay layouts so that the cell sees their fields.
        self.act_shape = act_shape if isinstance(act_shape, ShapeCastable) else Shape.cast(act_shape)
        self.weight_shape = weight_shape if isinstance(weight_shape, ShapeCastable) else Shape.cast(weight_shape)
        self.acc_width = operator.index(acc_width)
        self.multiply = multiply
        members = {
            "activations": In(data.ArrayLayout(self.act_shape, self.alpha)),
            "weight": In(self.weight_shape),
            "psum_in": In(signed(self.acc_width)),
            "psum_out": Out(signed(self.acc_width)),
            "enable": In(1),
        }
        if self.alpha > 1:
            members["select"] = In(range(self.alpha))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        if self.alpha == 1:
            operand = self.activations[0]
        else:
            operand = self.activations[self.select]
        if self.multiply is None:
            product = Signal(signed(self.act_shape.width + self.weight_shape.width + 1))
            m.d.comb += product.eq(operand * self.weight)
        else:
            # One signal for the selected operand: its fields are read many times.
            selected = Signal(self.act_shape)
            product = Signal(self.multiply.shape)
            m.d.comb += [
                selected.eq(operand),
                product.eq(self.multiply(m, selected, self.weight)),
            ]
        with m.If(self.enable):
            # Truncation to acc_width wraps modulo 2**acc_width, as the golden model does.
            m.d.sync += self.psum_out.eq(self.psum_in + product)
        return m
