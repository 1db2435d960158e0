"""`python -m gen [--unit NAME] ...`: a unit's configuration from flags -> its Verilog and manifest.

The array is the default unit; `python -m gen --unit tq --help` shows another unit's flags. Every
unit runs the same steps: flags -> spec configuration (validated) -> output directory checked ->
gen.design.generate -> gen.design.write, with a one-line error and exit status 2 for bad input.
"""

import argparse
import os
import sys

from software.output_set import OutputError
from spec import UNITS, ConfigError

from .design import generate, output_problem, unit_flags, write

PROG = "python -m gen"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are a single line (no usage dump) and exit with status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(prog, message):
    """Print a one-line error and return the exit status for bad input."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def split_unit(argv):
    """(unit name, the remaining arguments); the unit is "array" unless --unit says otherwise."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--unit":
            if i + 1 >= len(argv):
                return None, argv
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith("--unit="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    if any(arg == "--model" or arg.startswith("--model=") for arg in argv):
        return "model", argv        # --model FILE: the model accelerator of that packed model
    return "array", argv


def build_parser(unit="array"):
    flags = unit_flags(unit)
    p = OneLineParser(prog=PROG, description=flags.DESCRIPTION, epilog=flags.EPILOG)
    p.add_argument("--unit", choices=tuple(UNITS), default="array",
                   help="the hardware unit to generate: " +
                        "; ".join(f"{u.name}: {u.summary}" for u in UNITS.values()) +
                        " (default array; `--unit NAME --help` lists that unit's flags)")
    flags.add_arguments(p.add_argument_group(f"{unit} configuration"))
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output",
                     help="output directory (default build/<design name>, a name unique to the configuration, "
                          "e.g. build/32x32_colcomb_a8)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    unit, rest = split_unit(argv)
    if unit not in UNITS:
        return fail(PROG, f"--unit must be one of {', '.join(UNITS)}" + (f", not {unit!r}" if unit else ""))
    args = build_parser(unit).parse_args(rest)
    try:
        config = unit_flags(unit).config_from_args(args)
    except ConfigError as e:
        return fail(PROG, e)
    out = args.output or os.path.join("build", config.design_name)
    if problem := output_problem(out):
        return fail(PROG, problem)
    design = generate(config, **getattr(args, "component_options", {}))
    try:
        verilog_path, manifest_path = write(design, out)
    except OutputError as e:
        return fail(PROG, e)
    except OSError as e:        # a full disk, say, while the staging directory was written
        return fail(PROG, f"cannot write {out}: {e.strerror or e}")
    print(f"{verilog_path}: {config.summary}, {design.lines} lines")
    print(f"{manifest_path}: ports, payload packing, latency, cycle model")
    for line in getattr(unit_flags(unit), "report_lines", lambda config: [])(config):
        print(line)
    return 0
