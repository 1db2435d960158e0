"""One column-combining multiply-accumulate cell: its weight banks and its pipeline (operand select,
one or two product stages, accumulate)."""

import operator

from amaranth.hdl import Module, Mux, Shape, ShapeCastable, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

# Register stages from the cell's activation inputs to its partial sum: the spec's latency and
# cycle model count them (ArrayConfig.cell_stages), elaborate() builds exactly these.
from spec.array import ACCUMULATE_STAGES, OPERAND_STAGES

from .booth import BoothMultiply
from .dsp import dsp_family, dsp_product, fits_dsp
from .platforms import family_of


# How a column's weights shift to their cells (banked_weight): "register", through a stage register
# per cell beside its banks; "bank", through the bank being loaded, which no vector reads while it
# loads. "bank" takes a flip-flop per weight bit fewer, a logic cell each on the iCE40; on the ECP5
# a bank wired to the same bank of both column neighbours is pulled along the column, away from
# its datapath (docs/fpga.md): 49.6 instead of 100.4 MHz at 16x16. weight_stage_for chooses.
WEIGHT_STAGES = ("register", "bank")


def weight_stage_for(platform):
    """The weight stage for `platform`: "bank" on the iCE40, "register" elsewhere (no platform, as
    for gen and simulation, too)."""
    return "bank" if family_of(platform) == "ice40" else "register"


def shift_words(weight_stage, banks):
    """Words of the weight shift register per cell: its stage, or each of its banks."""
    if weight_stage not in WEIGHT_STAGES:
        raise ValueError(f"weight_stage must be one of {', '.join(WEIGHT_STAGES)}, not {weight_stage!r}")
    return banks if weight_stage == "bank" else 1


def weight_load_members(weight_shape, alpha, words=1):
    """The ports through which a cell's weights load (banked_weight), for a cell's signature, with
    `words` (shift_words) words of the weight shift register: per word, what a shift moves into it
    (`load_*`) and what the next cell of the column shifts in (`staged_*`)."""
    def shift(shape):
        return shape if words == 1 else data.ArrayLayout(shape, words)
    members = {
        "load": In(1),
        "load_bank": In(1),
        "load_weight": In(shift(weight_shape)),
        "shift": In(1),
        "staged_weight": Out(shift(weight_shape)),
    }
    if alpha > 1:
        members["load_select"] = In(shift(range(alpha)))
        members["staged_select"] = Out(shift(range(alpha)))
    return members


def bank_word(cell, port, bank):
    """The word of a cell's weight shift `port` (load_* or staged_*) that is bank `bank`'s: the
    port itself where the cell's shift register has one word per cell (weight_load_members)."""
    return port if shift_words(cell.weight_stage, cell.banks) == 1 else port[bank]


def banked_weight(m, cell, weight_shape):
    """A cell's weight banks: each bank's weight (and select, with alpha > 1) in registers. Returns
    the compute bank's weight, combinational from the cell's own registers, and its select (None
    at alpha 1), a register. `cell` has banks, alpha, weight_stage, next_bank and the ports of
    weight_load_members.

    The weights of a column's cells load through a shift register, one stage per cell (`staged_*`,
    loaded from `load_*` by `shift`): a column's cell reads its neighbour's stage, not a bus
    shared by the column, so that its bank registers are driven from beside it (hdl/systolic.py).
    With weight_stage "register" the stage is a register of its own, and `load` writes the stage
    below it (`load_*`) into bank `load_bank`. With "bank" the bank being loaded is the stage: `shift` moves the same bank
    of the cell below into bank `load_bank` (the `load_*` and `staged_*` ports then hold a word
    per bank), and `load` marks the tile's last shift, after which the bank holds the cell's own
    weight.

    `next_bank` is the bank of the activations the cell takes in the next clock, so that no
    multiplexer lies between the column's bank register and the operand select: the cell
    registers it (the compute bank, whose fan-out stays inside the cell), and registers the
    compute bank's select a clock ahead. That select comes from the load when the load writes
    that bank in the same clock: a tile's rows load in the clock before the tile's first vector
    reaches their cells."""
    words = shift_words(cell.weight_stage, cell.banks)

    if cell.weight_stage == "register":
        staged_weight = Signal(weight_shape, name="stage_weight", reset_less=True)
        with m.If(cell.shift):
            m.d.sync += staged_weight.eq(cell.load_weight)
        m.d.comb += cell.staged_weight.eq(staged_weight)
        if cell.alpha > 1:
            staged_select = Signal(range(cell.alpha), name="stage_select", reset_less=True)
            with m.If(cell.shift):
                m.d.sync += staged_select.eq(cell.load_select)
            m.d.comb += cell.staged_select.eq(staged_select)

    weights = [Signal(weight_shape, name=f"weight_b{b}", reset_less=True) for b in range(cell.banks)]
    selects = [Signal(range(cell.alpha), name=f"select_b{b}", reset_less=True) for b in range(cell.banks)]
    for b in range(cell.banks):
        if cell.weight_stage == "bank":
            m.d.comb += bank_word(cell, cell.staged_weight, b).eq(weights[b])
            if cell.alpha > 1:
                m.d.comb += bank_word(cell, cell.staged_select, b).eq(selects[b])
        strobe = cell.load if cell.weight_stage == "register" else cell.shift
        write = strobe & (cell.load_bank == b) if cell.banks > 1 else strobe
        with m.If(write):
            m.d.sync += weights[b].eq(bank_word(cell, cell.load_weight, b))
            if cell.alpha > 1:
                m.d.sync += selects[b].eq(bank_word(cell, cell.load_select, b))

    weight = Signal(weight_shape, name="bank_weight")
    if cell.banks == 1:
        # One bank loads only while no vector reads it: nothing to select or forward.
        m.d.comb += weight.eq(weights[0])
        return weight, None if cell.alpha == 1 else selects[0]
    bank = Signal(name="bank", reset_less=True)
    m.d.sync += bank.eq(cell.next_bank)
    m.d.comb += weight.eq(Mux(bank, weights[1], weights[0]))
    if cell.alpha == 1:
        return weight, None
    select = Signal(range(cell.alpha), name="select", reset_less=True)
    written = cell.load & (cell.load_bank == cell.next_bank)
    if words == 1:
        m.d.sync += select.eq(Mux(written, cell.load_select, Mux(cell.next_bank, selects[1], selects[0])))
    else:
        m.d.sync += select.eq(Mux(cell.next_bank, Mux(written, cell.load_select[1], selects[1]),
                                  Mux(written, cell.load_select[0], selects[0])))
    return weight, select


class ColumnCombiningCell(wiring.Component):
    """Holds a weight and a select index per bank; picks one of its column group's `alpha`
    activations, multiplies it by the weight and adds the product into the partial sum running
    along its row.

    Register stages, none of them reset (datapath registers hold no state that matters after a
    reset) and none with an enable (the array never stalls):
      select   the operand activations[select[bank]] and the weight[bank] (the bank's select is
               registered a clock ahead, from `next_bank`: banked_weight); a LUT multiplier's
               weight as each Booth digit's bits, a register of their own per digit
               (hdl/booth.py registered_windows);
      product  operand x weight (or the MAC style's `multiply`), in `product_stages` stages. An
               integer product in LUTs is a radix-4 Booth multiplier on carry chains
               (hdl/booth.py); with two stages the first holds its partial-product rows, the
               second their sum. A `dsp` cell, whose product goes to one DSP block, computes
               `operand * weight` whole and registers it product_stages times (the registers a
               DSP block can hold: iCE40 SB_MAC16 takes them in; in an ECP5 board build the
               MULT18X18D's own input and output registers are the two product stages, or the
               select and product stages of a one-stage product, hdl/dsp.py). A MAC style's
               `multiply` registers its own intermediate values when called with split=True;
      psum     psum_in + product, one register per cell: what makes the row systolic.
    An activation presented at clock t reaches psum_out at t + `latency`; psum_in must come one
    clock earlier.

    Weights load through a shift register along the cell's column (`shift` moves `load_weight` and
    `load_select` into `staged_weight` and `staged_select`, for the next cell), and `load`
    (registered and replicated per row by the array) writes `load_weight` and `load_select` into
    bank `load_bank`: banked_weight. `weight_stage` "bank" shifts through the bank being loaded
    instead of a stage register (WEIGHT_STAGES; its ports then hold a word per bank). With
    `alpha == 1` there are no select registers and no multiplexer: the dense cell.

    `dsp`: the integer product is for a DSP block (see stage "product" above); the result is the same.

    `defer_negation`: an integer cell in LUTs leaves its Booth multiplier's +1s to the array
    (hdl/booth.py): its psum_out is then psum_in + product - sum_j neg_j 4**j (hdl/macs.py
    `negations` of its weight), and the array adds its row's sum of those at the row's head.

    `multiply`, if given, replaces the integer product `operand * weight`: a callable
    (module, operand, weight, *, split) -> Value with a `shape` attribute (hdl/macs.py); with
    split=True it registers its intermediate values once, so its value comes a clock later.

    Members
    -------
    activations : In(ArrayLayout(act_shape, alpha))
    next_bank   : In(1)                    the bank the next clock's activations use
    psum_in     : In(signed(acc_width))
    psum_out    : Out(signed(acc_width))
    load, load_bank : In(1)
    load_weight : In(weight_shape)
    load_select : In(range(alpha))         (only when alpha > 1)
    shift       : In(1)
    staged_weight : Out(weight_shape)
    staged_select : Out(range(alpha))      (only when alpha > 1)
    (with weight_stage "bank" and two banks, the load_* and staged_* ports are ArrayLayouts of a
    word per bank)
    """

    def __init__(self, *, alpha, act_shape, weight_shape, acc_width, banks=2, multiply=None, product_stages=1,
                 dsp=False, defer_negation=False, weight_stage="register"):
        self.alpha = operator.index(alpha)
        if self.alpha < 1:
            raise ValueError(f"alpha must be at least 1, not {alpha}")
        self.banks = operator.index(banks)
        if self.banks not in (1, 2):
            raise ValueError(f"banks must be 1 or 2, not {banks}")
        self.weight_stage = weight_stage
        words = shift_words(weight_stage, self.banks)
        # Layouts (term lists) stay layouts so that the cell sees their fields.
        self.act_shape = act_shape if isinstance(act_shape, ShapeCastable) else Shape.cast(act_shape)
        self.weight_shape = weight_shape if isinstance(weight_shape, ShapeCastable) else Shape.cast(weight_shape)
        self.acc_width = operator.index(acc_width)
        self.multiply = multiply
        self.product_stages = operator.index(product_stages)
        self.dsp = bool(dsp) and multiply is None
        if self.product_stages not in (1, 2):
            raise ValueError(f"product_stages must be 1 or 2, not {product_stages}")
        if defer_negation and (multiply is not None or dsp):
            raise ValueError("only a LUT cell's integer product can leave its negations' +1s to the array")
        self._booth = None
        if multiply is None and not dsp:
            act, weight = Shape.cast(self.act_shape), Shape.cast(self.weight_shape)
            self._booth = BoothMultiply(act_width=act.width, act_signed=act.signed, weight_width=weight.width,
                                        weight_signed=weight.signed, defer_negation=defer_negation)
        members = {
            "activations": In(data.ArrayLayout(self.act_shape, self.alpha)),
            "next_bank": In(1),
            "psum_in": In(signed(self.acc_width)),
            "psum_out": Out(signed(self.acc_width)),
            **weight_load_members(self.weight_shape, self.alpha, words),
        }
        super().__init__(members)

    @property
    def latency(self):
        return OPERAND_STAGES + self.product_stages + ACCUMULATE_STAGES

    def _integer_product_shape(self):
        """Wide enough for the product of any activation and weight, signed."""
        return signed(Shape.cast(self.act_shape).width + Shape.cast(self.weight_shape).width + 1)

    def _product(self, m, operand, weight):
        """The registered product of the registered `operand` and `weight`, `product_stages`
        clocks after them: the MAC style's `multiply`, or a `dsp` cell's `operand * weight`."""
        if self.multiply is not None:
            # Two stages: the style registers its own intermediate values (split=True).
            product = Signal(self.multiply.shape, name="product", reset_less=True)
            m.d.sync += product.eq(self.multiply(m, operand, weight, split=self.product_stages == 2))
            return product
        shape = self._integer_product_shape()
        product = Signal(shape, name="product", reset_less=True)
        # One multiplier for a DSP block, registered product_stages times (the registers a DSP
        # block can hold: iCE40 SB_MAC16 takes them in).
        full = operand * weight
        if self.product_stages == 1:
            m.d.sync += product.eq(full)
        else:
            early = Signal(shape, name="product_early", reset_less=True)
            m.d.sync += [early.eq(full), product.eq(early)]
        return product

    def _booth_product(self, m, operand, windows):
        """The registered LUT product of the registered `operand` and the weight's registered
        Booth `windows`: a Booth multiplier on carry chains (hdl/booth.py); with two stages its
        partial-product rows are registered and summed in the second."""
        product = Signal(self._integer_product_shape(), name="product", reset_less=True)
        m.d.sync += product.eq(self._booth(m, operand, None, windows=windows, split=self.product_stages == 2))
        return product

    def _dsp_block_product(self, m, selected, bank_weight):
        """The product from a DSP block whose own input and output registers are two of the
        cell's stages (hdl/dsp.py). With one product stage they are the operand stage and the
        product stage. With two, the operand stage is in the fabric, beside the cell's operand
        multiplexer and weight banks, and the block's registers are the two product stages: only
        the registered operand and weight travel to the block's fixed site, with no logic on
        the way."""
        shape = self._integer_product_shape()
        if self.product_stages == 1:
            operand = Signal(self.act_shape, name="operand_selected")
            m.d.comb += operand.eq(selected)
            return dsp_product(m, operand, bank_weight, shape=shape)
        operand = Signal(self.act_shape, name="operand", reset_less=True)
        weight = Signal(self.weight_shape, name="weight", reset_less=True)
        m.d.sync += [operand.eq(selected), weight.eq(bank_weight)]
        return dsp_product(m, operand, weight, shape=shape)

    def elaborate(self, platform):
        m = Module()
        bank_weight, select = banked_weight(m, self, self.weight_shape)
        selected = self.activations[0] if select is None else self.activations[select]

        if self.dsp and dsp_family(platform) is not None \
                and fits_dsp(Value.cast(selected), Value.cast(bank_weight)):
            product = self._dsp_block_product(m, selected, bank_weight)
        else:
            # Stage 1: operand select.
            operand = Signal(self.act_shape, name="operand", reset_less=True)
            m.d.sync += operand.eq(selected)
            if self._booth is not None:
                # The weight as each Booth digit's bits, in registers of the digit's own.
                product = self._booth_product(m, operand, self._booth.registered_windows(m, bank_weight))
            else:
                weight = Signal(self.weight_shape, name="weight", reset_less=True)
                m.d.sync += weight.eq(bank_weight)
                product = self._product(m, operand, weight)

        # Last stage: accumulate. Truncation to acc_width wraps modulo 2**acc_width, as the golden
        # model does.
        psum = Signal(signed(self.acc_width), name="psum", reset_less=True)
        m.d.sync += psum.eq(self.psum_in + product)
        m.d.comb += self.psum_out.eq(psum)
        return m
