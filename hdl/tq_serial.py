"""The term-serial TQ array cell (`--mac tq-serial`; the TQ paper's tMAC; DESIGN.md §3, §9): one
term pair per clock into the partial sum running along its row.

Each clock the array's edge presents one data term of every activation (hdl/systolic.py: a vector
stays weight_terms x data_terms clocks, one per term pair) and tells each column which of its
weights' terms to use (`term`). The cell picks its activation's term (select) and its weight's
term (bank, term), adds their exponents, and adds +-2**(e_w + e_x) to psum_in: a one-hot when
positive, a thermometer (every bit from the exponent up) when negative, decoded a stage ahead so
that one LUT per bit makes it. No multiplier, no shifter.
"""

import operator

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spec.array import ACCUMULATE_STAGES, OPERAND_STAGES

from .cell import banked_weight, shift_words, weight_load_members

PAIR_STAGES = 1     # the pair, decoded, registered (spec: TermSerialMac.product_stages)
LOW_BITS = 2        # the exponent's low bits, decoded in stage 2 (`fine`): with the two high bits
                    # and the sign, an int8 pair's addend bit is a LUT4
LOW_SPAN = 1 << LOW_BITS


class TermSerialCell(wiring.Component):
    """Register stages, none reset and none with an enable (the array never stalls):
      select   the data term activations[select[bank]] and the weight term weight[bank][term];
      pair     their exponent sum, sign (XOR) and validity (AND), decoded for stage 3;
      psum     psum_in + (+-2**exponent or 0).
    A term presented at clock t reaches psum_out at t + `latency`; psum_in must come one clock
    earlier. Weights load as in hdl/cell.py (`load`, `load_bank`, `load_weight`, `load_select`,
    `shift` and the `staged_*` outputs), and
    the bank is known a clock ahead (`next_bank`, hdl/cell.py banked_weight).

    Members
    -------
    activations : In(ArrayLayout(data_term_layout, alpha))   this clock's data term of each activation
    next_bank   : In(1)                                       the bank of the next clock's terms
    term        : In(range(weight_terms))                     (only when weight_terms > 1)
    psum_in     : In(signed(acc_width))
    psum_out    : Out(signed(acc_width))
    load, load_bank : In(1)
    load_weight : In(weight_layout)                           a term list
    load_select : In(range(alpha))                            (only when alpha > 1)
    shift, staged_weight, staged_select                       as hdl/cell.py's
    (`weight_stage`: as hdl/cell.py's)
    """

    def __init__(self, *, alpha, data_term_layout, weight_layout, acc_width, pair_width, banks=2,
                 weight_stage="register"):
        self.alpha = operator.index(alpha)
        self.banks = operator.index(banks)
        if self.alpha < 1:
            raise ValueError(f"alpha must be at least 1, not {alpha}")
        if self.banks not in (1, 2):
            raise ValueError(f"banks must be 1 or 2, not {banks}")
        self.weight_stage = weight_stage
        words = shift_words(weight_stage, self.banks)
        self.data_term_layout = data_term_layout
        self.weight_layout = weight_layout
        self.weight_terms = weight_layout.length
        self.acc_width = operator.index(acc_width)
        self.pair_width = operator.index(pair_width)     # bits of the largest pair's one-hot
        members = {
            "activations": In(data.ArrayLayout(data_term_layout, self.alpha)),
            "next_bank": In(1),
            "psum_in": In(signed(self.acc_width)),
            "psum_out": Out(signed(self.acc_width)),
            **weight_load_members(weight_layout, self.alpha, words),
        }
        if self.weight_terms > 1:
            members["term"] = In(range(self.weight_terms))
        super().__init__(members)

    @property
    def latency(self):
        return OPERAND_STAGES + PAIR_STAGES + ACCUMULATE_STAGES

    def elaborate(self, platform):
        m = Module()
        weight, select = banked_weight(m, self, self.weight_layout)

        # Stage 1: the data term and the weight term.
        term_shape = self.weight_layout.elem_shape
        data_term = Signal(self.data_term_layout, name="data_term", reset_less=True)
        weight_term = Signal(term_shape, name="weight_term", reset_less=True)
        m.d.sync += data_term.eq(self.activations[0] if select is None else self.activations[select])
        m.d.sync += weight_term.eq(weight[self.term] if self.weight_terms > 1 else weight[0])

        # Stage 2: the pair, its low exponent bits decoded. +-2**e as a `width`-bit two's complement
        # value is a one-hot (bit e) or, negative, a thermometer (every bit from e up: -2**e, so the
        # adder needs no carry-in). With e = 4*high + low, its bit p = 4*j + i is
        #   (negative & high < j) | (high == j & fine[i]),  fine[i] = negative ? low <= i : low == i,
        # a function of 4 registered bits for int8 pairs (2 of `high`, `negative`, one of `fine`):
        # one LUT4 per addend bit in front of the partial-sum adder. An invalid pair clears
        # `negative` and `fine`, so its addend is 0.
        exponent = Signal(len(weight_term.exponent) + 1, name="pair_exponent")
        valid = Signal(name="pair_valid")
        sign = Signal(name="pair_sign")
        m.d.comb += [
            exponent.eq(weight_term.exponent + data_term.exponent),
            valid.eq(weight_term.valid & data_term.valid),
            sign.eq(weight_term.sign ^ data_term.sign),
        ]
        high = Signal(max(len(exponent) - LOW_BITS, 0), name="pair_high", reset_less=True)
        negative = Signal(name="pair_negative", reset_less=True)
        fine = Signal(LOW_SPAN, name="pair_fine", reset_less=True)
        low = exponent[:LOW_BITS]
        # Comparisons whose answer the widths decide are written as constants (Verilator's lint
        # rejects a comparison that always gives the same answer).
        m.d.sync += [
            high.eq(exponent[LOW_BITS:]),
            negative.eq(valid & sign),
            fine.eq(Cat(valid & (sign | (low == i)) if i == LOW_SPAN - 1
                        else valid & Mux(sign, low <= i, low == i) for i in range(LOW_SPAN))),
        ]

        # Stage 3: psum_in + the pair.
        width = min(self.pair_width, self.acc_width)
        top = 2 ** len(high) - 1

        def addend_bit(p):
            j, i = divmod(p, LOW_SPAN)
            if j > top:             # beyond every exponent: the thermometer's
                return negative
            at = (high == j) & fine[i] if len(high) else fine[i]     # (narrow pairs: e = low)
            return at if j == 0 else (negative & (high < j)) | at

        addend = Signal(self.acc_width, name="pair_addend")
        m.d.comb += addend.eq(Cat(*(addend_bit(p) for p in range(width)),
                                  negative.replicate(self.acc_width - width)))
        total = Signal(self.acc_width, name="psum_next")
        m.d.comb += total.eq(self.psum_in + addend)
        psum = Signal(signed(self.acc_width), name="psum", reset_less=True)
        m.d.sync += psum.eq(total)
        m.d.comb += self.psum_out.eq(psum)
        return m
