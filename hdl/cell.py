"""One column-combining multiply-accumulate cell: its weight banks and a three-stage pipeline."""

import operator

from amaranth.hdl import Module, Mux, Shape, ShapeCastable, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

# Register stages from the cell's activation inputs to its partial sum (operand select, product,
# accumulate): the spec's latency and cycle model count them, elaborate() builds exactly these.
from spec.array import CELL_STAGES


class ColumnCombiningCell(wiring.Component):
    """Holds a weight and a select index per bank; picks one of its column group's `alpha`
    activations, multiplies it by the weight and adds the product into the partial sum running
    along its row.

    Three register stages, none of them reset (datapath registers hold no state that matters
    after a reset) and none with an enable (the array never stalls):
      select   the operand activations[select[bank]] and the weight[bank];
      product  operand x weight (or the MAC style's `multiply`), where a DSP block's own input
               and output registers go;
      psum     psum_in + product, one register per cell: what makes the row systolic.
    An activation presented at clock t reaches psum_out at t + 3; psum_in must come at t + 2.

    Weights load one row at a time: `load` (registered and replicated per row by the array) writes
    `load_weight` and `load_select` into bank `load_bank`. With `alpha == 1` there are no select
    registers and no multiplexer: the dense cell.

    `multiply`, if given, replaces the integer product `operand * weight`: a callable
    (module, operand, weight) -> Value with a `shape` attribute (hdl/macs.py).

    Members
    -------
    activations : In(ArrayLayout(act_shape, alpha))
    bank        : In(1)                    the bank this clock's activations use
    psum_in     : In(signed(acc_width))
    psum_out    : Out(signed(acc_width))
    load, load_bank : In(1)
    load_weight : In(weight_shape)
    load_select : In(range(alpha))         (only when alpha > 1)
    """

    def __init__(self, *, alpha, act_shape, weight_shape, acc_width, banks=2, multiply=None):
        self.alpha = operator.index(alpha)
        if self.alpha < 1:
            raise ValueError(f"alpha must be at least 1, not {alpha}")
        self.banks = operator.index(banks)
        if self.banks not in (1, 2):
            raise ValueError(f"banks must be 1 or 2, not {banks}")
        # Layouts (term lists) stay layouts so that the cell sees their fields.
        self.act_shape = act_shape if isinstance(act_shape, ShapeCastable) else Shape.cast(act_shape)
        self.weight_shape = weight_shape if isinstance(weight_shape, ShapeCastable) else Shape.cast(weight_shape)
        self.acc_width = operator.index(acc_width)
        self.multiply = multiply
        members = {
            "activations": In(data.ArrayLayout(self.act_shape, self.alpha)),
            "bank": In(1),
            "psum_in": In(signed(self.acc_width)),
            "psum_out": Out(signed(self.acc_width)),
            "load": In(1),
            "load_bank": In(1),
            "load_weight": In(self.weight_shape),
        }
        if self.alpha > 1:
            members["load_select"] = In(range(self.alpha))
        super().__init__(members)

    @property
    def latency(self):
        return CELL_STAGES

    def elaborate(self, platform):
        m = Module()
        weights = [Signal(self.weight_shape, name=f"weight_b{b}", reset_less=True) for b in range(self.banks)]
        selects = [Signal(range(self.alpha), name=f"select_b{b}", reset_less=True) for b in range(self.banks)]
        for b in range(self.banks):
            write = self.load & (self.load_bank == b) if self.banks > 1 else self.load
            with m.If(write):
                m.d.sync += weights[b].eq(self.load_weight)
                if self.alpha > 1:
                    m.d.sync += selects[b].eq(self.load_select)

        def in_bank(values):
            return values[0] if self.banks == 1 else Mux(self.bank, values[1], values[0])

        # Stage 1: operand select.
        operand = Signal(self.act_shape, name="operand", reset_less=True)
        weight = Signal(self.weight_shape, name="weight", reset_less=True)
        if self.alpha == 1:
            m.d.sync += operand.eq(self.activations[0])
        else:
            select = Signal(range(self.alpha), name="select")
            m.d.comb += select.eq(in_bank(selects))
            m.d.sync += operand.eq(self.activations[select])
        m.d.sync += weight.eq(in_bank(weights))

        # Stage 2: product.
        if self.multiply is None:
            width = Shape.cast(self.act_shape).width + Shape.cast(self.weight_shape).width + 1
            product = Signal(signed(width), name="product", reset_less=True)
            m.d.sync += product.eq(operand * weight)
        else:
            product = Signal(self.multiply.shape, name="product", reset_less=True)
            m.d.sync += product.eq(self.multiply(m, operand, weight))

        # Stage 3: accumulate. Truncation to acc_width wraps modulo 2**acc_width, as the golden
        # model does.
        psum = Signal(signed(self.acc_width), name="psum", reset_less=True)
        m.d.sync += psum.eq(self.psum_in + product)
        m.d.comb += self.psum_out.eq(psum)
        return m
