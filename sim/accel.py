"""Run a packed model through its generated model accelerator in Verilator, end to end.

Images go in as pixels, logits come out; every logits beat is checked bit for bit against the
golden integer model (software.frontend.intgraph, which knows nothing of the accelerator), and the
clocks from the first pixel to the last logits against the cycle model of the whole schedule
(software/golden/model_cycles.py).

    python -m sim.accel out/model.npz --images 100
    python -m sim.accel out/model.npz --images 20 --stall 0.2 --batch 8
"""

import dataclasses
import pathlib
import sys

import numpy as np

from software.golden.model_cycles import batch_sizes, model_cycles
from software.packing.beats import pack_fields, unpack_fields

from .runner import build, locked, run_streams


def image_words(config, x_int, batch=None):
    """The `images` stream: each image's pixels, `last` on the final pixel of every batch of
    `batch` images (default: the accelerator's batch)."""
    words = []
    x_int = np.asarray(x_int, dtype=np.int64).reshape(len(x_int), -1)
    start = 0
    for n in batch_sizes(config, len(x_int), batch):
        for b in range(n):
            for k, pixel in enumerate(x_int[start + b]):
                last = b == n - 1 and k == config.in_features - 1
                words.append(int(pixel) | (int(last) << config.act_width))
        start += n
    return words


def logit_words(config, logits, batch=None):
    """The `logits` stream of the golden logits: per batch, per row block of the last layer, per
    image, `rows` logits (rows past the outputs are the zero rows of padding)."""
    R, F = config.rows, config.out_features
    blocks = config.logit_blocks
    padded = np.zeros((len(logits), blocks * R), dtype=np.int64)
    padded[:, :F] = logits
    words, start = [], 0
    for n in batch_sizes(config, len(logits), batch):
        for rb in range(blocks):
            for b in range(n):
                words.append(pack_fields(padded[start + b, rb * R:(rb + 1) * R], config.logit_width))
        start += n
    return words


def logits_of(config, words, images, batch=None):
    """The inverse of logit_words: (images x out_features) logits from the stream's words."""
    R, F = config.rows, config.out_features
    blocks = config.logit_blocks
    out = np.zeros((images, blocks * R), dtype=np.int64)
    position, start = 0, 0
    for n in batch_sizes(config, images, batch):
        for rb in range(blocks):
            for b in range(n):
                out[start + b, rb * R:(rb + 1) * R] = unpack_fields(words[position], config.logit_width, R, True)
                position += 1
        start += n
    return out[:, :F]


@dataclasses.dataclass
class AcceleratorRun:
    logits: np.ndarray
    cycles: int                 # measured: first pixel to last logits, inclusive
    model_cycles: int           # the cycle model's
    sim_seconds: float
    build_seconds: float


def generate(program, build_root=None):
    """Generate the accelerator of `program` into <build_root>/accel/<design name>/ (default: the
    simulation cache) and return the directory."""
    from gen.design import generate as generate_design
    from gen.design import write

    from . import runner
    root = pathlib.Path(build_root).resolve() if build_root is not None else runner.cache_root()
    config = program.config
    gen_dir = root / "accel" / config.design_name
    with locked(root / "locks" / f"accel_{config.design_name}.lock"):
        write(generate_design(config, program=program), gen_dir)
    return gen_dir


def run_accelerator(program, golden_logits, x_int, *, batch=None, stall=0.0, seed=0, reset_after=None,
                    build_root=None, name="accel"):
    """Run `x_int` (images x pixels) through the accelerator of `program`, `batch` images at a time
    (default: its batch), checking every logits beat against `golden_logits`; returns an
    AcceleratorRun."""
    from .toolchain import check_prerequisites
    check_prerequisites()
    config = program.config
    built = build(generate(program, build_root), build_root)
    if built.config != config:
        raise RuntimeError(f"generated accelerator {built.config} is not the program's {config}")
    expected = logit_words(config, golden_logits, batch)
    work = model_cycles(config, len(x_int), batch)
    inputs = {"images": image_words(config, x_int, batch)}
    if config.weights_loaded:           # offered from the first clock, after every reset again
        inputs["weights"] = list(program.weight_beats)
    run = run_streams(built, inputs, expected, stall=stall, seed=seed,
                      work=work, reset_after=reset_after, name=name)
    return AcceleratorRun(logits=logits_of(config, run.results, len(x_int), batch), cycles=run.cycles,
                          model_cycles=work,
                          sim_seconds=run.sim_seconds, build_seconds=built.seconds)


def main(argv=None):
    from gen.cli import OneLineParser
    from software.frontend.arrival import load_data
    from software.frontend.sparsity import CompressError
    from software.packfile import PackedModelError, digest, load
    from software.packing.graph_program import compile_model
    from software.packing.program import ProgramError

    parser = OneLineParser(prog="python -m sim.accel",
                           description="Run a packed model through its model accelerator (python -m gen --model) "
                                       "in Verilator: logits bit-exact to the golden model, cycles equal to the "
                                       "cycle model.")
    parser.add_argument("packed", help="model.npz written by python -m software compress")
    parser.add_argument("--images", type=int, default=100, help="first N images of the evaluation split (default 100)")
    parser.add_argument("--data", default="digits", help="'digits' or the .npz given to compress (default digits)")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed, as given to compress (default 0)")
    parser.add_argument("--rows", type=int, help="array rows (default: the model's)")
    parser.add_argument("--cols", type=int, help="array columns")
    parser.add_argument("--alpha", type=int, help="activations per column group")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--load-weights", action="store_true",
                        help="an accelerator that takes its weights on a stream after reset (python -m gen --load-weights)")
    parser.add_argument("--stall", type=float, default=0.0, help="probability of valid/ready stalls (default 0)")
    parser.add_argument("--build-root", help="where designs are generated and built (default: the simulation cache)")
    args = parser.parse_args(argv)
    if args.images < 1 or not 0 <= args.stall < 1:
        parser.error("--images must be at least 1 and --stall in [0, 1)")
    try:
        model, _ = load(args.packed)
        program = compile_model(model, digest(args.packed), rows=args.rows, cols=args.cols, alpha=args.alpha,
                                batch=args.batch, weights_loaded=args.load_weights)
        (_, _, x_test, _), _ = load_data(args.data, None, args.seed)
    except (PackedModelError, ProgramError, CompressError, ValueError) as e:
        parser.error(str(e).splitlines()[0])
    x_int = model.quantize_input(np.asarray(x_test)[:args.images]).reshape(min(args.images, len(x_test)), -1)
    golden = model.run_golden(x_int.reshape((len(x_int),) + tuple(model.input_shape)))
    run = run_accelerator(program, golden, x_int, stall=args.stall, build_root=args.build_root)
    same = np.array_equal(run.logits, golden)
    cfg = program.config
    print(f"{cfg.summary}: {len(x_int)} images, logits {'identical to' if same else 'DIFFERENT from'} the golden "
          f"model; {run.cycles} cycles (cycle model {run.model_cycles}), {run.cycles / len(x_int):.1f} per image; "
          f"simulated in {run.sim_seconds:.1f} s")
    return 0 if same and (args.stall or run.cycles == run.model_cycles) else 1


if __name__ == "__main__":
    sys.exit(main())
