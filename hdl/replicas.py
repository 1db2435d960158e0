"""Registers that are copies of one another on purpose, each driving a share of a fan-out.

Yosys would merge identical registers back into one (opt_merge), so they carry the attribute
REPLICA and the board build (fpga/build.py) keeps them apart. They have no enable; by default no
reset either (a datapath copy), or the reset of the register they copy.
"""

from amaranth.hdl import Signal

REPLICA = "sparsegen_replica"


def replica(shape, name, *, init=None):
    """A register signal that synthesis keeps apart from its identical twins: reset-less, or reset
    to `init` if given."""
    if init is None:
        return Signal(shape, name=name, reset_less=True, attrs={REPLICA: 1})
    return Signal(shape, name=name, init=init, attrs={REPLICA: 1})
