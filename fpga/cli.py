"""`python -m fpga`: board bitstreams of the array behind a UART host link, reports, programming.

  build    Amaranth -> Yosys -> nextpnr -> packer (YoWASP wheels), report, optionally --program
  program  load an earlier build onto its board
  verilog  the host link (UART + command decoder + array) as Verilog, for simulation or other tools
  run      run a random packed layer on a programmed board over its serial port, check it against
           the golden model; for a model accelerator (build --model), images in, accuracy and
           throughput out
"""

import argparse
import json
import os
import sys

from gen import array as array_flags
from gen.cli import OneLineParser
from spec import ConfigError

from .boards import BOARD_NAMES, BOARDS
from .families import FAMILIES
from .toolchain import NEXTPNR_PLACERS, NEXTPNR_ROUTERS


def clock_classes_text():
    """Each board's default array clocks by size, for --help: 'icebreaker: 30 MHz up to 20 cells; ...'."""
    return "; ".join(f"{b.name}: " + ", ".join(f"{mhz:g} MHz up to {most} cells" for most, mhz in b.clock_classes)
                     for b in BOARDS.values() if b.clock_classes)


def dsp_argument(text):
    """argparse type of --dsp (fpga.build.parse_dsp, with argparse's one-line error)."""
    from .build import parse_dsp
    try:
        return parse_dsp(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_mhz(text):
    """argparse type of --clock-mhz: a positive number of MHz, or "board" (the board's own clock)."""
    if text == "board":
        return text
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--clock-mhz wants a positive number of MHz or 'board', not {text!r}")
    return value


def whole_number(minimum):
    """argparse type: a whole number of at least `minimum` (--batch 0 would test nothing)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"wants a whole number of at least {minimum}, not {text!r}")
        return value
    return parse


PROG = "python -m fpga"
BUILD_SUMMARY = "summary.json"      # fpga.build.BUILD_SUMMARY (not imported here: it loads Amaranth)
MAX_BATCH = 1 << 16
EXIT_BAD_INPUT, EXIT_FAILED = 2, 1


class CommandError(Exception):
    def __init__(self, message, status=EXIT_BAD_INPUT):
        super().__init__(message)
        self.status = status


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0],
                      epilog="Example: python -m fpga build --board icebreaker --rows 2 --alpha 2")
    sub = p.add_subparsers(dest="command", required=True, metavar="{build,program,verilog,run}",
                           parser_class=OneLineParser)

    b = sub.add_parser("build", help="build a bitstream and print its resource and timing report",
                       description="Build the array behind a UART host link for a board with Yosys, nextpnr and "
                                   "the packer from the YoWASP wheels; print and save the report (report.txt, "
                                   "summary.json) next to the bitstream.")
    b.add_argument("--board", required=True, choices=BOARD_NAMES, help="target board")
    array_flags.add_arguments(b.add_argument_group("array configuration"), default_rows=2)
    _model_arguments(b)
    b.add_argument("--baud", type=int, default=115200,
                   help="UART baud rate (default 115200; the iCEBreaker's FT2232H and the ULX3S's FT231X "
                        "take up to 3000000)")
    b.add_argument("--clock-mhz", type=positive_mhz, metavar="MHZ",
                   help="clock the array at this frequency from the FPGA's PLL (iCE40 SB_PLL40, ECP5 EHXPLLL), "
                        "the nearest it can make, constrained there so that nextpnr optimises for it; the "
                        "UART divisor follows it. 'board' (or the board's own frequency): the board's clock, no "
                        "PLL (iCEBreaker 12, ULX3S 25, OrangeCrab 48 MHz). Default: the highest clock that "
                        f"builds of the array's size closed on the board ({clock_classes_text()}), else the "
                        "board's clock")
    mux_fed_limits = "".join(f" (at most {f.mux_fed_dsps} for an alpha > 1 array on the {f.title})"
                             for f in FAMILIES.values() if f.mux_fed_dsps)
    b.add_argument("--dsp", type=dsp_argument, default="auto", metavar="auto|on|off|N",
                   help=f"multipliers in DSP blocks: auto (default) as many cells as the device has DSPs"
                        f"{mux_fed_limits}, the rest in LUTs; on: every cell; off: none; N: the first N "
                        f"cells, row by row")
    b.add_argument("--booth", action=argparse.BooleanOptionalAction, default=True,
                   help="build multipliers that are not in DSP blocks as Booth-encoded adder trees "
                        "(Yosys booth; default on: 25-35%% fewer LUTs)")
    b.add_argument("--seed", type=int, help="nextpnr placement seed")
    b.add_argument("--router", choices=NEXTPNR_ROUTERS,
                   help="nextpnr router (default router1, nextpnr's own default)")
    b.add_argument("--placer", choices=NEXTPNR_PLACERS,
                   help="nextpnr placer (default heap, nextpnr's own default; static: electrostatic)")
    b.add_argument("--timing-weight", type=whole_number(0), metavar="N",
                   help="the heap placer's weight of critical connections against wire length "
                        "(nextpnr's default 10)")
    b.add_argument("-o", "--output", help="output directory (default build/fpga/<board>_<rows>x<cols>_<sparsity>_a<alpha>"
                                          "[_tq<W>x<D>][_<MHZ>mhz])")
    b.add_argument("--program", action="store_true",
                   help="load the bitstream onto the board afterwards (iceprog or openFPGALoader)")

    g = sub.add_parser("program", help="load an earlier build onto its board",
                       description="Load the bitstream of an earlier `build` onto its board with iceprog or "
                                   "openFPGALoader (whichever is installed).")
    g.add_argument("build_dir", help="directory written by `python -m fpga build`")

    v = sub.add_parser("verilog", help="write the host link as Verilog with a manifest",
                       description="Write the host link (UART + command decoder + array), top module "
                                   "sparsegen_hostlink, ports clk rst rx tx, and a manifest.json.")
    array_flags.add_arguments(v.add_argument_group("array configuration"), default_rows=2)
    _model_arguments(v)
    v.add_argument("--divisor", type=int, required=True, help="clocks per UART bit (board clock / baud)")
    v.add_argument("--rx-buffer", type=int,
                   help="frame buffer in bytes, a power of two (sets the beats per frame; default 512, or "
                        "more if a beat needs it)")
    v.add_argument("--frame-timeout", type=int, default=64, metavar="BYTE_TIMES",
                   help="quiet time that ends a frame cut off in the middle (default 64 byte times)")
    v.add_argument("-o", "--output", required=True, help="output directory")

    r = sub.add_parser("run", help="run a random packed layer on a programmed board",
                       description="Connect to a programmed board over its serial port, check that it is the "
                                   "configuration of the build, run a random column-combined layer and compare "
                                   "the results with the golden model.")
    r.add_argument("build_dir", help="directory written by `python -m fpga build`")
    r.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB1")
    r.add_argument("--batch", type=batch_size, default=16, help=f"input vectors, 1 to {MAX_BATCH} (default 16)")
    r.add_argument("--seed", type=whole_number(0), default=0, help="random seed of the layer (default 0)")
    r.add_argument("--model", help="with a model accelerator: the packed model it was built from (its hash is "
                                   "checked against the board's)")
    r.add_argument("--data", default="digits",
                   help="with a model accelerator: 'digits' or an .npz (x, optional y) of images to run "
                        "(default digits: its test split)")
    r.add_argument("--images", type=whole_number(1), help="with a model accelerator: the first N images")
    return p


def _model_arguments(p):
    g = p.add_argument_group("model accelerator (instead of a bare array)")
    g.add_argument("--model", help="model.npz from python -m software compress: build its model accelerator "
                                   "(python -m gen --model); the array is the model's unless --rows/--cols/--alpha "
                                   "are given")
    g.add_argument("--batch-images", type=int, default=16, metavar="B",
                   help="with --model: most images per batch, each weight tile read once per batch (default 16)")
    g.add_argument("--weights-from", choices=WEIGHT_SOURCES,
                   help="with --model: what fills the weight memory: the bitstream (block RAM initialised at "
                        "configuration) or the host link after every reset (a RAM the bitstream cannot "
                        "initialise: the iCE40UP5K's SPRAM). Default: link on a board with SPRAM, else bitstream")


def _given(argv, flag):
    return any(a == flag or a.startswith(flag + "=") for a in argv)


WEIGHT_SOURCES = ("bitstream", "link")


def weights_loaded(args):
    """Whether --model's weights come over the link: --weights-from, else whether the board has SPRAM."""
    if args.weights_from is not None:
        return args.weights_from == "link"
    from .accel_fit import has_spram
    board = BOARDS.get(getattr(args, "board", None))
    return board is not None and has_spram(board)


def model_program(args, argv):
    """The compiled program of --model, or None; CommandError (one line) for a model that cannot run."""
    if not getattr(args, "model", None):
        return None
    from software.packfile import PackedModelError, digest, load
    from software.packing.graph_program import compile_model, is_chain
    from software.packing.program import ProgramError
    shape = {flag: getattr(args, flag) for flag in ("rows", "cols", "alpha") if _given(argv, f"--{flag}")}
    try:
        model, _ = load(args.model)
        # A layer graph keeps its weights in the bitstream unless --weights-from says otherwise.
        loaded = weights_loaded(args) and (args.weights_from is not None or is_chain(model))
        return compile_model(model, digest(args.model), batch=args.batch_images, multiplier=args.multiplier,
                             weights_loaded=loaded, **shape)
    except (PackedModelError, ProgramError, ConfigError) as e:
        raise CommandError(str(e)) from None


def _default_output(args, config):
    clock = "" if args.clock_mhz is None else f"_{args.clock_mhz:g}mhz"
    return os.path.join("build", "fpga", f"{args.board}_{config.design_name}{clock}")


def _read_summary(build_dir):
    """(path, the JSON object) of an earlier build's summary.json, or a one-line CommandError."""
    path = os.path.join(build_dir, BUILD_SUMMARY)
    if not os.path.isdir(build_dir) or not os.path.isfile(path):
        raise CommandError(f"{build_dir} is not a build directory (no {BUILD_SUMMARY}); run `{PROG} build` first")
    try:
        with open(path, "rb") as f:
            summary = json.loads(f.read(1 << 20).decode(), parse_constant=_not_json)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0]
        raise CommandError(f"{path}: not a readable build summary ({reason})") from None
    if not isinstance(summary, dict):
        raise CommandError(f"{path}: not a build summary (a JSON object)")
    return path, summary


def _load_summary(build_dir, fields):
    """summary.json of an earlier build, with `fields` ({name: check(value) -> value}) checked: a
    summary comes from outside (a copied or edited directory), so anything malformed, missing or of
    the wrong kind is a one-line CommandError, never a traceback."""
    path, summary = _read_summary(build_dir)
    checked = {}
    for name, check in fields.items():
        if name not in summary:
            raise CommandError(f"{path}: no {name!r}; build again with `{PROG} build`")
        try:
            checked[name] = check(summary[name])
        except (ValueError, TypeError) as e:
            raise CommandError(f"{path}: {name}: {e}") from None
    return checked


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


def _board_name(value):
    if value not in BOARD_NAMES:
        raise ValueError(f"not a known board ({', '.join(BOARD_NAMES)})")
    return value


def _file_name(value):
    """A file name inside the build directory: no directories, nothing absolute, no '..'."""
    if not isinstance(value, str) or not value or os.path.basename(value) != value or value in (".", "..") \
            or "\0" in value or "\\" in value:
        raise ValueError(f"must name a file inside the build directory, not {value!r}"[:120])
    return value


def _baud(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 300 <= value <= 12_000_000:
        raise ValueError(f"must be a baud rate between 300 and 12000000, not {value!r}"[:120])
    return value


def _array_config(value):
    from spec import ArrayConfig
    return ArrayConfig.from_dict(value)


def inside(build_dir, name):
    """The path of file `name` in `build_dir`, refused if it (or a link) leads outside it."""
    root = os.path.realpath(build_dir)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        raise CommandError(f"{os.path.join(build_dir, name)}: not a file inside the build directory")
    return path


def batch_size(text):
    """argparse type of --batch: input vectors, 1 to MAX_BATCH."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"wants a number of vectors from 1 to {MAX_BATCH}, not {text!r}")
    return value


def build_clock_mhz(board, config, asked):
    """The array clock of a build: `asked` (--clock-mhz), None for 'board', or by default the
    board's clock for the array's size class (Board.default_clock_mhz)."""
    if asked == "board":
        return None
    if asked is not None:
        return asked
    array = getattr(config, "array", config)          # a model accelerator's array, or the array
    return board.default_clock_mhz(array.rows * array.cols)


def cmd_build(args):
    from .boards import board as get_board
    from .build import build
    from .program import find_programmer, program
    from .report import format_summary
    board = get_board(args.board)
    program_ = model_program(args, args.argv)
    config = program_.config if program_ else array_flags.config_from_args(args)
    args.clock_mhz = build_clock_mhz(board, config, args.clock_mhz)
    programmer = find_programmer(board) if args.program else None   # before minutes of building
    out = args.output or _default_output(args, config)
    result = build(board, config, out, baud=args.baud, dsp=args.dsp, booth=args.booth, seed=args.seed,
                   router=args.router, placer=args.placer, timing_weight=args.timing_weight, clock_mhz=args.clock_mhz, program=program_,
                   progress=lambda line: print(f"{PROG} build: {line}", file=sys.stderr))
    for line in format_summary(result.summary):
        print(line)
    print(f"{result.bitstream}: bitstream ({result.summary['seconds']:.0f} s); report in "
          f"{os.path.join(out, 'report.txt')} and summary.json")
    if not result.summary["timing_pass"]:
        why = (f"timing fails at the {result.summary['clock_mhz']:g} MHz constraint (see Fmax above)"
               if result.summary["array_clock"] else "nextpnr did not time the array's clock (see Fmax above)")
        raise CommandError(f"{why}; the bitstream is written but may not work"
                           + (", and was not programmed" if programmer else ""), EXIT_FAILED)
    if programmer:
        tool = program(board, result.bitstream, programmer)
        print(f"programmed the {board.name} with {os.path.basename(tool)}")
    return 0


def cmd_program(args):
    from .boards import board as get_board
    from .program import program
    summary = _load_summary(args.build_dir, {"board": _board_name, "bitstream": _file_name})
    board = get_board(summary["board"])
    tool = program(board, inside(args.build_dir, summary["bitstream"]))
    print(f"programmed the {board.name} with {os.path.basename(tool)}")
    return 0


def cmd_verilog(args):
    from .build import LINK_TOP, write_link_verilog
    program_ = model_program(args, args.argv)
    config = program_.config if program_ else array_flags.config_from_args(args)
    try:
        manifest = write_link_verilog(config, args.output, divisor=args.divisor, rx_buffer=args.rx_buffer,
                                      frame_timeout=args.frame_timeout, program=program_)
    except (TypeError, ValueError) as e:
        raise CommandError(str(e)) from None
    what = program_.config.summary if program_ else f"a {config.rows}x{config.cols} array, alpha {config.alpha}"
    print(f"{os.path.join(args.output, LINK_TOP + '.v')}: host link of {what}, {args.divisor} clocks per bit, "
          f"{manifest['link']['credits']} credits")
    return 0


def cmd_run(args):
    from software.host import Board, HostLinkError, open_serial, self_test
    if _summary_unit(args.build_dir) == "model":
        return cmd_run_model(args)
    summary = _load_summary(args.build_dir, {"config": _array_config, "baud": _baud})
    config = summary["config"]
    try:
        port = open_serial(args.port, summary["baud"])
    except HostLinkError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    except Exception as e:      # pyserial's SerialException: no such device, permission denied, ...
        raise CommandError(f"cannot open {args.port}: {e}", EXIT_FAILED) from None
    with port:
        try:
            board = Board(port, config)
            board.connect()
            result = self_test(board, batch=args.batch, seed=args.seed)
        except HostLinkError as e:
            raise CommandError(str(e), EXIT_FAILED) from None
    print(result.describe())
    return 0 if result.ok else EXIT_FAILED


def _summary_unit(build_dir):
    """What an earlier build holds: "model" (a model accelerator) or "array" (builds before the
    model accelerator say nothing)."""
    return _read_summary(build_dir)[1].get("unit", "array")


def _model_config(value):
    from spec.graph_model import model_config_from_dict
    return model_config_from_dict(value)


def cmd_run_model(args):
    """Images through a model accelerator over the serial line: accuracy and throughput."""
    import time

    import numpy as np

    from software.frontend.arrival import load_data
    from software.host import HostLinkError, ModelBoard, open_serial
    from software.packfile import PackedModelError, digest, load
    summary = _load_summary(args.build_dir, {"config": _model_config, "baud": _baud})
    config = summary["config"]
    if not args.model:
        raise CommandError("this build holds a model accelerator: give --model, the packed model it was built "
                           "from (the host quantizes the images with it)")
    try:
        model, _ = load(args.model)
        if digest(args.model) != config.model_sha256:
            raise CommandError(f"{args.model} is not the model this build holds ({config.model_sha256[:16]}...)")
        (_, _, x, y), name = load_data(args.data, tuple(model.input_shape), 0)
    except (PackedModelError, ValueError) as e:
        raise CommandError(str(e).splitlines()[0]) from None
    count = len(x) if args.images is None else min(args.images, len(x))
    x_int = model.quantize_input(np.asarray(x)[:count]).reshape(count, -1)
    try:
        port = open_serial(args.port, summary["baud"])
    except HostLinkError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    except Exception as e:      # pyserial's SerialException
        raise CommandError(f"cannot open {args.port}: {e}", EXIT_FAILED) from None
    weights = None
    if config.weights_loaded:        # the host sends them after each reset: the same program's beats
        from software.packing.program import ProgramError, compile_program
        try:
            program = compile_program(model, config.model_sha256, rows=config.rows, cols=config.cols,
                                      alpha=config.alpha, batch=config.batch, multiplier=config.multiplier,
                                      weights_loaded=True)
        except ProgramError as e:
            raise CommandError(str(e)) from None
        if program.config != config:
            raise CommandError(f"{args.model} compiles to another accelerator than this build's")
        weights = program.weight_beats
    with port:
        try:
            board = ModelBoard(port, config, weights=weights)
            board.connect()
            start = time.perf_counter()
            logits = board.run_images(x_int)
            seconds = time.perf_counter() - start
        except HostLinkError as e:
            raise CommandError(str(e), EXIT_FAILED) from None
    golden = model.run_golden(x_int)
    same = np.array_equal(logits, golden)
    accuracy = "" if y is None else f", accuracy {(logits.argmax(1) == np.asarray(y)[:count]).mean():.2%}"
    print(f"{count} {name} images on the {summary.get('board', 'board')}: logits "
          f"{'identical to' if same else 'DIFFERENT from'} the golden model{accuracy}; {count / seconds:.1f} "
          f"images/s over the link ({board.bytes_sent + board.bytes_received} bytes in {seconds:.2f} s)")
    return 0 if same else EXIT_FAILED


COMMANDS = {"build": cmd_build, "program": cmd_program, "verilog": cmd_verilog, "run": cmd_run}


def main(argv=None):
    from .boards import UnknownBoardError
    from .build import BuildError, stop_builds_on_terminate
    from .program import ProgramError
    from .toolchain import ToolchainError
    from software.output_set import OutputError
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    stop_builds_on_terminate()
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, UnknownBoardError, ToolchainError, OutputError) as e:
        message, status = str(e), EXIT_BAD_INPUT
    except (BuildError, ProgramError) as e:
        message, status = str(e), e.status
    except CommandError as e:
        message, status = str(e), e.status
    except KeyboardInterrupt:
        message, status = "interrupted", 130
    print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
    return status
