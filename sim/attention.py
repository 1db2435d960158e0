"""Run heads through the generated attention unit in Verilator (sim/tb_streams.py) against the
golden model in software/golden/attention.py."""

import dataclasses

import numpy as np

from software.packing import attention_beats as beats
from software.golden.attention import golden_head, head_cycles

from . import runner


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


def run_heads(built, heads, *, stall=0.0, seed=0, reset_after=None, name="run"):
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
    run = runner.run_streams(built, {"kv": kv_words, "query": query_words}, expected_words, stall=stall,
                             seed=seed, work=model_cycles, reset_after=reset_after, name=name)
    values = [beats.out_values(config, w) for w in run.results]
    outs, kepts, i = [], [], 0
    for head in heads:
        m = len(head.q)
        outs.append(np.array([o for o, _ in values[i:i + m]], dtype=np.int64))
        kepts.append(np.array([k for _, k in values[i:i + m]], dtype=np.int64))
        i += m
    return AttentionRun(out=outs, kept=kepts, cycles=run.cycles, model_cycles=model_cycles,
                        sim_seconds=run.sim_seconds, total_cycles=run.total_cycles)
