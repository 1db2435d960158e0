"""The generated TQ multiplier (`python -m gen --unit tq`) in Verilator under cocotb, against the
golden model (software/golden/tq.py): random values with every weight budget plus extremes, without
stalls (RTL cycles == cycle model) and with random valid/ready stalls on both streams."""

import random

import pytest

from gen import cli
from sim.lint import lint
from sim.runner import build
from sim.tq import run_products
from software.golden import tq
from tests.hdl.test_tq import random_operands

UNITS = [
    ("serial_w8_t2x3", ("--form", "serial", "--weight-terms", "2", "--data-terms", "3")),
    ("parallel_w6_unsigned_t3x4", ("--form", "parallel", "--width", "6", "--no-signed",
                                   "--weight-terms", "3", "--data-terms", "4")),
    ("serial_w8_t5x5", ("--form", "serial", "--weight-terms", "5", "--data-terms", "5")),
]
SLOW = {"serial_w8_t5x5"}   # built and run only with --all / -m slow; every unit is linted in the fast set
GENERATED = {}


def generate(tmp_path_factory, name, args):
    if name not in GENERATED:
        out = tmp_path_factory.mktemp(name)
        assert cli.main(["--unit", "tq", *args, "-o", str(out)]) == 0
        GENERATED[name] = out
    return GENERATED[name]


@pytest.fixture(scope="module", params=[pytest.param(u, id=u[0], marks=[pytest.mark.slow] if u[0] in SLOW else [])
                                        for u in UNITS])
def unit(request, tmp_path_factory):
    name, args = request.param
    out = generate(tmp_path_factory, name, args)
    return name, out, build(out)


@pytest.mark.parametrize("name, args", UNITS, ids=[name for name, _ in UNITS])
def test_lint_clean(tmp_path_factory, name, args):
    verilog, = generate(tmp_path_factory, name, args).glob("*.v")
    ok, warnings = lint(verilog, verilog.stem)
    assert ok, "\n".join(warnings[:20])


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_rtl_matches_golden(unit, stall):
    name, _, built = unit
    config = built.config
    operands = random_operands(config, random.Random(17), 250)
    products, run = run_products(built, operands, stall=stall, seed=23, name=f"stall{stall}")
    assert products == [tq.product(config, w, x) for w, x in operands]
    if stall == 0.0:
        assert run.cycles == tq.stream_cycles(config, operands)


def test_mid_stream_reset_then_replay_is_exact(unit):
    name, _, built = unit
    config = built.config
    operands = random_operands(config, random.Random(29), 60)
    products, _ = run_products(built, operands, stall=0.3, seed=31, reset_after=25, name="reset")
    assert products == [tq.product(config, w, x) for w, x in operands]
