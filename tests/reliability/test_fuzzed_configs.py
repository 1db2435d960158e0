"""Hypothesis-drawn legal configurations of every unit against the golden models.

Fast set: each configuration elaborated and run in Amaranth's simulator, with and without random
stalls (at least 50 configurations in all). Slow set: generated, verilated and run in Verilator with
stalls on every stream (at least 30 configurations), some with a reset in the middle of the stream
and a full replay that must come back exact (sim/tb_streams.py's reset_after).

Each test counts the configurations that passed and records the count (``configs``), which
``python -m tests.reliability.summary`` prints.
"""
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.reliability import fuzz

FAST = {"array": (fuzz.array_configs(), fuzz.amaranth_array, 30),
        "tq": (fuzz.tq_configs(), fuzz.amaranth_tq, 20),
        "attention": (fuzz.attention_configs(), fuzz.amaranth_attention, 14)}
SLOW = {"array": (fuzz.array_configs(max_dim=2), fuzz.verilator_array, 14),
        "tq": (fuzz.tq_configs(), fuzz.verilator_tq, 10),
        "attention": (fuzz.attention_configs(), fuzz.verilator_attention, 8)}


def _fuzz(strategy, check, examples, passed, **kwargs):
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(config=strategy, seed=st.integers(0, 2 ** 16), stall=st.sampled_from((0.0, 0.3, 0.6)))
    def run(config, seed, stall):
        check(config, seed, stall, **kwargs)
        passed.add(config)
    run()


@pytest.mark.parametrize("unit", FAST)
def test_drawn_configurations_match_the_golden_model_in_amaranth(unit, record_property):
    strategy, check, examples = FAST[unit]
    passed = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)     # designs discarded by a failed assume
        _fuzz(strategy, check, examples, passed)
    record_property("configs", len(passed))
    assert len(passed) >= examples * 0.8, f"only {len(passed)} distinct {unit} configurations were drawn"


@pytest.mark.slow
@pytest.mark.parametrize("unit", SLOW)
def test_drawn_configurations_are_bit_exact_in_verilator_with_stalls_and_resets(unit, record_property,
                                                                                  tmp_path):
    strategy, check, examples = SLOW[unit]
    passed, count = set(), [0]

    def with_stalls_and_resets(config, seed, stall, build_root):
        count[0] += 1
        # Every run stalls; every third resets the unit after its first result and replays.
        check(config, seed, max(stall, 0.3), build_root, reset_after=1 if count[0] % 3 == 0 else None)

    _fuzz(strategy, with_stalls_and_resets, examples, passed, build_root=tmp_path)
    record_property("configs", len(passed))
    assert len(passed) >= examples * 0.8, f"only {len(passed)} distinct {unit} configurations were drawn"
