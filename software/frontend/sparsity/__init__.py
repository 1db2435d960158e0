"""The front-end's pruning methods, ``python -m software compress --method NAME``: a registry.

One module per method, each defining one :class:`~software.frontend.sparsity.base.SparsityMethod` (what
it prunes while fine-tuning, how it is packed, its flags, label and checks; see base.py), and one
entry per method in :data:`SPARSITY`. software/frontend/compress.py asks the registry and never branches
on a method's name, so a new pattern is a new module here plus its import and its line below.
"""
from .base import CompressError, Flag, SparsityMethod
from .colcomb import ColumnCombining
from .dense import Dense
from .magnitude import Magnitude
from .nm import NM
from .tilewise import TileWise

SPARSITY = {method.name: method for method in (
    ColumnCombining(),
    Dense(),
    Magnitude(),
    NM(),
    TileWise(),
)}

__all__ = ["SPARSITY", "CompressError", "Flag", "SparsityMethod", "lookup", "method_flags"]


def lookup(name) -> SparsityMethod:
    """The method called ``name``; CompressError naming the choices otherwise."""
    try:
        return SPARSITY[name]
    except (KeyError, TypeError):
        raise CompressError(f"unknown method {name!r}; choose from {', '.join(SPARSITY)}") from None


def method_flags() -> list[tuple[Flag, tuple[str, ...]]]:
    """Every method's flags once, in registry order, each with the names of the methods that read it."""
    users: dict[str, list] = {}
    found: dict[str, Flag] = {}
    for m in SPARSITY.values():
        for flag in m.flags:
            if found.setdefault(flag.dest, flag) is not flag:
                raise ValueError(f"methods {users[flag.dest][0]!r} and {m.name!r} define --{flag.dest} twice; "
                                 "share one Flag (software/frontend/sparsity/base.py)")
            users.setdefault(flag.dest, []).append(m.name)
    return [(found[dest], tuple(names)) for dest, names in users.items()]
