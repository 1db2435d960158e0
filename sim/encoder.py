"""One integer encoder layer (software/distill/encoder_int.py) through the hardware in Verilator: each
matrix product on the generated column-combining array, each head's attention on the generated
attention unit, the rest in the integer host model.

`run_layer` runs the layer twice: with the golden backend (numpy) and with `RtlBackend`, whose
matrix products and attention come from the simulators, so that the hardware's results feed the
following host stages. Every stage's integers of the two runs are compared (bit-exact stage by
stage), and each hardware stage's RTL cycles against its cycle model
(software/golden/cycles.py for the array, software/golden/attention.py for the unit).
"""

import dataclasses
import tempfile
import time

import numpy as np

from software.distill.encoder_int import GOLDEN
from software.golden.attention import golden_head
from software.golden.cycles import layer_cycles
from software.packing.colcomb import pack
from software.packing.schedule import schedule_layer

from .array import run_schedule
from .attention import Head, run_heads
from .runner import build


@dataclasses.dataclass(frozen=True)
class StageRun:
    """One hardware stage: what ran where, whether it matched, and its cycles."""
    stage: str
    unit: str               # "array" or "attention"
    shape: str              # F x K of a matrix; heads x n x d of the attention
    work: int               # tiles of a matrix, heads of the attention
    exact: bool             # RTL outputs == the golden model's
    rtl_cycles: int
    model_cycles: int
    sim_seconds: float

    @property
    def cycles_equal(self):
        return self.rtl_cycles == self.model_cycles


@dataclasses.dataclass(frozen=True)
class LayerRun:
    stages: list                # StageRun per hardware stage, in order
    golden: dict                # every stage's integers, golden backend
    rtl: dict                   # the same with the hardware's results
    generate_seconds: dict      # unit -> seconds to generate its Verilog (0 when given built)
    build_seconds: dict         # unit -> Verilator + C++ seconds (0 when reused from the cache or given)

    @property
    def mismatched(self):
        """Names of the stages (host or hardware) whose integers differ between the two runs."""
        return [name for name in self.golden if not np.array_equal(self.golden[name], self.rtl[name])]

    @property
    def exact(self):
        return not self.mismatched and all(s.exact for s in self.stages)

    @property
    def cycles_equal(self):
        return all(s.cycles_equal for s in self.stages)


def generate_and_build(config):
    """Generate `config`'s Verilog (gen/design.py) and build its simulator (cached by content).
    Returns (Build, seconds of generation)."""
    from gen.design import generate, write
    start = time.time()
    design = generate(config)
    seconds = time.time() - start
    with tempfile.TemporaryDirectory() as out:
        write(design, out + "/design")
        return build(out + "/design"), seconds


def packing_of(linear, alpha):
    """The column-combined packing of an IntLinear (dense: one column per group); it must hold every weight."""
    groups = linear.groups if linear.groups is not None else [[c] for c in range(linear.shape[1])]
    packing = pack(linear.weight, groups, alpha if linear.groups is not None else 1)
    if not np.array_equal(packing.unpack(), linear.weight):
        raise ValueError(f"{linear.name}: its grouping drops weights; it cannot run exactly on the array")
    return packing


class RtlBackend:
    """Matrix products on the array and attention on the unit, in Verilator; records a StageRun each."""

    def __init__(self, array, attention, *, stall=0.0):
        self.array, self.attention_unit, self.stall = array, attention, stall
        self.stages = []

    def matmul(self, linear, x):
        config = self.array.config
        schedule = schedule_layer(config, packing_of(linear, config.alpha), x)
        got, run = run_schedule(self.array, schedule, stall=self.stall, name=f"encoder_{linear.name}")
        self.stages.append(StageRun(
            stage=linear.name, unit="array", shape=f"{linear.shape[0]}x{linear.shape[1]}", work=len(schedule.tiles),
            exact=bool(np.array_equal(got, GOLDEN.matmul(linear, x))), rtl_cycles=run.cycles,
            model_cycles=layer_cycles(config, schedule.tile_batches), sim_seconds=run.sim_seconds))
        return got

    def attention(self, attention, heads):
        config = self.attention_unit.config
        if config != attention.config:
            raise ValueError("the attention unit was built for another configuration than the layer's")
        units = [Head(k=k, v=v, q=q, mul=np.full(len(q), mul), shift=np.full(len(q), shift))
                 for q, k, v, mul, shift in heads]
        run = run_heads(self.attention_unit, units, stall=self.stall, name="encoder_attention")
        golden = [golden_head(config, h.q, h.k, h.v, h.mul, h.shift) for h in units]
        n, d = heads[0][1].shape
        self.stages.append(StageRun(
            stage="attention", unit="attention", shape=f"{len(heads)}x{n}x{d}", work=len(heads),
            exact=all(np.array_equal(o, g.out) and np.array_equal(k, g.kept)
                      for o, k, g in zip(run.out, run.kept, golden)),
            rtl_cycles=run.cycles, model_cycles=run.model_cycles, sim_seconds=run.sim_seconds))
        return run.out


def run_layer(layer, h0, array_config, *, stall=0.0, builds=None):
    """Run the integer layer on input h0 through the hardware and the golden model. `builds`:
    already built {"array": Build, "attention": Build} (each design is built once)."""
    builds = dict(builds or {})
    generate_seconds, build_seconds = {}, {}
    for unit, config in (("array", array_config), ("attention", layer.attention.config)):
        if unit in builds:
            generate_seconds[unit] = build_seconds[unit] = 0.0
        else:
            builds[unit], generate_seconds[unit] = generate_and_build(config)
            build_seconds[unit] = builds[unit].seconds
    backend = RtlBackend(builds["array"], builds["attention"], stall=stall)
    golden = layer.run(h0)
    rtl = layer.run(h0, backend)
    return LayerRun(stages=backend.stages, golden=golden, rtl=rtl, generate_seconds=generate_seconds,
                    build_seconds=build_seconds)
