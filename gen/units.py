"""The command-line flags of each unit in spec.units.UNITS: one module per unit, one line each.

A unit's module gives DESCRIPTION, EPILOG, `add_arguments(group)` and `config_from_args(args)`.
"""

UNIT_FLAGS = {
    "array": "gen.array",           # the column-combining systolic array (default)
    "tq": "gen.tq",                 # the term-quantization multiplier
    "attention": "gen.attention",   # the one-head attention unit
    "model": "gen.model",           # a packed model on the chip (python -m gen --model FILE)
    "graph-model": "gen.model",     # the same flags: --model FILE gives whichever accelerator the model needs
}
