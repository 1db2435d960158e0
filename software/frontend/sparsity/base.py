"""What a pruning method of ``python -m software compress --method NAME`` provides.

A method is a small object (one per module of this package, registered in :data:`SPARSITY
<software.frontend.sparsity.SPARSITY>`) that the compress pipeline asks, instead of branching on its name:

- ``name``, ``summary``: the ``--method`` value and its one line in ``--help``;
- ``flags``: the :class:`Flag` s it reads (command-line options that are also fields of
  ``software.frontend.compress.Options``); a flag two methods share is one object, defined here. A method
  with a parameter of its own also adds that field (and its default) to Options;
- ``label(options)``: how reports and tables name the compressed model;
- ``validate(options)``: :class:`CompressError` when the options do not suit the method;
- ``schedule(options, model)``: the pruning to run while fine-tuning (a ``masks_hook`` from
  :mod:`software.frontend.jointopt`), or None to keep the trained model as it is;
- ``groups(schedule)``: the column grouping to pack by after fine-tuning, or None.

Packing and the array: every method runs on the array that ``--alpha`` describes
(``spec.ArrayConfig.sparsity``: "dense" for alpha 1, "colcomb" above). A method whose ``groups``
is None is packed losslessly (``software.packing.colcomb.group_columns`` with gamma 0: only columns that
share no nonzero row are combined); column combining packs by the grouping its joint
optimization ended with.
"""
from __future__ import annotations

import dataclasses
from typing import Callable


class CompressError(ValueError):
    """Bad input to the compress pipeline; one line. (``software.frontend.compress.CompressError``.)"""


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line option of one or more methods; ``dest`` is the field of
    ``software.frontend.compress.Options`` it sets (its default is that field's default)."""

    dest: str
    help: str
    type: Callable = float
    check: Callable | None = None       # check(value) raises CompressError on a bad value
    show: Callable = str                # how --help prints the default
    metavar: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.dest.replace("_", "-")

    def validate(self, value):
        if self.check is not None:
            self.check(value)


def _check_sparsity(value):
    if not 0 <= value < 1:
        raise CompressError(f"--sparsity must be in [0, 1), not {value}")


SPARSITY_TARGET = Flag("sparsity", "fraction of the weights of every pruned layer that are zero at the end",
                       check=_check_sparsity)


class SparsityMethod:
    """Base of the methods: a method that prunes while fine-tuning and is packed losslessly."""

    name: str = ""
    summary: str = ""
    flags: tuple = ()

    def label(self, options) -> str:
        return self.name

    def validate(self, options) -> None:
        if options.finetune_epochs < 1:
            raise CompressError(f"--method {self.name} prunes during fine-tuning: --finetune-epochs must be >= 1")

    def schedule(self, options, model):
        """A ``masks_hook(model, epoch)`` for training (software.frontend.jointopt), or None: no pruning."""
        raise NotImplementedError

    def groups(self, schedule):
        """{layer name: column grouping} to pack by, or None to pack every layer losslessly."""
        return None

    def __repr__(self):
        return f"<sparsity method {self.name!r}>"
