"""The post-processing lanes (hdl/accel/postproc.py) in Amaranth simulation against the integer
model's arithmetic (software.frontend.quant.requant_shift, and (acc + bias) << shift for logits), on
random and extreme sums, biases and shifts, left shifts and saturation included."""

import random

import torch
from amaranth.sim import Simulator

from hdl.accel.postproc import PostProcessor
from software.packing.beats import pack_fields
from software.packing.program import pack_entry
from software.frontend.quant import requant_shift
from spec import ModelConfig
from spec.model import POSTPROC_STAGES

import pytest

ROWS = 3
CONFIG = ModelConfig(rows=ROWS, cols=2, alpha=4, in_features=8, layers=((6, 2, 2), (5, 3, 2)), model_sha256="0" * 64,
                     batch=4, logit_shift=6, bias_width=20)
# A model that shifts nothing left (the digits models): lanes without a left shifter.
RIGHT_ONLY = ModelConfig(rows=ROWS, cols=2, alpha=4, in_features=8, layers=((6, 2, 2), (5, 3, 2)),
                         model_sha256="0" * 64, batch=4, logit_shift=0, bias_width=20, left_width=0)


def golden(total, shift, logits):
    if logits:
        return total << shift
    return int(requant_shift(torch.tensor([total]), torch.tensor([shift]), 8, signed=False)[0])


@pytest.mark.parametrize("cfg", [CONFIG, RIGHT_ONLY], ids=["left-shifts", "right-only"])
def test_postprocessing_matches_the_integer_model(cfg):
    rng = random.Random(1)
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    blo, bhi = -(1 << (cfg.bias_width - 1)), (1 << (cfg.bias_width - 1)) - 1
    cases, table = [], []
    for t in range(40):
        logits = t % 4 == 3
        rows = []
        for r in range(ROWS):
            shift = rng.randint(0, cfg.logit_shift) if logits else rng.choice([-8, -3, -1, 0, 1, 2, 7, 15, 30,
                                                                               rng.randint(-30, 30)])
            if not cfg.left_width:
                shift = abs(shift)
            bias = rng.choice([blo, bhi, 0, rng.randint(blo, bhi)])
            rows.append((shift, bias))
        # As software/packing/program.py fills them: logits shift left only.
        table.append(pack_fields([pack_entry(cfg.table_fields, {"valid": 1, "bias": b, "pre_shift": 0 if logits else max(s - 1, 0),
                                              "round": 0 if logits else int(s > 0),
                                              "left": s if logits else max(-s, 0), "word": 1, "lane_class": r % 2})
                                  for r, (s, b) in enumerate(rows)], sum(w for _, w in cfg.table_fields)))
        sums = [rng.choice([lo, hi, 0, -1, 1, 255, 256, rng.randint(lo, hi), rng.randint(-5000, 5000)])
                for _ in range(ROWS)]
        if logits:       # logits fit logit_width: keep the totals within acc_width
            sums = [rng.randint(-(1 << 20), 1 << 20) for _ in range(ROWS)]
        cases.append((t, logits, sums, rows))
    context = {"logits": 1}
    from amaranth.lib import data
    post = PostProcessor(cfg, table, data.StructLayout(context), addr_width=6)
    sim = Simulator(post)
    sim.add_clock(1e-6)
    got = []

    async def bench(ctx):
        schedule = list(cases) + [None] * (POSTPROC_STAGES + 1)
        for step, case in enumerate(schedule):
            if case is None:
                ctx.set(post.valid, 0)
            else:
                t, logits, sums, _ = case
                ctx.set(post.valid, 1)
                ctx.set(post.entry_index, t)
                ctx.set(post.context.logits, int(logits))
                ctx.set(post.dest, 3 * (t % 10))
                for r in range(ROWS):
                    ctx.set(post.sums[r], sums[r])
            if ctx.get(post.o_valid):
                got.append(([ctx.get(post.o_values[r]) for r in range(ROWS)],
                            [ctx.get(post.o_addr[r]) for r in range(ROWS)],
                            [ctx.get(post.o_write[r]) for r in range(ROWS)]))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(cases)
    for (t, logits, sums, rows), (values, addrs, writes) in zip(cases, got):
        for r, (shift, bias) in enumerate(rows):
            assert values[r] == golden(sums[r] + bias, shift, logits), (t, r, sums[r], bias, shift)
            assert addrs[r] == 3 * (t % 10) + 1
            assert writes[r] == (0 if logits else 1)
    assert {v for values, _, _ in got for v in values} >= {0, 255}       # both saturations were reached
