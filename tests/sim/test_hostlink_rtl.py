"""The whole host path in Verilator under cocotb: the Python host driver (software/host.py) -> UART
bits -> the generated Verilog of the host link and the array -> UART bits -> the host driver.

The design is what `python -m fpga verilog` writes, a small array (9 credits: its result FIFO) with a
small frame buffer (8 activation beats a frame), so the driver's flow control and frame splitting
are exercised; results must equal the golden model. Fault campaigns damage frames both
ways (bit flips, drops, duplicates, truncations, garbage): no session may end with a wrong result.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from sim.hostlink import run_fault_campaign, run_host_session
from sim.linkfaults import DIRECTIONS, FAULT_KINDS, tabulate
from sim.lint import lint
from sim.runner import build
from software.packing.colcomb import combine
from spec import ArrayConfig
from software.golden.array import reference_layer, truncate_activations
from software.frontend.termquant import term_quantize_weights

# 3 rows x 2 groups of 3: a 7 x 20 layer spans 3 row blocks and several group blocks; max_batch 4
# cuts a batch of 6 into two chunks.
GEN_ARGS = ("--rows", "3", "--cols", "2", "--alpha", "3", "--max-batch", "4", "--divisor", "8",
            "--rx-buffer", "64", "--frame-timeout", "16")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostlink") / "link"
    subprocess.run([sys.executable, "-m", "fpga", "verilog", *GEN_ARGS, "-o", str(out)], check=True,
                   capture_output=True)
    return out, build(out)


def test_lint_clean(built):
    out, b = built
    ok, warnings = lint(out / b.manifest["verilog"], b.top)
    assert ok, "\n".join(warnings[:20])


# The receiver's tolerance of skew is tested in Amaranth (tests/hdl/test_uart.py); in RTL only with --all.
@pytest.mark.parametrize("skew", [1.0, pytest.param(1.02, marks=pytest.mark.slow),
                                  pytest.param(0.98, marks=pytest.mark.slow)])
def test_host_driver_runs_a_packed_layer_over_the_uart(built, skew):
    """`skew`: the host's baud rate is 2% off the board's, as with a real crystal and divisor."""
    _, b = built
    config = b.config
    assert config == ArrayConfig(rows=3, cols=2, alpha=3, max_batch=4)
    assert b.manifest["link"]["credits"] == 9
    rng = np.random.default_rng(int(skew * 100))
    w = rng.integers(-128, 128, size=(7, 20))
    w[rng.random(w.shape) > 0.3] = 0
    x = rng.integers(-128, 128, size=(6, 20))
    layer = combine(w, config.alpha, 0.5)

    report = run_host_session(b, layer, x, skew=skew, name=f"skew{skew}")

    assert np.array_equal(np.array(report["outputs"]), reference_layer(layer.unpack(), x, config.acc_width))
    # The board described itself truthfully, before and after an unknown command.
    for key in ("descriptor", "identify_after_error"):
        d = report[key]
        assert (d["rows"], d["cols"], d["alpha"], d["max_batch"], d["credits"]) == (3, 2, 3, 4, 9)
        assert (d["mac"], d["weight_terms"], d["data_terms"]) == ("int", None, None)
        assert (d["version"], d["max_weight_beats"], d["max_act_beats"], d["frame_timeout"]) == (5, 20, 8, 16)
    # The unknown command was refused, and the identify frame after it sent again.
    assert report["stats_after_error"]["error_replies"] == {"unknown command": 1}
    assert report["stats_after_error"]["retries"] == 1
    # On a clean line nothing else is ever retried or dropped.
    stats = report["stats"]
    assert (stats["retries"], stats["damaged_replies"], stats["stale_replies"], stats["timeouts"]) == (1, 0, 0, 0)
    # What `python -m fpga run` does on a board, here in simulation.
    assert report["self_test"]["ok"] and report["self_test"]["mismatches"] == 0
    assert report["framing_errors"] == 0


def check_campaign(report, min_faults):
    """No session may end with a wrong result; each fault's session ends correct or in a clear error."""
    sessions = report["sessions"]
    faults = sum(len(s["faults"]) for s in sessions)
    assert faults >= min_faults
    wrong = [s for s in sessions if s["outcome"] == "wrong"]
    assert not wrong, wrong[:3]
    for s in sessions:
        assert s["outcome"] in ("correct", "clear_error")
        if s["outcome"] == "clear_error":
            assert s["error"] and "\n" not in s["error"]
    return tabulate(sessions)


def test_faults_both_ways_end_in_correct_results(built):
    """A short campaign: frames damaged at random both ways; with retries every session is exact."""
    _, b = built
    report = run_fault_campaign(b, sessions=3, probability=0.3, seed=11, name="faults_fast")
    table = check_campaign(report, min_faults=15)
    assert all(s["outcome"] == "correct" for s in report["sessions"])
    kinds = {kind for (direction, kind), c in table.items() if sum(c.values())}
    directions = {direction for (direction, kind), c in table.items() if sum(c.values())}
    assert len(kinds) >= 4 and directions == set(DIRECTIONS)
    stats = report["stats"]
    assert stats["retries"] > 0 and stats["stale_replies"] + stats["damaged_replies"] > 0


@pytest.mark.slow
def test_a_thousand_faults_give_no_wrong_result(built):
    """Over 1,000 faults of every kind, both ways: 0 silently wrong results; with 8 retries every
    session ends correct. (benchmarks/link_faults.py prints the same campaign as tables.)"""
    _, b = built
    report = run_fault_campaign(b, sessions=150, probability=0.25, seed=0, name="faults_slow")
    table = check_campaign(report, min_faults=1000)
    for direction in DIRECTIONS:
        for kind in FAULT_KINDS:
            assert sum(table[(direction, kind)].values()) >= 40, (direction, kind)
    assert all(s["outcome"] == "correct" for s in report["sessions"])


@pytest.mark.slow
def test_without_retries_a_fault_is_a_clear_error_never_a_wrong_result(built):
    _, b = built
    report = run_fault_campaign(b, sessions=40, probability=0.25, seed=3, retries=0, limit=1,
                                name="faults_no_retry")
    check_campaign(report, min_faults=30)
    assert any(s["outcome"] == "clear_error" for s in report["sessions"])


@pytest.fixture(scope="module")
def built_tq(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostlink_tq") / "link"
    subprocess.run([sys.executable, "-m", "fpga", "verilog", *GEN_ARGS, "--mac", "tq", "--weight-terms", "2",
                    "--data-terms", "3", "-o", str(out)], check=True, capture_output=True)
    return out, build(out)


@pytest.mark.slow
def test_host_driver_runs_a_term_quantized_layer_over_the_uart(built_tq):
    """A TQ array behind the link: weights travel as term lists, and the board describes its budgets."""
    _, b = built_tq
    config = b.config
    assert config == ArrayConfig(rows=3, cols=2, alpha=3, max_batch=4, mac="tq", weight_terms=2, data_terms=3)
    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, size=(7, 20))
    w[rng.random(w.shape) > 0.3] = 0
    w = term_quantize_weights(torch.from_numpy(w), group=1, budget=2, bits=8).numpy()
    x = rng.integers(-128, 128, size=(6, 20))
    truncated = truncate_activations(config, x)
    assert not np.array_equal(truncated, x)       # the array's own term budget matters here
    layer = combine(w, config.alpha, 0.5)

    report = run_host_session(b, layer, x, name="tq")

    assert np.array_equal(np.array(report["outputs"]), reference_layer(layer.unpack(), truncated, config.acc_width))
    d = report["descriptor"]
    assert (d["mac"], d["weight_terms"], d["data_terms"], d["rows"], d["alpha"]) == ("tq", 2, 3, 3, 3)
    assert report["self_test"]["ok"] and report["framing_errors"] == 0
