"""HESE encoding in hardware: an integer as a budget of signed power-of-two terms (DESIGN.md §3).

The rule (Kung, McDanel, Zhang, SC 2020) scans |v| from the MSB with the window
(b[i+1], b[i], b[i-1]): 010 gives +2^i and skips the next bit, 011 gives +2^(i+1), 110 gives -2^i.
In hardware it is purely local: the skipped bit is always 0 and a window whose middle bit is 0
never emits, so the skip never changes the result, and each bit position i emits at most one term,
decided by its own three-bit window. Exponents strictly decrease with the position, so truncation
to k terms keeps the k most significant emitting positions: a priority selection from the MSB.
tests/hdl/test_hese.py checks this against software.frontend.termquant.hese_terms for every value.

A term is StructLayout {valid, sign (1 = negative), exponent}; a term list is an ArrayLayout of
`budget` terms, largest first, unused slots invalid (all zero).
"""

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.terms import MAX_TERM_WIDTH, exponent_width, term_max_exponent, term_value_max_terms

def term_layout(max_exp):
    return data.StructLayout({
        "valid": 1,
        "sign": 1,                                  # 1 = negative
        "exponent": unsigned(exponent_width(max_exp)),
    })


def term_list_layout(max_exp, budget):
    """`budget` terms, largest first; unused slots are all zero (valid 0)."""
    return data.ArrayLayout(term_layout(max_exp), budget)


def check_format(width, signed, budget):
    """Validated (width, signed, budget) of a HESE-encoded value; ValueError with a clear message."""
    width = operator.index(width)
    if not 2 <= width <= MAX_TERM_WIDTH:
        raise ValueError(f"width must be between 2 and {MAX_TERM_WIDTH}, not {width}")
    if not isinstance(signed, bool):
        raise ValueError(f"signed must be True or False, not {signed!r}")
    budget = operator.index(budget)
    most = term_value_max_terms(width, signed)
    if not 1 <= budget <= most:
        raise ValueError(f"a {width}-bit {'signed' if signed else 'unsigned'} value has at most {most} "
                         f"terms: budget must be between 1 and {most}, not {budget}")
    return width, signed, budget


def sign_magnitude(m, value, *, width, signed):
    """(negative, |value| as `width` unsigned bits, bit(i) of the magnitude with 0 outside it)."""
    magnitude = Signal(width, name="magnitude")
    negative = Signal(name="negative")
    if signed:
        m.d.comb += [
            negative.eq(value[width - 1]),
            # -(-2**(width-1)) is 2**(width-1), which fits `width` unsigned bits.
            magnitude.eq(Mux(negative, -value, value)[:width]),
        ]
    else:
        m.d.comb += magnitude.eq(value)

    def bit(i):
        return magnitude[i] if 0 <= i < width else Const(0, 1)
    return negative, magnitude, bit


def _emitters(m, value, *, width, signed, budget):
    """The positions of HESE encoding: (emits, exponents, signs, found, max_exp), found[i] being
    the one-hot count of emitting positions above position i (found[i][s]: exactly s, s < budget)."""
    max_exp = term_max_exponent(width, signed)
    exp_width = exponent_width(max_exp)
    negative, magnitude, bit = sign_magnitude(m, value, width=width, signed=signed)

    # Position i emits unless its window is 111 (inside a run) or its middle bit is 0.
    emits, exponents, signs = [], [], []
    for i in range(width):
        above, below = bit(i + 1), bit(i - 1)
        emit = Signal(name=f"emit_{i}")
        exponent = Signal(exp_width, name=f"exponent_{i}")
        sign = Signal(name=f"sign_{i}")
        m.d.comb += [
            emit.eq(bit(i) & ~(above & below)),
            # 011: +2^(i+1) (the top of a run), else 2^i.
            exponent.eq(Mux(~above & below, i + 1, i) if i + 1 <= max_exp else i),
            sign.eq(above ^ negative),               # 110: -2^i; all signs flip for v < 0
        ]
        emits.append(emit)
        exponents.append(exponent)
        signs.append(sign)

    # found[i][s]: position i is the s-th emitting position counted from the MSB (s < budget).
    # One-hot, built from the MSB down: each emitting position moves the count one slot on.
    count = Const(1, budget + 1)                      # before any position: 0 found
    found = {}
    for i in reversed(range(width)):
        here = Signal(budget + 1, name=f"found_above_{i}")
        m.d.comb += here.eq(count)
        found[i] = here
        count = Mux(emits[i], Cat(Const(0, 1), here[:budget]), here)
    return emits, exponents, signs, found, max_exp


def _term_at(m, chosen, exponents, signs, max_exp, name):
    """The term of the position `chosen` (one-hot over positions, or 0: no term)."""
    exponent = 0
    for i in range(len(chosen)):
        exponent = exponent | Mux(chosen[i], exponents[i], 0)
    term = Signal(term_layout(max_exp), name=name)
    m.d.comb += [
        term.valid.eq(chosen.any()),
        term.sign.eq((chosen & Cat(signs)).any()),
        term.exponent.eq(exponent),
    ]
    return term


def encode(m, value, *, width, signed, budget):
    """Combinational HESE encoding of `value` truncated to `budget` terms; returns the term list
    as a plain Value (Cat of the slots, laid out as term_list_layout)."""
    emits, exponents, signs, found, max_exp = _emitters(m, value, width=width, signed=signed, budget=budget)
    terms = []
    for s in range(budget):
        chosen = Signal(width, name=f"slot_{s}_position")   # one-hot: the position slot s takes
        m.d.comb += chosen.eq(Cat(emits[i] & found[i][s] for i in range(width)))
        terms.append(_term_at(m, chosen, exponents, signs, max_exp, f"term_{s}").as_value())
    return Cat(terms)


def encode_term(m, value, index, *, width, signed, budget):
    """Slot `index` (a Value below `budget`) of encode()'s term list, without building the
    others: the term-serial array's edge needs one term of each activation per clock."""
    emits, exponents, signs, found, max_exp = _emitters(m, value, width=width, signed=signed, budget=budget)
    chosen = Signal(width, name="indexed_position")
    m.d.comb += chosen.eq(Cat(emits[i] & found[i].bit_select(index, 1) for i in range(width)))
    return _term_at(m, chosen, exponents, signs, max_exp, "indexed_term")


class HeseEncoder(wiring.Component):
    """Combinational HESE encoder: a `width`-bit value to its `budget` most significant terms.

    Members
    -------
    value : In(signed(width) or unsigned(width))
    terms : Out(term_list_layout(term_max_exponent(width, signed), budget)), largest first.
    """

    def __init__(self, *, width, signed, budget):
        self.width, self.signed, self.budget = check_format(width, signed, budget)
        self.max_exponent = term_max_exponent(self.width, self.signed)
        self.value_shape = value_shape(self.width, self.signed)
        self.terms_layout = term_list_layout(self.max_exponent, self.budget)
        super().__init__({
            "value": In(self.value_shape),
            "terms": Out(self.terms_layout),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.terms.eq(encode(m, self.value, width=self.width, signed=self.signed,
                                         budget=self.budget))
        return m


class HeseEncoderStream(wiring.Component):
    """Streaming HESE encoder: values in, term lists out, one register stage (latency 1).

    Takes a value whenever its output register is empty or being read, so it runs at one value per
    clock and never loses or duplicates a beat under any valid/ready pattern.

    Members
    -------
    values : In(stream.Signature(signed(width) or unsigned(width)))
    terms  : Out(stream.Signature(term_list_layout(term_max_exponent(width, signed), budget)))
    """

    def __init__(self, *, width, signed, budget):
        self.width, self.signed, self.budget = check_format(width, signed, budget)
        self.max_exponent = term_max_exponent(self.width, self.signed)
        self.terms_layout = term_list_layout(self.max_exponent, self.budget)
        super().__init__({
            "values": In(stream.Signature(value_shape(self.width, self.signed))),
            "terms": Out(stream.Signature(self.terms_layout)),
        })

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.encoder = encoder = HeseEncoder(width=self.width, signed=self.signed, budget=self.budget)
        m.d.comb += [
            encoder.value.eq(self.values.payload),
            self.values.ready.eq(~self.terms.valid | self.terms.ready),
        ]
        with m.If(self.values.valid & self.values.ready):
            m.d.sync += [self.terms.payload.eq(encoder.terms), self.terms.valid.eq(1)]
        with m.Elif(self.terms.ready):
            m.d.sync += self.terms.valid.eq(0)
        return m


def value_shape(width, is_signed):
    """The Amaranth shape of a `width`-bit integer."""
    return signed(width) if is_signed else unsigned(width)
