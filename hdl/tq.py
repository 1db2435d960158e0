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

The array's cells (`--mac tq`, hdl/macs.py) compute the same product as a shift-add instead:
`TruncatedActivation` turns each activation, once at the array's edge, into the magnitude and
sign of its truncated value, and `ShiftAddMultiply` shifts that magnitude by each weight term's
exponent and adds the signed results (no multiplier, no term pairs): see their docstrings.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.terms import term_max_exponent, term_product_width, truncated_range
from spec.tq import TQConfig

from .hese import check_format, encode, sign_magnitude, term_list_layout, value_shape


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
    """A cell product over term pairs: (data terms, weight terms) -> their pair sum.

    A callable with a `shape`, as hdl.cell.ColumnCombiningCell's `multiply` expects. The array's
    TQ cells used it before `ShiftAddMultiply`, which is several times smaller; benchmarks/tq.py
    still builds it to measure the difference."""

    def __init__(self, *, weight_max_exponent, data_max_exponent):
        self.width = term_product_width(weight_max_exponent, data_max_exponent)
        self.shape = signed(self.width)

    def __call__(self, m, operand, weight, *, split=False):
        """`split`: the sum registered once more (the benchmark's cell before the shift-add;
        its pairs are not split across the two stages)."""
        value = term_pair_sum(m, weight, operand, self.width)
        if not split:
            return value
        registered = Signal(signed(self.width), name="pairs_sum", reset_less=True)
        m.d.sync += registered.eq(value)
        return registered


# ---------------------------------------------------------------------------------------------
# The array's shift-add cell: the truncated activation as an integer, shifted by each weight term

def truncated_layout(width, signed):
    """The operand a shift-add cell receives: the magnitude of a `width`-bit activation truncated
    to its largest HESE terms, up to 2**term_max_exponent (signed 127 -> 128; unsigned 255 -> 256,
    one bit more than the value), and, for signed activations, its sign."""
    fields = {"magnitude": truncated_range(width, signed)[1].bit_length()}
    if signed:
        fields["negative"] = 1
    return data.StructLayout(fields)


def truncated_magnitude(m, value, *, width, signed, budget):
    """Combinational: (magnitude, negative) of `value` truncated to its `budget` largest HESE terms,
    the magnitude as an integer of truncated_layout's width, without building the term list.

    hdl/hese.py's rule is local: bit position i of |value| emits a term when its bit is 1 and its
    window is not 111, and truncation keeps the `budget` most significant emitting positions. With
    c the last kept position, the kept terms sum to the bits of |value| from c up, plus 2**c when
    c is the top of a run of ones (window 011: it emits +2**(c+1) where the bits from c up count
    2**c; the run's -2**bottom lies below c and is dropped). A run whose bottom is kept is kept
    whole, and the bits count it exactly (2**(top+1) - 2**bottom). So the truncation is a mask
    and one addition, not a sum of terms. tests/hdl/test_macs.py checks it against the front-end's
    truncation for every value of 2- to 8-bit formats at every budget."""
    width, signed, budget = check_format(width, signed, budget)
    negative, magnitude, bit = sign_magnitude(m, value, width=width, signed=signed)

    # found[k]: exactly k emitting positions above this one (none of them set once k > budget),
    # a one-hot built from the MSB down as in hese.encode.
    count = Const(1, budget + 1)
    keep, run_top = [], []
    for i in reversed(range(width)):
        found = Signal(budget + 1, name=f"found_above_{i}")
        emit = Signal(name=f"emit_{i}")
        m.d.comb += [found.eq(count), emit.eq(bit(i) & ~(bit(i + 1) & bit(i - 1)))]
        keep.append(found[:budget].any())                           # fewer than budget above
        run_top.append(emit & found[budget - 1] & bit(i - 1))       # the last kept one, window 011
        count = Mux(emit, Cat(Const(0, 1), found[:budget]), found)
    keep, run_top = Cat(reversed(keep)), Cat(reversed(run_top))
    truncated = Signal(truncated_range(width, signed)[1].bit_length(), name="truncated")
    m.d.comb += truncated.eq((magnitude & keep) + run_top)
    return truncated, negative


class TruncatedActivation(wiring.Component):
    """The edge of a shift-add TQ array: one activation to the operand its cells receive, the
    magnitude and sign of its value truncated to `budget` HESE terms (combinational).

    Members
    -------
    value   : In(signed(width) or unsigned(width))
    operand : Out(truncated_layout(width, signed))
    """

    def __init__(self, *, width, signed, budget):
        self.width, self.signed, self.budget = check_format(width, signed, budget)
        super().__init__({
            "value": In(value_shape(self.width, self.signed)),
            "operand": Out(truncated_layout(self.width, self.signed)),
        })

    def elaborate(self, platform):
        m = Module()
        magnitude, negative = truncated_magnitude(m, self.value, width=self.width, signed=self.signed,
                                                  budget=self.budget)
        m.d.comb += self.operand.magnitude.eq(magnitude)
        if self.signed:
            m.d.comb += self.operand.negative.eq(negative)
        return m


def shift_left(m, value, amount, width, *, name):
    """`value` (sign- or zero-extended) << `amount`, modulo 2**width, for every value `amount`
    holds: one level of 2:1 multiplexers per bit of `amount`, each choosing between its input and
    the input shifted by a constant. No shifter cell: Yosys's `share` pass would SAT-compare every
    pair of them (see pair_term), and constant shifts are wiring."""
    stage = Signal(width, name=f"{name}_in")
    m.d.comb += stage.eq(value)
    for k in range(len(amount)):
        step = 1 << k
        moved = Cat(Const(0, step), stage[:width - step]) if step < width else Const(0, width)
        shifted = Signal(width, name=f"{name}_by{step}")
        m.d.comb += shifted.eq(Mux(amount[k], moved, stage))
        stage = shifted
    return stage


def sum_with_carries(m, addends, width, *, name):
    """Sum of `addends` = [(value, carry-in or None)] modulo 2**width, as a balanced tree of
    two-operand adders, each taking at most one pending carry-in (a 1-bit value) into its carry
    chain. With one addend without a carry and every other with one, every adder takes exactly one
    (a subtree without the first addend has one carry more than adders), so the carries cost no
    adder of their own.

    Each partial sum is a wire Yosys keeps: without it Yosys's `alumacc` merges the tree (and the
    cell's accumulation after it) into one many-operand $macc, which it builds from LUT full
    adders instead of carry chains (a 3-term ECP5 cell: 305 LUT4 instead of 204)."""
    nodes = [(value, [] if carry is None else [carry]) for value, carry in addends]
    level = 0
    while len(nodes) > 1:
        paired = []
        for k in range(0, len(nodes) - 1, 2):
            (a, carries_a), (b, carries_b) = nodes[k], nodes[k + 1]
            carries = carries_a + carries_b
            total = Signal(width, name=f"{name}_l{level}_{k // 2}", attrs={"keep": 1})
            m.d.comb += total.eq(a + b + carries.pop(0) if carries else a + b)
            paired.append((total, carries))
        nodes = paired + nodes[len(nodes) - len(nodes) % 2:]
        level += 1
    value, carries = nodes[0]
    for carry in carries:       # none with ShiftAddMultiply's addends (see above)
        total = Signal(width, name=f"{name}_carry")
        m.d.comb += total.eq(value + carry)
        value = total
    return value


class ShiftAddMultiply:
    """The product of a shift-add TQ array cell: (truncated activation, weight terms) ->
    sum over the weight's slots of valid ? +-(magnitude << exponent) : 0, signed by the term's sign
    and the activation's.

    A callable with a `shape`, as hdl.cell.ColumnCombiningCell's `multiply` expects: the operand
    is a View of truncated_layout (made at the array's edge by TruncatedActivation), the weight a
    View of term_list_layout. No multiplier and no term pairs: per weight slot one shifter (a
    multiplexer level per exponent bit) and one adder. Signs cost no adder of their own: the first
    slot negates the (narrow) magnitude before shifting; every other slot's shifted magnitude is
    inverted when negative and its +1 enters an adder of the tree as a carry-in
    (sum_with_carries).

    Exact: every value is taken modulo 2**width (term_product_width), which holds the product of
    any weight of `weight_max_exponent` with any truncated activation; for any bits in the slots
    (any exponent, any order) the result is the true sum modulo 2**width, as TermPairMultiply's.
    """

    def __init__(self, *, weight_max_exponent, act_width, act_signed):
        self.act_signed = act_signed
        self.operand_layout = truncated_layout(act_width, act_signed)
        self.width = term_product_width(weight_max_exponent, term_max_exponent(act_width, act_signed))
        self.shape = signed(self.width)

    def __call__(self, m, operand, weight, *, split=False):
        """The product's value. `split`: register the shifted slots before their sum (the first
        of two product stages), so the value comes a clock later with half the logic per clock."""
        P = self.width
        magnitude = operand.magnitude
        addends = []
        for k, term in enumerate(weight):
            negate = Signal(name=f"term{k}_negate")
            m.d.comb += negate.eq(term.sign ^ operand.negative if self.act_signed else term.sign)
            if k == 0:
                # +-magnitude, one bit wider (the negation of the largest magnitude), then shifted.
                base = Signal(signed(len(magnitude) + 1), name=f"term{k}_base")
                flipped = Cat(magnitude, Const(0, 1)) ^ negate.replicate(len(base))
                m.d.comb += base.eq(Mux(term.valid, flipped + negate, 0))
                addends.append((shift_left(m, base, term.exponent, P, name=f"term{k}_shift"), None))
            else:
                base = Signal(len(magnitude), name=f"term{k}_base")
                m.d.comb += base.eq(Mux(term.valid, magnitude, 0))
                shifted = shift_left(m, base, term.exponent, P, name=f"term{k}_shift")
                # -(s) = ~s + 1: the + 1 is a carry-in of the tree (an unused slot gives ~0 + 1 = 0).
                addends.append((shifted ^ negate.replicate(P), negate))
        if split:
            registered = []
            for k, (value, carry) in enumerate(addends):
                value_reg = Signal(P, name=f"term{k}_addend", reset_less=True)
                m.d.sync += value_reg.eq(value)
                if carry is not None:
                    carry_reg = Signal(name=f"term{k}_carry", reset_less=True)
                    m.d.sync += carry_reg.eq(carry)
                    carry = carry_reg
                registered.append((value_reg, carry))
            addends = registered
        return sum_with_carries(m, addends, P, name="terms")


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
