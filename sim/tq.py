"""Run operands through the generated TQ multiplier in Verilator and check its products against
the golden model (software/tq.py)."""

from software import tq

from .runner import Run, run_testbench


def run_products(built, operands, *, stall=0.0, seed=0, name="run"):
    """`operands`: (weight terms [(sign, exponent), ...], activation) pairs. Every product is checked
    (SimulationError on a mismatch); returns the products and the simulator Run."""
    config = built.config
    words = [tq.operand_beat(config, w, x) for w, x in operands]
    expected = [tq.product_word(config, tq.product(config, w, x)) for w, x in operands]
    data = run_testbench(built, "sim.tb_stream", {
        "input": "operands", "output": "products",
        "words": [hex(w) for w in words], "expected": [hex(e) for e in expected],
        "stall": stall, "seed": seed, "latency": built.manifest["latency"],
        "max_work": config.weight_terms * config.data_terms,
    }, name=name)
    run = Run(results=[int(r, 16) for r in data["results"]], cycles=data["cycles"],
              sim_seconds=data["sim_seconds"], total_cycles=data["total_cycles"])
    return [tq.product_value(config, w) for w in run.results], run
