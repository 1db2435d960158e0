"""The generated Verilog of the array, in Verilator under cocotb, against the golden model.

Every configuration runs twice: without stalls (where the RTL's cycle count must equal the cycle
model's) and with random valid/ready stalls on all three streams (results must still be exact).
"""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from sim.array import run_schedule
from sim.lint import lint
from sim.runner import build
from software.colcomb import combine
from software.cycles import layer_cycles
from software.golden import reference_layer
from software.schedule import schedule_layer


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    gen_args: tuple           # arguments of `python -m gen`
    shape: tuple              # layer F x K
    batch: int
    density: float = 0.3
    gamma: float = 0.5
    extreme: str = ""         # "" (random), "min" (most negative x most negative), "max"


CASES = [
    Case("dense_4x4", ("--rows", "4", "--sparsity", "dense"), (4, 4), 6, density=1.0),
    Case("colcomb_8x8_a4", ("--rows", "8", "--alpha", "4"), (8, 32), 8),
    Case("nonsquare_6x3_a2_unsigned", ("--rows", "6", "--cols", "3", "--alpha", "2", "--no-act-signed"),
         (6, 6), 5, density=0.5),
    Case("int4_4x4_a2", ("--rows", "4", "--alpha", "2", "--act-width", "4", "--weight-width", "4",
                         "--acc-width", "12"), (4, 8), 7, density=0.6),
    Case("multitile_4x3_a3_batch_chunks", ("--rows", "4", "--cols", "3", "--alpha", "3", "--max-batch", "4",
                                           "--no-double-buffer"), (10, 40), 9, density=0.3),
    # Full-length accumulation of the most negative products, in the narrowest legal accumulator:
    # 3 group blocks of 4 columns, so the sum wraps modulo 2**18 across tiles.
    Case("extreme_min_4x4_a2_acc18", ("--rows", "4", "--alpha", "2", "--acc-width", "18"), (4, 24), 3,
         density=1.0, gamma=0.0, extreme="min"),
    Case("extreme_max_unsigned_4x4", ("--rows", "4", "--sparsity", "dense", "--no-act-signed",
                                      "--no-weight-signed", "--acc-width", "19"), (8, 12), 4,
         density=1.0, extreme="max"),
    # Exactly what the README's first command generates.
    Case("readme_32x32_a8", ("--rows", "32", "--sparsity", "colcomb"), (40, 300), 40, density=0.1),
]


def generate(tmp_path_factory, case):
    out = tmp_path_factory.mktemp(case.name)
    subprocess.run([sys.executable, "-m", "gen", *case.gen_args, "-o", str(out)], check=True,
                   capture_output=True)
    return out


def layer_and_inputs(config, case, rng):
    F, K = case.shape
    if case.extreme:
        pick = min if case.extreme == "min" else max
        w = np.full((F, K), pick(config.weight_range), dtype=np.int64)
        x = np.full((case.batch, K), pick(config.act_range), dtype=np.int64)
    else:
        lo, hi = config.weight_range
        w = rng.integers(lo, hi + 1, size=(F, K))
        w[rng.random(w.shape) >= case.density] = 0
        lo, hi = config.act_range
        x = rng.integers(lo, hi + 1, size=(case.batch, K))
    return combine(w, config.alpha, case.gamma), x


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def design(request, tmp_path_factory):
    case = request.param
    gen_dir = generate(tmp_path_factory, case)
    return case, gen_dir, build(gen_dir)


def test_lint_clean(design):
    case, gen_dir, built = design
    ok, warnings = lint(gen_dir / built.manifest["verilog"], built.top)
    assert ok, "\n".join(warnings[:20])


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_rtl_matches_golden(design, stall):
    case, gen_dir, built = design
    config = built.config
    layer, x = layer_and_inputs(config, case, np.random.default_rng(2))
    schedule = schedule_layer(config, layer, x)
    out, run = run_schedule(built, schedule, stall=stall, seed=11, name=f"stall{stall}")
    assert np.array_equal(out, reference_layer(layer.unpack(), x, config.acc_width))
    if stall == 0.0:
        assert run.cycles == layer_cycles(config, schedule.tile_batches)
