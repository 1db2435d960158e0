"""Term-quantization multipliers (Kung, McDanel, Zhang, SC 2020; DESIGN.md §3).

A weight arrives as a list of signed power-of-two terms, pre-encoded by the front-end; the
activation arrives as an integer and is HESE-encoded here, truncated to `data_terms` terms
(hdl/hese.py). The product is the sum over term pairs of +-2**(e_w + e_x): exponents add, signs
multiply, and no multiplier is needed.

Two forms, one stream interface:
  parallel  every term pair in one clock: one signed one-hot per pair and an adder tree;
            one product per clock.
  serial    one valid term pair per clock into an accumulator, skipping invalid slots; a product
            takes max(1, n_w * n_x) clocks for n_w valid weight terms and n_x data terms.
Both have three register stages (operands with the encoded activation, term pairs, product), so a
product of one clock of work is valid 3 clocks after its operands' handshake (`latency`), and take
the next operands in the clock the current ones send their last pair on: a stream of products
with p_k pairs takes sum_k max(1, p_k) + 3 clocks from the first operand handshake to the last
product handshake, inclusive (parallel: every p_k counts as 1). software/golden/tq.py holds the same
model; the tests assert the RTL equals it.

Product width: weights are term lists the front-end made from `width`-bit values (a prefix of
their HESE terms), so |w| <= 2**max_exponent, and so is the truncated activation; the product
therefore fits max_exponent_w + max_exponent_x + 2 signed bits. Every sum is taken modulo
2**product_width, which is exact whenever the final product fits, whatever the order of the terms.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.terms import term_product_width
from spec.tq import TQConfig

from .hese import encode, term_list_layout, value_shape


def pair_term(m, weight_term, data_term, width):
    """+-2**(e_w + e_x) of one term pair as a `width`-bit two's complement value (0 if a slot is
    invalid): +2**e is a one-hot, -2**e = ~(2**e - 1) has every bit from e up set."""
    valid = Signal(name="pair_valid")
    negative = Signal(name="pair_negative")
    exponent = Signal(max(len(weight_term.exponent), len(data_term.exponent)) + 1, name="pair_exponent")
    one_hot = Signal(width, name="pair_one_hot")
    from_e_up = Signal(width, name="pair_from_e_up")
    value = Signal(signed(width), name="pair_value")
    # The largest exponent the signal holds: a bit past it is a constant, not a comparison that
    # would always give the same answer (which Verilator's lint rejects).
    reach = 2 ** len(exponent) - 1
    m.d.comb += [
        valid.eq(weight_term.valid & data_term.valid),
        negative.eq(weight_term.sign ^ data_term.sign),
        exponent.eq(weight_term.exponent + data_term.exponent),
        # Decoders of the exponent, written bit by bit rather than as `1 << exponent`: Yosys's
        # `share` pass SAT-checks every pair of shifters for sharing (12 per 2x3 cell; about 40 of
        # a 10x10 TQ array's 86 build minutes) and finds none, and it leaves comparisons alone.
        one_hot.eq(Cat(exponent == k if k <= reach else Const(0, 1) for k in range(width))),
        from_e_up.eq(Cat(exponent <= k if k < reach else Const(1, 1) for k in range(width))),
        value.eq(Mux(valid, Mux(negative, from_e_up, one_hot), 0)),
    ]
    return value


def sum_tree(values, width):
    """Balanced adder tree, every sum wrapped to `width` bits (exact modulo 2**width)."""
    values = list(values)
    if not values:
        return Const(0, signed(width))
    while len(values) > 1:
        paired = [(values[k] + values[k + 1])[:width].as_signed() for k in range(0, len(values) - 1, 2)]
        values = paired + values[len(values) - len(values) % 2:]
    return values[0]


def term_pair_sum(m, weight_terms, data_terms, width):
    """Sum over all pairs of two term lists (Views of term_list_layout) of +-2**(e_w + e_x)."""
    return sum_tree([pair_term(m, w, x, width) for w in weight_terms for x in data_terms], width)


class TermPairMultiply:
    """The product of a term-quantized array cell: (data terms, weight terms) -> their pair sum.

    A callable with a `shape`, as hdl.cell.ColumnCombiningCell's `multiply` expects."""

    def __init__(self, *, weight_max_exponent, data_max_exponent):
        self.width = term_product_width(weight_max_exponent, data_max_exponent)
        self.shape = signed(self.width)

    def __call__(self, m, operand, weight):
        return term_pair_sum(m, weight, operand, self.width)


class TermPairProduct(wiring.Component):
    """Combinational parallel TQ product of two term lists (the datapath of the parallel form and
    of the array's TQ cells).

    Members
    -------
    weight  : In(term_list_layout(weight_max_exponent, weight_terms))
    data    : In(term_list_layout(data_max_exponent, data_terms))
    product : Out(signed(weight_max_exponent + data_max_exponent + 2))
    """

    def __init__(self, *, weight_max_exponent, weight_terms, data_max_exponent, data_terms):
        self.width = term_product_width(weight_max_exponent, data_max_exponent)
        super().__init__({
            "weight": In(term_list_layout(weight_max_exponent, weight_terms)),
            "data": In(term_list_layout(data_max_exponent, data_terms)),
            "product": Out(signed(self.width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(term_pair_sum(m, self.weight, self.data, self.width))
        return m


def _lowest_one(mask):
    """One-hot of the lowest set bit of `mask` (0 if none), as plain logic rather than mask & -mask,
    which would put a carry chain in the serial form's per-pair path."""
    return Cat(mask[k] & ~mask[:k].any() if k else mask[0] for k in range(len(mask)))


def _select(terms, one_hot):
    """The term of `terms` picked by a one-hot, as an AND-OR multiplexer (a plain Value)."""
    picked = 0
    for k, term in enumerate(terms):
        picked = picked | Mux(one_hot[k], term.as_value(), 0)
    return picked


class TQMultiplier(wiring.Component):
    """Streaming term-quantization multiplier, serial or parallel.

    Three register stages:
      job     the operands, with the activation HESE-encoded on the way in;
      pairs   parallel: every term pair's +-2**(e_w + e_x); serial: one pair per clock, the
              pairs of a job in order (weight term outer, data term inner, invalid slots skipped),
              a job with no pair sending one zero;
      product parallel: the adder tree over the pairs; serial: an accumulator, whose total goes
              out with the job's last pair.
    Each stage moves when the next one has room, so the unit stalls on back-pressure without
    losing or duplicating a beat, and takes new operands in the clock its job sends its last pair.

    `config` is a spec.tq.TQConfig: widths, term budgets, form and latency come from it.

    Members
    -------
    operands : In(stream.Signature(StructLayout{weight: term list, activation: integer}))
    products : Out(stream.Signature(signed(product_width)))
    """

    def __init__(self, config):
        if not isinstance(config, TQConfig):
            raise TypeError(f"TQMultiplier needs a spec.tq.TQConfig, not {type(config).__name__}")
        self.config = config
        self.width, self.signed, self.weight_signed = config.width, config.signed, config.weight_signed
        self.weight_terms, self.data_terms, self.form = config.weight_terms, config.data_terms, config.form
        self.weight_max_exponent = config.weight_max_exponent
        self.data_max_exponent = config.data_max_exponent
        self.product_width = config.product_width
        self.weight_layout = term_list_layout(self.weight_max_exponent, self.weight_terms)
        self.data_layout = term_list_layout(self.data_max_exponent, self.data_terms)
        self.operands_layout = data.StructLayout({"weight": self.weight_layout,
                                                  "activation": value_shape(self.width, self.signed)})
        super().__init__({
            "operands": In(stream.Signature(self.operands_layout)),
            "products": Out(stream.Signature(value_shape(self.product_width, True))),
        })

    @property
    def latency(self):
        """Clocks from an operand handshake to its product being valid, for a product of at most
        one term pair (serial: 2 + max(1, pairs) in general): the spec's three register stages."""
        return self.config.latency

    def elaborate(self, platform):
        m = Module()
        P = self.product_width
        out_free = ~self.products.valid | self.products.ready

        # Stage 1, the job: operands taken, activation encoded.
        job_weight = Signal(self.weight_layout)
        job_data = Signal(self.data_layout)
        job_valid = Signal()
        finish = Signal()       # the job sends its last pair (or all of them) this clock
        encoded = Signal(self.data_layout)
        m.d.comb += encoded.eq(encode(m, self.operands.payload.activation, width=self.width,
                                      signed=self.signed, budget=self.data_terms))
        take = Signal()
        m.d.comb += [
            self.operands.ready.eq(~job_valid | finish),
            take.eq(self.operands.valid & self.operands.ready),
        ]
        with m.If(finish):
            m.d.sync += job_valid.eq(0)
        with m.If(take):
            m.d.sync += [
                job_weight.eq(self.operands.payload.weight),
                job_data.eq(encoded),
                job_valid.eq(1),
            ]

        # Stage 2, the pairs register; stage 3, the product register.
        pairs_valid = Signal()
        pairs_move = Signal()   # stage 2 hands its pairs to stage 3 this clock
        pairs_load = Signal()   # stage 2 takes pairs from the job this clock
        m.d.comb += pairs_load.eq(job_valid & (~pairs_valid | pairs_move))
        with m.If(pairs_move):
            m.d.sync += pairs_valid.eq(0)
        with m.If(pairs_load):
            m.d.sync += pairs_valid.eq(1)
        emit = Signal()         # the product register is written this clock
        result = Signal(signed(P))

        if self.form == "parallel":
            pairs = [Signal(signed(P), name=f"pair_{i}_{j}")
                     for i in range(self.weight_terms) for j in range(self.data_terms)]
            terms = [pair_term(m, w, x, P) for w in job_weight for x in job_data]
            with m.If(pairs_load):
                m.d.sync += [pair.eq(term) for pair, term in zip(pairs, terms)]
            m.d.comb += [
                finish.eq(pairs_load),
                pairs_move.eq(pairs_valid & out_free),
                emit.eq(pairs_move),
                result.eq(sum_tree(pairs, P)),
            ]
        else:
            self._serial_engine(m, job_weight, job_data, take, encoded, pairs_load, finish,
                                pairs_valid, pairs_move, out_free, emit, result)

        with m.If(emit):
            m.d.sync += [self.products.payload.eq(result), self.products.valid.eq(1)]
        with m.Elif(self.products.ready):
            m.d.sync += self.products.valid.eq(0)
        return m

    def _serial_engine(self, m, job_weight, job_data, take, encoded, pairs_load, finish,
                       pairs_valid, pairs_move, out_free, emit, result):
        """One term pair per clock from the job (weight term outer, data term inner, invalid
        slots skipped; masks of the slots still to visit sit beside the job register) into a
        one-pair register, and from there into the accumulator."""
        P = self.product_width
        weight_left = Signal(self.weight_terms)
        data_left = Signal(self.data_terms)
        data_all = Cat(t.valid for t in job_data)
        w_pick, x_pick = Signal.like(weight_left), Signal.like(data_left)
        weight_rest, data_rest = Signal.like(weight_left), Signal.like(data_left)
        has_pair, last = Signal(), Signal()
        m.d.comb += [
            w_pick.eq(_lowest_one(weight_left)),
            x_pick.eq(_lowest_one(data_left)),
            weight_rest.eq(weight_left & ~w_pick),
            data_rest.eq(data_left & ~x_pick),
            has_pair.eq(weight_left.any() & data_left.any()),
            last.eq(~has_pair | ((weight_rest == 0) & (data_rest == 0))),
            finish.eq(pairs_load & last),
        ]
        weight_term = Signal(self.weight_layout.elem_shape)
        data_term = Signal(self.data_layout.elem_shape)
        m.d.comb += [weight_term.eq(_select(job_weight, w_pick)), data_term.eq(_select(job_data, x_pick))]
        term = pair_term(m, weight_term, data_term, P)
        with m.If(pairs_load & ~last):
            with m.If(data_rest == 0):
                m.d.sync += [weight_left.eq(weight_rest), data_left.eq(data_all)]
            with m.Else():
                m.d.sync += data_left.eq(data_rest)
        with m.If(take):
            m.d.sync += [
                weight_left.eq(Cat(t.valid for t in self.operands.payload.weight)),
                data_left.eq(Cat(t.valid for t in encoded)),
            ]

        # The pair register and the accumulator.
        pair = Signal(signed(P))
        pair_last = Signal()    # the last pair of its product
        with m.If(pairs_load):
            m.d.sync += [pair.eq(Mux(has_pair, term, 0)), pair_last.eq(last)]
        acc = Signal(signed(P))
        m.d.comb += [
            pairs_move.eq(pairs_valid & (~pair_last | out_free)),
            emit.eq(pairs_move & pair_last),
            result.eq((acc + pair)[:P]),
        ]
        with m.If(pairs_move):
            m.d.sync += acc.eq(Mux(pair_last, 0, result))
