"""One column-combining multiply-accumulate cell."""

import operator

from amaranth.hdl import Module, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


class ColumnCombiningCell(wiring.Component):
    """Selects one of its column group's `alpha` activations, multiplies it by the stationary
    weight and adds the product into the partial sum running along its row.

    The partial sum is registered (one register per cell is what makes the row systolic), and
    only moves when `enable` is high so that the whole array can stall on back-pressure.
    With `alpha == 1` there is no select port and no multiplexer: the dense cell.

    Members
    -------
    activations : In(ArrayLayout(act_shape, alpha))
    weight      : In(weight_shape)
    select      : In(range(alpha))  (only when alpha > 1)
    psum_in     : In(signed(acc_width))
    psum_out    : Out(signed(acc_width)), registered: psum_in + activations[select] * weight.
    enable      : In(1)
    """

    def __init__(self, *, alpha, act_shape, weight_shape, acc_width):
        self.alpha = operator.index(alpha)
        if self.alpha < 1:
            raise ValueError(f"alpha must be at least 1, not {alpha}")
        self.act_shape = Shape.cast(act_shape)
        self.weight_shape = Shape.cast(weight_shape)
        self.acc_width = operator.index(acc_width)
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
        product = Signal(signed(self.act_shape.width + self.weight_shape.width + 1))
        m.d.comb += product.eq(operand * self.weight)
        with m.If(self.enable):
            # Truncation to acc_width wraps modulo 2**acc_width, as the golden model does.
            m.d.sync += self.psum_out.eq(self.psum_in + product)
        return m
