"""Verilate the generated attention unit and run heads through it (sim/tb_attention.py) against
the golden model in software/attention.py."""

import dataclasses

import numpy as np

from software import attention_beats as beats
from software.attention import golden_head, head_cycles
from software.attention_config import AttentionConfig

from . import runner


def build(gen_dir, build_root=None, *, always=False, optimize=False):
    """Verilate what `python -m gen --unit attention` wrote into `gen_dir` (sim.runner.build with
    the manifest's configuration read as an AttentionConfig)."""
    return runner.build(gen_dir, build_root, always=always, optimize=optimize, config_type=AttentionConfig)


@dataclasses.dataclass(frozen=True)
class Head:
    """One head's integers for the unit: K, V (n x d), queries (m x d) with their scales."""
    k: np.ndarray
    v: np.ndarray
    q: np.ndarray
    mul: np.ndarray
    shift: np.ndarray


@dataclasses.dataclass(frozen=True)
class AttentionRun:
    out: list            # per head: m x d outputs from the RTL
    kept: list           # per head: kept positions per query, from the RTL
    cycles: int          # first kv handshake to last out handshake, inclusive
    model_cycles: int    # the cycle model's count for the same heads
    sim_seconds: float
    total_cycles: int


def run_heads(built, heads, *, stall=0.0, seed=0, name="run"):
    """Run heads back to back through the unit with random stalls (probability `stall`) on all
    three streams; every out beat must equal the golden model's, or SimulationError is raised."""
    config = built.config
    kv_words, query_words, expected_words, model_cycles = [], [], [], 0
    for head in heads:
        kv, queries = beats.head_beats(config, head.k, head.v, head.q, head.mul, head.shift)
        kv_words += kv
        query_words += queries
        golden = golden_head(config, head.q, head.k, head.v, head.mul, head.shift)
        expected_words += [beats.out_beat(config, o, k) for o, k in zip(golden.out, golden.kept)]
        model_cycles += head_cycles(config, len(head.k), golden.candidates, golden.kept)
    data = runner.run_testbench(built, "sim.tb_attention", {
        "kv": [hex(w) for w in kv_words], "query": [hex(w) for w in query_words],
        "expected": [hex(w) for w in expected_words], "stall": stall, "seed": seed,
        # Every beat stalled many times over, plus the unit's own clocks.
        "budget": (len(kv_words) + len(query_words) + len(expected_words)) * 50 + model_cycles * 4 + 100,
    }, name=name)
    values = [beats.out_values(config, int(w, 16)) for w in data["results"]]
    outs, kepts, i = [], [], 0
    for head in heads:
        m = len(head.q)
        outs.append(np.array([o for o, _ in values[i:i + m]], dtype=np.int64))
        kepts.append(np.array([k for _, k in values[i:i + m]], dtype=np.int64))
        i += m
    return AttentionRun(out=outs, kept=kepts, cycles=data["cycles"], model_cycles=model_cycles,
                        sim_seconds=data["sim_seconds"], total_cycles=data["total_cycles"])
