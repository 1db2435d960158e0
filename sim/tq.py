"""Run operands through the generated TQ multiplier in Verilator and check its products against
the golden model (software/golden/tq.py)."""

from software.golden import tq

from .runner import run_streams


def run_products(built, operands, *, stall=0.0, seed=0, reset_after=None, name="run"):
    """`operands`: (weight terms [(sign, exponent), ...], activation) pairs. Every product is checked
    (SimulationError on a mismatch); returns the products and the simulator Run."""
    config = built.config
    words = [tq.operand_beat(config, w, x) for w, x in operands]
    expected = [tq.product_word(config, tq.product(config, w, x)) for w, x in operands]
    run = run_streams(built, {"operands": words}, expected, stall=stall, seed=seed, reset_after=reset_after,
                      work=config.max_work * len(words), name=name)
    return [tq.product_value(config, w) for w in run.results], run
