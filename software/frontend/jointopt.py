"""Gradual pruning during training, and column combining under joint optimization (DESIGN.md §2).

Pruning happens at ``events`` (10) pruning events spread over the first half of training; event
``k = 1..events`` sits at the start of epoch ``floor((k - 1) * epochs / (2 * events))`` and prunes to
the fraction ``rate_k = 0.8 * (1 - (1 - k / events)**3)`` of the method's final target. The second
half of training runs with the masks fixed, so the surviving weights recover the accuracy.

Column combining (Kung, McDanel, Zhang, ASPLOS 2019) at event ``k``, for every nn.Linear /
nn.Conv2d layer (weight viewed as ``F x K``):

1. magnitude-prune the layer to a total sparsity of ``rate_k * (1 - 1/alpha)``;
2. re-pack: :func:`software.packing.colcomb.group_columns` on the surviving nonzeros (alpha, gamma);
3. apply the column-combine mask (in every (row, group) only the largest magnitude survives)
   through :func:`software.frontend.pruning.apply_mask` (``torch.nn.utils.prune.custom_from_mask``),
   which ANDs it with the masks of earlier events.

Training then continues with the masks: the optimizer updates ``weight_orig``, the forward
pre-hook of torch.nn.utils.prune re-applies the mask. The grouping of the last event is kept
(:attr:`ColumnCombiningSchedule.groups`): the final mask has at most one weight per (row, group)
of it, so packing the trained (and later quantized) weights by it loses nothing.

Every schedule is a ``masks_hook(model, epoch)`` for :func:`software.models.digits.train`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from software.packing.colcomb import group_columns, kept_fraction, pack
from software.frontend.pruning import apply_mask, magnitude_prune, nm_prune, prunable_layers, tile_wise_prune

__all__ = [
    "EVENTS",
    "FINAL_RATE",
    "pruning_rate",
    "event_epochs",
    "weight_matrix",
    "GradualPruning",
    "ColumnCombiningSchedule",
    "MagnitudeSchedule",
    "NMSchedule",
    "TileWiseSchedule",
]

EVENTS = 10
FINAL_RATE = 0.8


def pruning_rate(k: int, events: int = EVENTS) -> float:
    """``0.8 * (1 - (1 - k / events)**3)``: the pruning rate of event ``k`` (1-based)."""
    if not 1 <= k <= events:
        raise ValueError(f"pruning event must be in 1..{events}, got {k}")
    return FINAL_RATE * (1.0 - (1.0 - k / events) ** 3)


def event_epochs(epochs: int, events: int = EVENTS) -> list[int]:
    """Epoch (0-based) at whose start each event ``k = 1..events`` runs: all in the first half."""
    if epochs < 1:
        raise ValueError(f"pruning during training needs at least 1 epoch, got {epochs}")
    return [(k - 1) * epochs // (2 * events) for k in range(1, events + 1)]


def weight_matrix(module) -> torch.Tensor:
    """The effective weight of a Linear / Conv2d as its ``F x K`` matrix (detached)."""
    weight = module.weight_orig * module.weight_mask if hasattr(module, "weight_mask") else module.weight
    return weight.detach().reshape(weight.shape[0], -1)


@dataclass
class GradualPruning:
    """``masks_hook`` running :meth:`prune_event` for ``k = 1..events`` at :func:`event_epochs`.

    Subclasses implement ``prune_event(name, module, k)``. ``log`` records one entry per event:
    ``(k, epoch, overall sparsity after the event)``.
    """

    epochs: int
    events: int = EVENTS
    skip: tuple = ()            # names of layers left unpruned
    log: list = field(default_factory=list)

    def __post_init__(self):
        self.schedule = event_epochs(self.epochs, self.events)

    def __call__(self, model, epoch: int) -> None:
        for k, at in enumerate(self.schedule, start=1):
            if at == epoch:
                layers = prunable_layers(model)
                for name, module in layers:
                    if name not in self.skip:
                        self.prune_event(name, module, k)
                zeros = sum(int((weight_matrix(m) == 0).sum()) for _, m in layers)
                total = sum(m.weight.numel() for _, m in layers)
                self.log.append((k, epoch, zeros / total))

    def fraction(self, k: int) -> float:
        """Fraction of the final target reached at event ``k`` (1 at the last event)."""
        return pruning_rate(k, self.events) / FINAL_RATE

    def prune_event(self, name, module, k):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class ColumnCombiningSchedule(GradualPruning):
    """Column combining with joint optimization; ``groups[name]`` is the last event's grouping."""

    alpha: int = 8
    gamma: float = 0.5
    groups: dict = field(default_factory=dict)
    kept: dict = field(default_factory=dict)    # name -> per event, fraction of its nonzeros the packing kept

    def __post_init__(self):
        super().__post_init__()
        if int(self.alpha) != self.alpha or self.alpha < 1:
            raise ValueError(f"alpha must be a positive integer, got {self.alpha!r}")
        if not (self.gamma >= 0 and math.isfinite(self.gamma)):
            raise ValueError(f"gamma must be a non-negative number, got {self.gamma!r}")

    def prune_event(self, name, module, k):
        magnitude_prune(module, pruning_rate(k, self.events) * (1.0 - 1.0 / self.alpha))
        weight = weight_matrix(module).numpy()
        groups = group_columns(weight, self.alpha, self.gamma)    # magnitudes: rank merges by what they prune
        packing = pack(weight, groups, self.alpha)
        apply_mask(module, torch.from_numpy(packing.mask.astype(np.float32)))
        self.groups[name] = groups
        self.kept.setdefault(name, []).append(kept_fraction(weight, packing))


@dataclass
class MagnitudeSchedule(GradualPruning):
    """Unstructured magnitude pruning, per layer, to ``sparsity`` at the last event."""

    sparsity: float = 0.75

    def prune_event(self, name, module, k):
        magnitude_prune(module, self.sparsity * self.fraction(k))


@dataclass
class TileWiseSchedule(GradualPruning):
    """Tile-wise pruning (Guo et al.) to ``sparsity`` at the last event, tiles of ``tile_size``
    output channels (one row block of the array when ``tile_size`` = rows).

    Its first stage removes whole output channels, which in a classifier's output layer are
    whole classes: leave that layer out with ``skip``."""

    sparsity: float = 0.75
    tile_size: int = 32

    def prune_event(self, name, module, k):
        # TileWise's sparsity counts only its own structure (it ANDs with the old mask), so each
        # event asks for the cumulative target and the masks compose.
        tile_wise_prune(module, self.sparsity * self.fraction(k), self.tile_size)


@dataclass
class NMSchedule(GradualPruning):
    """N:M pruning in one shot at the first event (NVIDIA ASP's recipe: prune a trained dense
    model once, then retrain with the mask). ``events`` is ignored beyond the first."""

    n: int = 2
    m: int = 4

    def prune_event(self, name, module, k):
        if k == 1:
            nm_prune(module, self.n, self.m)
