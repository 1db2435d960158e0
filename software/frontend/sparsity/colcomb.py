"""``--method colcomb``: column combining under joint optimization (DESIGN.md §2)."""
import math

from ..jointopt import ColumnCombiningSchedule
from .base import CompressError, Flag, SparsityMethod


def _check_gamma(gamma):
    if not (0 <= gamma and math.isfinite(gamma)):
        raise CompressError(f"--gamma must be a non-negative number, not {gamma}")


GAMMA = Flag("gamma", "conflicts allowed per merge of column groups, as a fraction of the rows", check=_check_gamma)


def grouped_convolutions(model):
    """Names of grouped / depthwise convolutions, left dense: each group is its own small matrix (a depthwise
    channel is 1 x k*k), which takes a tile whatever its sparsity, so pruning it costs accuracy and saves nothing."""
    from torch import nn
    return tuple(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1)


class ColumnCombining(SparsityMethod):
    name = "colcomb"
    summary = ("column combining with joint optimization: magnitude pruning and greedy grouping of up to "
               "--alpha columns with --gamma conflicts, one weight kept per row and group; packed by its grouping")
    flags = (GAMMA,)

    def label(self, options):
        return f"colcomb alpha={options.alpha} gamma={options.gamma:g}"

    def schedule(self, options, model):
        return ColumnCombiningSchedule(epochs=options.finetune_epochs, alpha=options.alpha, gamma=options.gamma,
                                       skip=grouped_convolutions(model))

    def groups(self, schedule):
        # The last event's grouping: the final mask keeps at most one weight per (row, group).
        return schedule.groups
