"""Flags of the model accelerator (`python -m gen --model out/model.npz`).

The packed model (python -m software compress) is loaded and checked, compiled into the
accelerator's program (software/packing/program.py for a chain of Linear layers,
software/packing/graph_program.py for a layer graph) for its own array or the one the flags give,
and the program goes into the generated memories.
"""


from spec import ConfigError, MULTIPLIERS

DESCRIPTION = ("Generate a model accelerator (Amaranth -> Verilog): the packed model's weights, biases and "
               "shifts in on-chip memory, its activations in on-chip buffers, the post-processing in hardware "
               "and a sequencer that runs every layer on the column-combining array; images in, logits out. "
               "A chain of Linear layers gets the chain's accelerator, a residual CNN (convolutions, residual "
               "adds, global average pooling) the graph accelerator. "
               "Also writes a manifest JSON with the configuration, ports, memories and cycle model.")
EPILOG = ("Example: python -m gen --model out/model.npz --batch 16  (the model's own array size; "
          "--rows/--cols/--alpha choose another)")


def add_arguments(p):
    p.add_argument("--model", required=True, help="model.npz written by python -m software compress")
    p.add_argument("--rows", type=int, help="array rows (default: the packed model's)")
    p.add_argument("--cols", type=int, help="array columns (default: --rows if given, else the model's)")
    p.add_argument("--alpha", type=int, help="activations per column group (default: the model's)")
    p.add_argument("--batch", type=int, default=16,
                   help="most images per batch: each weight tile is read once per batch (default 16)")
    p.add_argument("--multiplier", choices=MULTIPLIERS, default="pipelined",
                   help="the array's multiplier style (default pipelined)")
    p.add_argument("--load-weights", action="store_true",
                   help="leave the weight memory uninitialised: the host loads the weights on a `weights` stream "
                        "after every reset (the iCE40UP5K's SPRAM, which the bitstream cannot initialise)")
    return p


def program_from_args(args):
    """The compiled Program of the flags' packed model; ConfigError (one line) for a model that
    cannot be read or run."""
    from software.packfile import PackedModelError, digest, load
    from software.packing.graph_program import compile_model
    from software.packing.program import ProgramError
    try:
        model, _ = load(args.model)
        return compile_model(model, digest(args.model), rows=args.rows, cols=args.cols, alpha=args.alpha,
                             batch=args.batch, multiplier=args.multiplier, weights_loaded=args.load_weights)
    except (PackedModelError, ProgramError) as e:
        raise ConfigError(str(e)) from None


def config_from_args(args):
    program = program_from_args(args)
    args.component_options = {"program": program}
    return program.config




def report_lines(config):
    """What the generator put in memory, for the command's output."""
    memories = config.memories()
    lanes = [m for m in memories if m[0].startswith("activation lanes")]
    others = [m for m in memories if not m[0].startswith("activation lanes")]
    parts = [f"{name} {depth} x {width} bits" for name, width, depth in others]
    parts.insert(1, f"activations {len(lanes)} x {lanes[0][2]} x {lanes[0][1]} bits (a lane per byte)")
    return ["memories (initialised from the packed model where they hold it): " + ", ".join(parts)]
