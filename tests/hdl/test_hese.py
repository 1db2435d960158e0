"""The hardware HESE encoder against the front-end's term quantizer (software/frontend/termquant.py)."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable, Value
from amaranth.sim import Simulator

from hdl.hese import HeseEncoder, HeseEncoderStream, term_list_layout
from software.packing import beats
from spec.terms import term_max_exponent, term_value_max_terms, term_width
from software.frontend.termquant import hese_terms
from tests.hdl.streams import run_stream


def value_range(width, signed):
    return range(-(1 << (width - 1)), 1 << (width - 1)) if signed else range(1 << width)


def local_terms(v, width):
    """The purely local form of the rule the hardware uses: bit position i emits on its own window,
    no skipping; terms in position order from the MSB."""
    magnitude, sign = abs(v), (-1 if v < 0 else 1)
    bit = lambda i: (magnitude >> i) & 1 if i >= 0 else 0
    terms = []
    for i in reversed(range(width + 1)):
        window = (bit(i + 1), bit(i), bit(i - 1))
        if window == (0, 1, 0):
            terms.append((sign, i))
        elif window == (0, 1, 1):
            terms.append((sign, i + 1))
        elif window == (1, 1, 0):
            terms.append((-sign, i))
    return terms


@pytest.mark.parametrize("width", range(2, 13))
def test_skipping_never_changes_the_encoding(width):
    """The 'skip the next bit' rule is redundant: the local rule gives hese_terms for every value."""
    for v in value_range(width, False):
        assert local_terms(v, width) == hese_terms(v, width), v


def decode(word, width, signed, budget):
    """Term list word (term_list_layout) -> [(sign, exponent)], checking unused slots are all 0."""
    tw = term_width(width, signed)
    terms = []
    for s in range(budget):
        field = (word >> (s * tw)) & ((1 << tw) - 1)
        if field & 1:
            terms.append((-1 if field & 2 else 1, field >> 2))
        else:
            assert field == 0, f"unused slot {s} is {field:#x}, not 0"
    return terms


def encoder_outputs(width, signed, budget):
    dut = HeseEncoder(width=width, signed=signed, budget=budget)
    words = {}

    async def testbench(ctx):
        for v in value_range(width, signed):
            ctx.set(dut.value, v)
            words[v] = ctx.get(Value.cast(dut.terms))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    return words


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("width", [4, 5, 6, 7, 8])
def test_encoder_matches_golden_for_every_value_and_budget(width, signed):
    """Exhaustive: every value of the format, every budget from 1 to the most terms any value has."""
    for budget in range(1, term_value_max_terms(width, signed) + 1):
        for v, word in encoder_outputs(width, signed, budget).items():
            assert decode(word, width, signed, budget) == hese_terms(v, width)[:budget], (v, budget)


def test_term_formats_are_tight():
    """The spec's term formats (spec/terms.py), which hdl/ lays its signals out with, against the
    encoder they describe: the layout has the spec's width, and the bound on terms is reached."""
    for width in range(2, 33):
        for signed in (True, False):
            assert term_list_layout(term_max_exponent(width, signed), 1).size == term_width(width, signed)
            # the bound is tight: some value has that many terms
            if width <= 12:
                assert max(len(hese_terms(v, width)) for v in value_range(width, signed)) == term_value_max_terms(width, signed)


def test_term_packing_matches_the_layout():
    word = beats.pack_terms([1, -1, 0], [7, 3, 0], 3, term_width(8, True))
    assert decode(word, 8, True, 3) == [(1, 7), (-1, 3)]


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_stream_encoder_never_loses_a_beat(stall):
    width, signed, budget = 8, True, 3
    dut = HeseEncoderStream(width=width, signed=signed, budget=budget)
    rng = random.Random(4)
    values = [rng.randint(-128, 127) for _ in range(150)] + [-128, 127, 0, -1]
    words, cycles = run_stream(dut, dut.values, [v & 0xFF for v in values], dut.terms, len(values),
                               stall=stall, seed=9)
    assert [decode(w, width, signed, budget) for w in words] == [hese_terms(v, width)[:budget] for v in values]
    if stall == 0.0:
        assert cycles == len(values) + dut.latency     # one value per clock


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=1, signed=True, budget=1), "width must be between 2 and 32"),
    (dict(width=8, signed=True, budget=0), "budget must be between 1 and 5"),
    (dict(width=8, signed=False, budget=7), "budget must be between 1 and 6"),
    (dict(width=8, signed=1, budget=2), "signed must be True or False"),
])
def test_bad_parameters(kwargs, message):
    with warnings.catch_warnings():
        # The half-constructed component is never elaborated; that is the point.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match=message):
            HeseEncoder(**kwargs)
        gc.collect()


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("width", [2, 3, 5, 8])
def test_one_indexed_term_is_that_slot_of_the_encoding(width, signed):
    """encode_term (the term-serial array's edge: one term per clock) gives slot `index` of
    encode's term list, for every value, budget and index."""
    from amaranth.hdl import Module, Signal
    from hdl.hese import encode, encode_term, value_shape
    most = term_value_max_terms(width, signed)
    m = Module()
    value = Signal(value_shape(width, signed))
    index = Signal(range(max(most, 2)))
    pairs = []
    for budget in range(1, most + 1):
        sub = Module()
        m.submodules[f"b{budget}"] = sub
        full = Signal(term_list_layout(term_max_exponent(width, signed), budget))
        sub.d.comb += full.eq(encode(sub, value, width=width, signed=signed, budget=budget))
        one = Module()
        m.submodules[f"one{budget}"] = one
        pairs.append((budget, full, encode_term(one, value, index, width=width, signed=signed, budget=budget)))
    values = range(-(1 << (width - 1)), 1 << (width - 1)) if signed else range(1 << width)
    checked = 0

    async def testbench(ctx):
        nonlocal checked
        for v in values:
            ctx.set(value, v)
            for i in range(most):
                ctx.set(index, i)
                for budget, full, term in pairs:
                    if i < budget:
                        assert ctx.get(term.as_value()) == ctx.get(full[i].as_value()), (v, budget, i)
                        checked += 1

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert checked == len(values) * most * (most + 1) // 2
