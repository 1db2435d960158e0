"""The hardware of the MAC styles (hdl/macs.py) in Amaranth's simulator, against the golden
arithmetic (software/golden/array.py): the "tq" style's edge (an activation truncated to its
largest HESE terms, as magnitude and sign) and its shift-add cell product, exhaustively at small
widths and on seeded random 8-bit values, and through hdl.cell.ColumnCombiningCell as the array
uses it."""

import random

import pytest
import torch
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.cell import WEIGHT_STAGES, ColumnCombiningCell, bank_word
from hdl.macs import MAC_HARDWARE, value_shape
from hdl.tq import TruncatedActivation
from software.frontend.termquant import hese_terms, term_quantize_activations
from software.golden.array import truncate_activations, wrap
from spec import ArrayConfig
from spec.macs import MACS
from spec.terms import term_value_max_terms, term_width


def value_range(width, signed):
    return range(-(1 << (width - 1)), 1 << (width - 1)) if signed else range(1 << width)


def tq_config(act_width=8, act_signed=True, weight_width=8, weight_signed=True, weight_terms=2, data_terms=3,
              alpha=1):
    return ArrayConfig(rows=1, cols=1, alpha=alpha, act_width=act_width, act_signed=act_signed,
                       weight_width=weight_width, weight_signed=weight_signed, mac="tq",
                       weight_terms=weight_terms, data_terms=data_terms, acc_width=32)


def test_every_spec_style_has_hardware():
    assert set(MAC_HARDWARE) == set(MACS)


# ---------------------------------------------------------------------------------------------
# The edge: an activation to its truncated value's magnitude and sign

@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("width", range(2, 9))
def test_edge_truncates_every_value_at_every_budget(width, signed):
    """Every value of the format, every budget, against the front-end's per-value truncation."""
    budgets = range(1, term_value_max_terms(width, signed) + 1)
    top = Module()
    edges = [TruncatedActivation(width=width, signed=signed, budget=b) for b in budgets]
    value = Signal(value_shape(width, signed))
    for b, edge in zip(budgets, edges):
        top.submodules[f"edge_{b}"] = edge
        top.d.comb += edge.value.eq(value)
    values = list(value_range(width, signed))
    expected = {b: term_quantize_activations(torch.tensor(values), b, width).tolist() for b in budgets}

    async def testbench(ctx):
        for k, v in enumerate(values):
            ctx.set(value, v)
            for b, edge in zip(budgets, edges):
                truncated = expected[b][k]
                got = ctx.get(edge.operand.magnitude)
                negative = ctx.get(edge.operand.negative) if signed else 0
                assert (got, negative) == (abs(truncated), int(truncated < 0)), (v, b)

    sim = Simulator(top)
    sim.add_testbench(testbench)
    sim.run()


def test_edge_rounds_up_past_the_format():
    """127 = +128 - 1 with one term is 128 and an unsigned 255 is 256 (one bit more than the
    value); 182 = +128 +64 -16 +8 -2 with two terms is 192."""
    assert MACS["tq"].truncated_activation_width(tq_config()) == 9          # magnitude 0..128, sign
    assert MACS["tq"].truncated_activation_width(tq_config(act_signed=False)) == 9   # 0..256
    for signed, budget, v, want in ((True, 1, 127, 128), (True, 1, -127, -128), (False, 1, 255, 256),
                                    (False, 2, 182, 192), (False, 5, 182, 182)):
        config = tq_config(act_signed=signed, data_terms=budget)
        assert int(truncate_activations(config, [v])[0]) == want


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_the_operand_has_the_width_the_spec_gives(signed):
    config = tq_config(act_signed=signed)
    assert MAC_HARDWARE["tq"].operand_shape(config).size == MACS["tq"].truncated_activation_width(config)


# ---------------------------------------------------------------------------------------------
# The product: edge then multiply, combinational, as the array's edge and cell compute it

class EdgeAndProduct(wiring.Component):
    """An activation through the style's edge into its product with a term list."""

    def __init__(self, config):
        self.config = config
        self.hardware = MAC_HARDWARE[config.mac]
        self.multiply = self.hardware.multiply(config)
        super().__init__({
            "activation": In(value_shape(config.act_width, config.act_signed)),
            "weight": In(self.hardware.weight_shape(config)),
            "product": Out(self.multiply.shape),
        })

    def elaborate(self, platform):
        m = Module()
        operand = Signal(self.hardware.operand_shape(self.config))
        m.d.comb += [
            operand.eq(self.hardware.edge_operand(m, self.config, self.activation, "edge")),
            self.product.eq(self.multiply(m, operand, self.weight)),
        ]
        return m


def slot_fields(word, config):
    """[(valid, sign, exponent)] of a weight term-list word."""
    tw = term_width(config.weight_width, config.weight_signed)
    fields = []
    for k in range(config.weight_terms):
        slot = (word >> (k * tw)) & ((1 << tw) - 1)
        fields.append((slot & 1, (slot >> 1) & 1, slot >> 2))
    return fields


def slots_value(word, config):
    """What the weight slots hold, whatever their bits: sum of valid * +-2**exponent."""
    return sum((-1 if sign else 1) << exponent for valid, sign, exponent in slot_fields(word, config) if valid)


def pack_terms(terms, config):
    """[(sign, exponent)] largest first -> term-list word, unused slots 0."""
    tw = term_width(config.weight_width, config.weight_signed)
    word = 0
    for k, (sign, exponent) in enumerate(terms):
        word |= (1 | (int(sign < 0) << 1) | (exponent << 2)) << (k * tw)
    return word


def check_products(config, weights, activations):
    """Every weight word x every activation through EdgeAndProduct, against
    slots_value(weight) * truncated activation modulo 2**product width (as a signed value)."""
    dut = EdgeAndProduct(config)
    width = dut.multiply.width
    truncated = truncate_activations(config, activations).tolist()
    failures = []

    async def testbench(ctx):
        for word in weights:
            ctx.set(dut.weight.as_value(), word)
            value = slots_value(word, config)
            for x, t in zip(activations, truncated):
                ctx.set(dut.activation, x)
                want = int(wrap(value * t, width))
                got = ctx.get(dut.product)
                if got != want:
                    failures.append((slot_fields(word, config), x, got, want))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    assert not failures, f"{len(failures)} wrong products, e.g. {failures[:3]}"


SMALL = [
    # act width, signed, weight width, signed, weight terms, data terms
    (4, True, 4, True, 2, 2),
    (4, False, 4, True, 2, 1),
    (3, True, 3, False, 2, 2),      # unsigned weight: exponents 0..3 in a 2-bit field
    (4, True, 3, True, 2, 1),
    (3, False, 2, False, 1, 2),
]


@pytest.mark.parametrize("setting", SMALL, ids=lambda s: f"a{s[0]}{'s' if s[1] else 'u'}_w{s[2]}{'s' if s[3] else 'u'}"
                                                         f"_t{s[4]}x{s[5]}")
def test_product_of_every_term_list_bit_pattern(setting):
    """Every bit pattern of the weight's slots (any order, repeated or out-of-range exponents,
    unused slots anywhere, signs on unused slots) times every activation: exact modulo 2**width."""
    aw, asg, ww, wsg, wt, dt = setting
    config = tq_config(act_width=aw, act_signed=asg, weight_width=ww, weight_signed=wsg, weight_terms=wt,
                       data_terms=dt)
    bits = wt * term_width(ww, wsg)
    check_products(config, range(1 << bits), list(value_range(aw, asg)))


@pytest.mark.parametrize("act_signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("weight_signed", [True, False], ids=["w_signed", "w_unsigned"])
def test_product_of_every_front_end_weight_at_6_bits(act_signed, weight_signed):
    """Every 6-bit weight at every budget the slots allow (the prefixes of its HESE terms, as the
    front-end sends them) times every 6-bit activation, with 3 weight slots and 2 data terms."""
    config = tq_config(act_width=6, act_signed=act_signed, weight_width=6, weight_signed=weight_signed,
                       weight_terms=3, data_terms=2)
    words = sorted({pack_terms(hese_terms(w, 6)[:budget], config)
                    for w in value_range(6, weight_signed) for budget in range(config.weight_terms + 1)})
    check_products(config, words, list(value_range(6, act_signed)))


SETTINGS_8BIT = [
    # act signed, weight signed, weight terms, data terms
    (True, True, 2, 3),
    (True, True, 5, 5),            # every slot of a signed 8-bit value
    (False, True, 1, 2),
    (False, False, 3, 4),
    (True, False, 4, 1),
]


@pytest.mark.parametrize("setting", SETTINGS_8BIT, ids=lambda s: f"{'s' if s[0] else 'u'}{'s' if s[1] else 'u'}"
                                                                 f"_t{s[2]}x{s[3]}")
def test_product_of_random_8_bit_values(setting):
    """Seeded random 8-bit cases: front-end weights at random budgets and random bit patterns of the
    slots, times random activations and the extremes (which round up past the format)."""
    act_signed, weight_signed, wt, dt = setting
    config = tq_config(act_signed=act_signed, weight_signed=weight_signed, weight_terms=wt, data_terms=dt)
    rng = random.Random(hash(setting) & 0xffff)
    weights = list(value_range(8, weight_signed))
    words = [pack_terms(hese_terms(w, 8)[:rng.randint(0, wt)], config) for w in rng.sample(weights, 40)]
    words += [pack_terms(hese_terms(w, 8)[:wt], config) for w in (weights[0], weights[-1], 0, 1, 85, -86 if weight_signed else 170)]
    bits = wt * term_width(8, weight_signed)
    words += [rng.getrandbits(bits) for _ in range(20)]
    acts = list(value_range(8, act_signed))
    activations = rng.sample(acts, 40) + [acts[0], acts[-1], 0, 1, acts[-1] // 2 + 1]
    check_products(config, words, activations)


def test_the_product_has_no_multiplier_and_no_shifter():
    """The cell product is multiplexers and adders: no $mul (a general multiplier) and no shifter
    cell (Yosys's `share` pass SAT-compares every pair of those; see hdl/tq.py's pair_term)."""
    config = tq_config(weight_terms=3, data_terms=3)
    text = rtlil.convert(EdgeAndProduct(config))
    cells = {line.split()[1] for line in text.splitlines() if line.strip().startswith("cell ")}
    assert not cells & {"$mul", "$shl", "$shr", "$sshl", "$sshr", "$shift", "$shiftx"}, cells
    assert "$add" in cells


# ---------------------------------------------------------------------------------------------
# Through the cell, as the array uses it: alpha operands, a select, the partial sum

@pytest.mark.parametrize("weight_stage", WEIGHT_STAGES)
@pytest.mark.parametrize("product_stages", [1, 2])
@pytest.mark.parametrize("alpha", [1, 3])
@pytest.mark.parametrize("act_signed", [True, False], ids=["signed", "unsigned"])
def test_cell_accumulates_shift_add_products(alpha, act_signed, product_stages, weight_stage):
    """hdl.cell.ColumnCombiningCell with the tq style's operand, weight and multiply: psum_out is
    psum_in + weight x truncated activations[select], wrapped to acc_width, for seeded random
    operands, selects, banks and partial sums, through the cell's stages (the activations at
    clock t, psum_in at t + 1 + product_stages, psum_out a clock later). Each weight loads as a
    tile's last shift (`shift` and `load`), which writes the bank with either weight stage."""
    config = tq_config(act_signed=act_signed, weight_terms=2, data_terms=3, alpha=alpha)
    hardware = MAC_HARDWARE["tq"]
    acc_width = 20
    top = Module()
    cell = ColumnCombiningCell(alpha=alpha, act_shape=hardware.operand_shape(config),
                               weight_shape=hardware.weight_shape(config), acc_width=acc_width,
                               multiply=hardware.multiply(config), product_stages=product_stages,
                               weight_stage=weight_stage)
    top.submodules.cell = cell
    activations = [Signal(value_shape(8, act_signed), name=f"x{k}") for k in range(alpha)]
    for k, x in enumerate(activations):
        top.d.comb += cell.activations[k].eq(hardware.edge_operand(top, config, x, f"edge_{k}"))
    rng = random.Random(alpha)
    acts = list(value_range(8, act_signed))
    weights = list(value_range(8, True))

    async def testbench(ctx):
        for _ in range(150):
            xs = [rng.choice(acts) for _ in range(alpha)]
            w = pack_terms(hese_terms(rng.choice(weights), 8)[:rng.randint(0, 2)], config)
            select = rng.randrange(alpha)
            bank = rng.randrange(2)
            psum_in = rng.randrange(-(1 << (acc_width - 1)), 1 << (acc_width - 1))
            ctx.set(cell.shift, 1)
            ctx.set(cell.load, 1)
            ctx.set(cell.load_bank, bank)
            # The next clock's operands use the bank this clock writes (its select forwarded).
            ctx.set(cell.next_bank, bank)
            ctx.set(bank_word(cell, cell.load_weight, bank).as_value(), w)
            if alpha > 1:
                ctx.set(bank_word(cell, cell.load_select, bank), select)
            await ctx.tick()
            ctx.set(cell.shift, 0)
            ctx.set(cell.load, 0)
            for x, signal in zip(xs, activations):
                ctx.set(signal, x)
            await ctx.tick()                    # operand select
            for _ in range(product_stages):
                await ctx.tick()                # product
            ctx.set(cell.psum_in, psum_in)
            await ctx.tick()                    # accumulate
            truncated = int(truncate_activations(config, [xs[select]])[0])
            assert ctx.get(cell.psum_out) == int(wrap(psum_in + slots_value(w, config) * truncated, acc_width))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
