"""`python -m gen --unit NAME ...`: one generator per hardware unit, each with its own flags.

The array is the default unit; `python -m gen --unit tq --help` shows another unit's flags.
"""

import importlib
import sys

UNITS = {
    "array": "gen.cli",             # the column-combining systolic array (default)
    "tq": "gen.tq",                 # the term-quantization multiplier
    "attention": "gen.attention",   # the one-head attention unit
}


def split_unit(argv):
    """(unit name, the remaining arguments)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--unit":
            if i + 1 >= len(argv):
                return None, argv
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith("--unit="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return "array", argv


def dispatch(argv):
    unit, rest = split_unit(argv)
    if unit not in UNITS:
        choices = ", ".join(UNITS)
        print(f"python -m gen: error: --unit must be one of {choices}" +
              (f", not {unit!r}" if unit else ""), file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(UNITS[unit])
    except ModuleNotFoundError as e:
        if e.name != UNITS[unit]:
            raise
        print(f"python -m gen: error: unit {unit!r} is not available in this version", file=sys.stderr)
        return 2
    return module.main(rest)
