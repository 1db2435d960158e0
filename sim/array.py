"""Run a scheduled layer on the generated array in Verilator and check it against the golden model."""

import numpy as np

from software.packing import beats
from software.golden.array import ArrayModel

from .runner import run_streams


def run_schedule(built, schedule, *, stall=0.0, seed=0, reset_after=None, name="run"):
    """Returns (N x F outputs assembled from the RTL's result beats, the simulator Run).
    `reset_after`: reset the array once that many result beats were taken, then replay."""
    config = built.config
    weight_words, act_words, _ = beats.schedule_beats(schedule)
    expected = ArrayModel(config).run(schedule)
    expected_words = [beats.pack_fields(v, config.acc_width) for v in expected]
    run = run_streams(built, {"weights": weight_words, "activations": act_words}, expected_words,
                      stall=stall, seed=seed, reset_after=reset_after, name=name)
    got = np.array([beats.result_values(config, w) for w in run.results], dtype=np.int64)
    return schedule.assemble(got), run
