"""Run a packed integer model layer by layer through the generated array in Verilator.

software/ (``IntModel.run_with``) does the host's part -- quantizing the input, im2col, bias,
requantization shifts, ReLU -- and hands every layer's ``W_int x`` to the array: the layer is
scheduled into tiles (``software.packing.schedule``), driven through the Verilog that ``python -m gen``
generates for the model's ArrayConfig, and the result beats are assembled back into outputs. The
testbench also checks every result beat against the golden array model, so a run that returns
has matched it beat for beat.

    python -m sim.model out/model.npz              # all 450 digits test images
    python -m sim.model out/model.npz --images 32 --stall 0.2
    python -m sim.model out/model.npz --data mine.npz --images 50   # the evaluation split of --data

The packed model may be any layer graph (python -m software compress of a factory, an ONNX file
or digits): every matrix of it goes through the array, the host does the rest.

The design is generated into ``<build-root>/models/<name>/`` (default: the simulation cache) and
verilated once (sim.runner caches builds by the Verilog's content).
"""

import dataclasses
import pathlib
import sys
import time

import numpy as np

from spec import ArrayConfig
from gen.design import generate as generate_design
from gen.cli import OneLineParser
from gen.design import write
from software.golden.cycles import layer_cycles
from software.packing.schedule import schedule_layer

from .array import run_schedule
from .runner import build


def generate(config: ArrayConfig, build_root=None) -> pathlib.Path:
    """Generate the Verilog of ``config`` in-process into ``<build_root>/models/<design name>/``
    (default root: the simulation cache, sim.runner.cache_root()) and return the directory. It is
    generated anew every time (seconds), so that a changed generator is never simulated from old
    Verilog; the simulator build is reused when the Verilog comes out the same."""
    from . import runner
    root = pathlib.Path(build_root).resolve() if build_root is not None else runner.cache_root()
    gen_dir = root / "models" / config.design_name
    with runner.locked(root / "locks" / f"models_{config.design_name}.lock"):
        write(generate_design(config), gen_dir)
    return gen_dir


def build_array(config: ArrayConfig, build_root=None):
    """Generated and verilated array for ``config``; checks the manifest's configuration is ``config``."""
    from .toolchain import check_prerequisites
    check_prerequisites()           # before generating: one line naming what is missing
    built = build(generate(config, build_root), build_root)
    if built.config != config:
        raise RuntimeError(f"generated array {built.config} is not the model's {config}")
    return built


@dataclasses.dataclass
class LayerRun:
    name: str
    vectors: int
    tiles: int
    cycles: int             # measured in the RTL
    model_cycles: int       # the cycle model's prediction
    sim_seconds: float


class RTLArray:
    """A ``layer_fn`` for ``IntModel.run_with`` that computes each layer on the RTL."""

    def __init__(self, built, *, stall=0.0, seed=0, name="model"):
        self.built, self.stall, self.seed, self.name = built, stall, seed, name
        self.runs = []

    def __call__(self, index, layer, vectors):
        config = self.built.config
        schedule = schedule_layer(config, layer.packing, vectors)
        start = time.perf_counter()
        out, run = run_schedule(self.built, schedule, stall=self.stall, seed=self.seed + index,
                                name=f"{self.name}_layer{index}")
        self.runs.append(LayerRun(name=layer.name, vectors=len(vectors), tiles=len(schedule.tiles),
                                  cycles=run.cycles, model_cycles=layer_cycles(config, schedule.tile_batches),
                                  sim_seconds=time.perf_counter() - start))
        return out


def run_model(int_model, x_int, built, *, stall=0.0, seed=0, name="model"):
    """Integer logits of ``x_int`` computed with every layer's matmul on the RTL; and the layer runs."""
    rtl = RTLArray(built, stall=stall, seed=seed, name=name)
    logits = int_model.run_with(rtl, x_int)
    return logits, rtl.runs


def main(argv=None):
    from software.frontend.arrival import load_data
    from software.frontend.compress import check_input
    from software.frontend.sparsity import CompressError
    from software.output_set import OutputError, directory_problem
    from software.packfile import load

    parser = OneLineParser(prog="python -m sim.model",
                                     description="Run a packed model (python -m software compress) through the "
                                                 "generated array in Verilator on the digits test split.")
    parser.add_argument("packed", help="model.npz written by python -m software compress")
    parser.add_argument("--images", type=int, help="first N test images (default: all of the evaluation split)")
    parser.add_argument("--data", default="digits", help="'digits' or the .npz given to compress (its evaluation "
                                                        "split; default digits)")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed, as given to compress (default 0)")
    parser.add_argument("--stall", type=float, default=0.0, help="probability of valid/ready stalls (default 0)")
    parser.add_argument("--build-root", help="where designs are generated and built (default: the simulation "
                                              "cache, $SPARSEGEN_CACHE/sim or .cache/sim in the source tree)")
    args = parser.parse_args(argv)
    try:
        int_model, _ = load(args.packed)
        (_, _, x_test, y_test), name = load_data(args.data, None, args.seed)
        shape = tuple(int_model.input_shape)
        check_input(int_model, args.packed, x_test, name)
        if args.build_root is not None and (problem := directory_problem(args.build_root)):
            raise ValueError(problem)
        if args.images is not None and not 1 <= args.images <= len(x_test):
            raise ValueError(f"--images must be between 1 and {len(x_test)}, not {args.images}")
        if not 0 <= args.stall < 1:
            raise ValueError(f"--stall must be in [0, 1), not {args.stall}")
    except (ValueError, CompressError) as e:
        print(f"python -m sim.model: error: {e}", file=sys.stderr)
        return 2
    n = len(x_test) if args.images is None else args.images
    x_int = int_model.quantize_input(x_test[:n].reshape((-1,) + shape))
    labels = y_test[:n].numpy() if y_test is not None else None
    start = time.perf_counter()
    from .toolchain import ToolchainError
    try:
        built = build_array(int_model.config, args.build_root)
    except (ToolchainError, OutputError) as e:
        print(f"python -m sim.model: error: {e}", file=sys.stderr)
        return 2
    print(f"array {int_model.config.design_name}: generated and built in {time.perf_counter() - start:.0f} s")
    golden = int_model.run_golden(x_int)
    logits, runs = run_model(int_model, x_int, built, stall=args.stall)
    for r in runs:
        print(f"layer {r.name}: {r.vectors} vectors, {r.tiles} tiles, {r.cycles} RTL cycles "
              f"(cycle model {r.model_cycles}), {r.sim_seconds:.1f} s")
    identical = np.array_equal(logits, golden)
    if labels is not None:
        rtl_acc = float((logits.reshape(n, -1).argmax(1) == labels).mean())
        gold_acc = float((golden.reshape(n, -1).argmax(1) == labels).mean())
        print(f"{n} images: RTL accuracy {rtl_acc:.2%}, golden integer accuracy {gold_acc:.2%}, "
              f"logits {'identical' if identical else 'DIFFERENT'}")
    else:
        print(f"{n} samples: outputs {'identical' if identical else 'DIFFERENT'} to the golden integer model")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
