"""``--method nm``: N:M structured pruning (NVIDIA ASP's recipe)."""
import argparse

from ..jointopt import NMSchedule
from .base import CompressError, Flag, SparsityMethod


def parse_nm(text):
    """``"2:4"`` -> ``(2, 4)``."""
    try:
        n, m = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:M such as 2:4, not {text!r}") from None
    return n, m


def _check_nm(nm):
    n, m = nm
    if not 1 <= n <= m:
        raise CompressError(f"--nm {n}:{m}: need 1 <= N <= M")


NM = Flag("nm", "N:M pattern: N weights kept of every M consecutive inputs", type=parse_nm, check=_check_nm,
          show=lambda nm: f"{nm[0]}:{nm[1]}", metavar="N:M")


class NM(SparsityMethod):
    name = "nm"
    summary = ("N:M pruning: the N largest of every M weights along the inputs (--nm), once, then "
               "fine-tuning with the mask; packed losslessly")
    flags = (NM,)

    def label(self, options):
        return f"{options.nm[0]}:{options.nm[1]}"

    def schedule(self, options, model):
        return NMSchedule(epochs=options.finetune_epochs, n=options.nm[0], m=options.nm[1])
