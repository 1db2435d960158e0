"""hdl/tq_serial.py's term-serial cell in Amaranth's simulator: every clock a random data term of
each activation, a random bank and weight term, a random partial sum in; psum_out must be psum_in
(one clock earlier) + the pair +-2**(e_w + e_x) of the cell's selected activation's term and its
weight's term, `latency` clocks later, wrapping at the partial sum's width. The whole array is
checked in Verilator (tests/sim/test_array_rtl.py, tq_serial cases)."""

import random

import pytest
from amaranth.sim import Simulator

from hdl.cell import WEIGHT_STAGES, bank_word
from hdl.macs import MAC_HARDWARE
from spec import ArrayConfig
from spec.terms import term_max_exponent


def wrap(value, width):
    return (value + (1 << (width - 1))) % (1 << width) - (1 << (width - 1))


@pytest.mark.parametrize("alpha,weight_terms,data_terms,banks,acc_width,act_signed,width", [
    (3, 2, 3, 2, 20, True, 8), (1, 1, 2, 1, 32, False, 8), (8, 3, 1, 2, 18, True, 8),
    (2, 2, 2, 2, 13, True, 8),      # 13: narrower than the largest pair (16 bits), which wraps
    (2, 1, 1, 2, 9, True, 2), (3, 2, 1, 1, 7, False, 3)])     # pairs of 2 (no high bits) and 3 bits
@pytest.mark.parametrize("weight_stage", WEIGHT_STAGES)
def test_cell_adds_one_term_pair_per_clock(alpha, weight_terms, data_terms, banks, acc_width, act_signed,
                                           width, weight_stage):
    config = ArrayConfig(rows=1, cols=1, alpha=alpha, mac="tq-serial", weight_terms=weight_terms,
                         data_terms=data_terms, double_buffer=banks == 2, act_signed=act_signed,
                         act_width=width, weight_width=width)
    cell = MAC_HARDWARE["tq-serial"].cell(config, acc_width=acc_width, weight_stage=weight_stage)
    rng = random.Random(alpha * 100 + weight_terms * 10 + data_terms)
    weight_max = term_max_exponent(width, config.weight_signed)
    data_max = term_max_exponent(width, act_signed)

    def random_term(max_exponent):
        valid = rng.random() < 0.8
        return (valid, valid and rng.random() < 0.5, rng.randint(0, max_exponent) if valid else 0)

    def set_term(ctx, port, term):
        valid, negative, exponent = term
        ctx.set(port.valid, valid)
        ctx.set(port.sign, negative)
        ctx.set(port.exponent, exponent)

    def pair(w, x):
        if not (w[0] and x[0]):
            return 0
        return (-1 if w[1] != x[1] else 1) << (w[2] + x[2])

    pairs, psums = {}, {}    # clock -> the pair the inputs of that clock make; the psum_in of that clock

    async def testbench(ctx):
        weights = [[random_term(weight_max) for _ in range(weight_terms)] for _ in range(banks)]
        selects = [rng.randrange(alpha) for _ in range(banks)]
        # The cell takes each clock's bank a clock ahead (next_bank): clock 0's during the last load.
        bank_of = [rng.randrange(banks) for _ in range(201)]
        ctx.set(cell.next_bank, bank_of[0])
        for b in range(banks):      # each a tile's last shift, which writes the bank
            ctx.set(cell.shift, 1)
            ctx.set(cell.load, 1)
            ctx.set(cell.load_bank, b)
            for k, term in enumerate(weights[b]):
                set_term(ctx, bank_word(cell, cell.load_weight, b)[k], term)
            if alpha > 1:
                ctx.set(bank_word(cell, cell.load_select, b), selects[b])
            await ctx.tick()
        ctx.set(cell.shift, 0)
        ctx.set(cell.load, 0)
        checked = 0
        for t in range(200):
            terms = [random_term(data_max) for _ in range(alpha)]
            for k, term in enumerate(terms):
                set_term(ctx, cell.activations[k], term)
            bank, index = bank_of[t], rng.randrange(weight_terms)
            ctx.set(cell.next_bank, bank_of[t + 1])
            if weight_terms > 1:
                ctx.set(cell.term, index)
            pairs[t] = pair(weights[bank][index], terms[selects[bank]])
            psums[t] = rng.randrange(-(1 << (acc_width - 1)), 1 << (acc_width - 1))
            ctx.set(cell.psum_in, psums[t])
            await ctx.tick()
            # After clock t: the pair of clock t + 1 - latency plus the psum_in of clock t.
            source = t + 1 - cell.latency
            if source >= 0:
                assert ctx.get(cell.psum_out) == wrap(psums[t] + pairs[source], acc_width), t
                checked += 1
        assert checked > 150 and any(pairs.values())

    sim = Simulator(cell)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
