"""Weight pruning of nn.Linear / nn.Conv2d through ``torch.nn.utils.prune``.

Every method here is a ``prune.BasePruningMethod`` (or ``prune.global_unstructured`` /
``prune.custom_from_mask``), so a pruned layer carries ``weight_orig`` (trainable) and
``weight_mask`` (buffer), the forward pre-hook re-applies the mask, repeated pruning composes
through torch's ``PruningContainer`` (masks only ever shrink), and :func:`make_permanent`
(``prune.remove``) bakes the zeros into ``weight``.

Layer view: a weight is the matrix ``W = weight.reshape(F, K)`` -- ``F`` output channels by
``K`` inputs (for Conv2d ``K = in_channels * kh * kw`` in ``reshape`` order). "Along the input
dimension" means along a row of ``W``; the GEMM ``B`` matrix of the hardware is ``W.T`` (K x F).

Ties are broken deterministically everywhere: among equal magnitudes (or scores) the lower
index is kept, so results do not depend on the sort implementation.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune
from spec.checks import positive_int

__all__ = [
    "PRUNABLE",
    "prunable_layers",
    "MagnitudeUnstructured",
    "NMStructured",
    "TileWise",
    "magnitude_prune",
    "global_magnitude_prune",
    "nm_prune",
    "tile_wise_prune",
    "apply_mask",
    "weight_mask",
    "make_permanent",
    "SparsityReport",
    "sparsity",
]

PRUNABLE = (nn.Linear, nn.Conv2d)


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features}->{module.out_features})"
    if isinstance(module, nn.Conv2d):
        return f"Conv2d({module.in_channels}->{module.out_channels}, k={tuple(module.kernel_size)})"
    return type(module).__name__


def _check_layer(module: nn.Module, caller: str) -> None:
    if not isinstance(module, PRUNABLE):
        raise ValueError(f"{caller}: unsupported layer {_describe(module)}; only nn.Linear and nn.Conv2d can be pruned")


def _check_fraction(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def _round_count(x: float) -> int:
    """Round a fractional element count half up (Python's round() is half-to-even)."""
    return int(math.floor(x + 0.5))


def _keep_top(scores: torch.Tensor, n_keep, dim: int = -1) -> torch.Tensor:
    """Boolean mask keeping the ``n_keep`` largest scores along ``dim``; ties keep the lower index.

    ``n_keep`` is an int or a tensor broadcastable to the other dims.
    """
    # A stable descending sort keeps equal scores in index order, so the lower index ranks first.
    order = torch.sort(scores, dim=dim, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    shape = [-1 if d == dim % scores.ndim else 1 for d in range(scores.ndim)]
    positions = torch.arange(scores.shape[dim]).reshape(shape)
    rank.scatter_(dim, order, positions.expand_as(order))
    return rank < n_keep


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every nn.Linear / nn.Conv2d in ``model`` (``model`` itself included)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


def weight_mask(module: nn.Module) -> torch.Tensor:
    """Current 0/1 mask of ``module.weight``: the pruning mask, or ``weight != 0`` if not pruned."""
    _check_layer(module, "weight_mask")
    if hasattr(module, "weight_mask"):
        return module.weight_mask.detach().clone()
    return (module.weight.detach() != 0).to(module.weight.dtype)


def _current_weight(module: nn.Module) -> torch.Tensor:
    """Effective weight now: ``weight_orig * weight_mask`` if pruned (``module.weight`` is only
    refreshed by a forward pass, so after an optimizer step it is stale), else ``weight``."""
    if hasattr(module, "weight_mask"):
        return module.weight_orig.detach() * module.weight_mask
    return module.weight.detach()


def _already_pruned(module: nn.Module) -> int:
    return int((weight_mask(module) == 0).sum()) if hasattr(module, "weight_mask") else 0


# ----------------------------------------------------------------------------------------------
# Magnitude (unstructured)


class MagnitudeUnstructured(prune.BasePruningMethod):
    """Zero the ``amount`` smallest-|w| entries among those still unpruned (ties: prune higher index).

    Like ``prune.L1Unstructured`` but with an integer count and deterministic tie-breaking.
    ``PRUNING_TYPE = "unstructured"``, so it works inside ``prune.global_unstructured`` and, when
    repeated, sees only the surviving entries.
    """

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount: int):
        self.amount = operator.index(amount)
        if self.amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount}")

    def compute_mask(self, t, default_mask):
        mask = default_mask.clone(memory_format=torch.contiguous_format)
        alive = mask.reshape(-1) != 0
        n_alive = int(alive.sum())
        if self.amount > n_alive:
            raise ValueError(f"cannot prune {self.amount} entries: only {n_alive} are unpruned")
        if self.amount == 0:
            return mask
        # Pruned entries score -1 so they sort last and are never "kept" twice.
        scores = torch.where(alive, t.detach().reshape(-1).abs(), torch.full_like(t.reshape(-1), -1.0))
        keep = _keep_top(scores, n_alive - self.amount)
        mask.reshape(-1)[~keep] = 0
        return mask


def magnitude_prune(module: nn.Module, sparsity: float) -> nn.Module:
    """Prune ``module`` by magnitude until a fraction ``sparsity`` of its weights is masked.

    ``sparsity`` is the *total* target (previous masks count towards it); a target at or below
    the current mask sparsity prunes nothing. Returns ``module``.
    """
    _check_layer(module, "magnitude_prune")
    sparsity = _check_fraction(sparsity, f"magnitude_prune({_describe(module)}): sparsity")
    amount = max(0, _round_count(sparsity * module.weight.numel()) - _already_pruned(module))
    MagnitudeUnstructured.apply(module, "weight", amount, importance_scores=_current_weight(module))
    return module


def global_magnitude_prune(model_or_layers, sparsity: float) -> None:
    """Magnitude-prune the weights of many layers together (``prune.global_unstructured``).

    ``model_or_layers`` is a model (all its Linear/Conv2d layers) or an iterable of layers.
    ``sparsity`` is the total target fraction over all their weights; small layers may end up
    much sparser or denser than large ones.
    """
    if isinstance(model_or_layers, nn.Module):
        layers = [m for _, m in prunable_layers(model_or_layers)]
    else:
        layers = list(model_or_layers)
    if not layers:
        raise ValueError("global_magnitude_prune: no nn.Linear / nn.Conv2d layers given")
    for layer in layers:
        _check_layer(layer, "global_magnitude_prune")
    sparsity = _check_fraction(sparsity, "global_magnitude_prune: sparsity")
    total = sum(layer.weight.numel() for layer in layers)
    already = sum(_already_pruned(layer) for layer in layers)
    amount = max(0, _round_count(sparsity * total) - already)
    prune.global_unstructured(
        [(layer, "weight") for layer in layers],
        pruning_method=MagnitudeUnstructured,
        importance_scores={(layer, "weight"): _current_weight(layer) for layer in layers},
        amount=amount,
    )


# ----------------------------------------------------------------------------------------------
# N:M


class NMStructured(prune.BasePruningMethod):
    """Keep the ``n`` largest |w| of every ``m`` consecutive weights along the input dimension.

    NVIDIA ASP semantics on ``W = weight.reshape(F, K)``: groups are ``W[f, j*m:(j+1)*m]``; ties
    keep the lower index. If ``m`` does not divide ``K`` the last group is shorter (as if padded
    with zeros) and keeps ``min(n, length)`` entries. Previously pruned entries count as zero
    magnitude and stay pruned. ``PRUNING_TYPE = "global"`` so repeated pruning hands this method
    the whole tensor (the N:M structure needs it), not a flattened slice.
    """

    PRUNING_TYPE = "global"

    def __init__(self, n: int, m: int):
        self.n = positive_int("n", n)
        self.m = positive_int("m", m)
        if self.n > self.m:
            raise ValueError(f"N:M pruning needs n <= m, got n={self.n}, m={self.m}")

    def compute_mask(self, t, default_mask):
        rows = t.shape[0]
        scores = (t.detach().abs() * default_mask).reshape(rows, -1)
        k = scores.shape[1]
        padded = -(-k // self.m) * self.m
        # Pad with -1 (below any magnitude) so padding is never kept in place of a real weight.
        scores = torch.nn.functional.pad(scores, (0, padded - k), value=-1.0)
        keep = _keep_top(scores.reshape(rows, padded // self.m, self.m), self.n)
        keep = keep.reshape(rows, padded)[:, :k].reshape(t.shape)
        return default_mask * keep.to(default_mask.dtype)


def nm_prune(module: nn.Module, n: int, m: int) -> nn.Module:
    """Apply N:M pruning (e.g. ``n=2, m=4``) to ``module``; see :class:`NMStructured`."""
    _check_layer(module, "nm_prune")
    n = positive_int(f"nm_prune({_describe(module)}): n", n)
    m = positive_int(f"nm_prune({_describe(module)}): m", m)
    if n > m:
        raise ValueError(f"nm_prune({_describe(module)}): n={n} must be <= m={m}")
    NMStructured.apply(module, "weight", n, m, importance_scores=_current_weight(module))
    return module


# ----------------------------------------------------------------------------------------------
# Tile-wise (Guo et al., SC 2020)


class TileWise(prune.BasePruningMethod):
    """Tile-wise sparsity (Guo et al., SC 2020, "TW" pattern, as in the authors' ``tiled_wise_2d``).

    With ``B = W.T`` (``K x F``, the GEMM B matrix; columns are output channels):

    1. Both stages prune at the rate ``s1 = 1 - sqrt(1 - sparsity)`` so that
       ``(1 - s1)**2 = 1 - sparsity``.
    2. **Columns.** Score each column ``f`` by ``||B[:, f]||_2 / K``; prune the
       ``round(s1 * F)`` lowest-scoring columns (whole output channels).
    3. **Tiles.** The surviving columns, in order, are cut into tiles of ``tile_size``
       consecutive survivors (the last tile may be narrower). Pruned columns belong to no tile:
       after column pruning the GEMM is condensed, then tiled, as in the paper.
    4. **Rows inside tiles.** Every (tile, row ``k``) segment scores
       ``||B[k, tile]||_p / width`` (``p = row_norm``, 2 as in the authors' code). Segments are
       pruned lowest score first while that moves the count of kept weights closer to the
       target ``round((1 - sparsity) * K * F)`` (a segment of width ``w`` is pruned iff
       ``2 * (kept - target) >= w``); the first segment that fails stops the pruning.

    Ties keep the lower index (columns by index, segments by (tile, row) order). The authors
    rank globally over all layers with accumulated importance scores; this method ranks within
    one layer by weight magnitude. Previously pruned weights score as zero; the result is ANDed
    with the previous mask, and ``sparsity`` counts only the tile-wise structure.
    """

    PRUNING_TYPE = "global"

    def __init__(self, sparsity: float, tile_size: int, row_norm: int = 2):
        self.sparsity = _check_fraction(sparsity, "sparsity")
        self.tile_size = positive_int("tile_size", tile_size)
        if row_norm not in (1, 2):
            raise ValueError(f"row_norm must be 1 or 2, got {row_norm!r}")
        self.row_norm = row_norm

    def compute_mask(self, t, default_mask):
        weights = (t.detach().abs() * default_mask).reshape(t.shape[0], -1)
        n_cols, n_rows = weights.shape  # F output channels (B columns), K inputs (B rows)
        stage_rate = 1.0 - math.sqrt(1.0 - self.sparsity)

        column_score = weights.norm(p=2, dim=1) / n_rows
        n_cols_kept = n_cols - min(n_cols, _round_count(stage_rate * n_cols))
        column_kept = _keep_top(column_score, n_cols_kept)
        keep = column_kept.unsqueeze(1).expand(n_cols, n_rows).clone()

        survivors = torch.nonzero(column_kept).flatten()
        target = _round_count((1.0 - self.sparsity) * n_rows * n_cols)
        kept = n_rows * len(survivors)
        tiles = [survivors[i:i + self.tile_size] for i in range(0, len(survivors), self.tile_size)]
        if tiles and kept > target:
            width = torch.tensor([len(tile) for tile in tiles], dtype=torch.int64)
            # score[tile, row], flattened in (tile, row) order. A stable descending sort ranks
            # tied segments in that order; reversed, it lists segments to prune first (lowest
            # score first, and among ties the later segment first, so the earlier one is kept).
            score = torch.stack([weights[tile].norm(p=self.row_norm, dim=0) / len(tile) for tile in tiles])
            order = torch.sort(score.reshape(-1), descending=True, stable=True).indices.flip(0)
            seg_width = width.repeat_interleave(n_rows)[order]
            kept_before = kept - torch.cumsum(seg_width, 0) + seg_width
            ok = 2 * (kept_before - target) >= seg_width
            n_pruned = int(ok.to(torch.int64).cumprod(0).sum())
            segment_pruned = torch.zeros(len(tiles) * n_rows, dtype=torch.bool)
            segment_pruned[order[:n_pruned]] = True
            tile_of_survivor = torch.arange(len(survivors)) // self.tile_size
            keep[survivors] &= ~segment_pruned.reshape(len(tiles), n_rows)[tile_of_survivor]
        return default_mask * keep.reshape(t.shape).to(default_mask.dtype)


def tile_wise_prune(module: nn.Module, sparsity: float, tile_size: int = 128, row_norm: int = 2) -> nn.Module:
    """Apply tile-wise pruning to ``module``; see :class:`TileWise` for the exact rule."""
    _check_layer(module, "tile_wise_prune")
    where = f"tile_wise_prune({_describe(module)})"
    sparsity = _check_fraction(sparsity, f"{where}: sparsity")
    tile_size = positive_int(f"{where}: tile_size", tile_size)
    if row_norm not in (1, 2):
        raise ValueError(f"{where}: row_norm must be 1 or 2, got {row_norm!r}")
    TileWise.apply(module, "weight", sparsity, tile_size, row_norm, importance_scores=_current_weight(module))
    return module


# ----------------------------------------------------------------------------------------------
# Masks from elsewhere, permanence, reporting


def apply_mask(module: nn.Module, mask: torch.Tensor) -> nn.Module:
    """Apply an externally computed 0/1 mask (e.g. from the column-combining packer).

    ``mask`` has the weight's shape or its matrix shape ``(F, K)``. Uses
    ``prune.custom_from_mask``, so on an already pruned layer the new mask is ANDed with the old
    one: re-applying the same mask during joint optimization is idempotent.
    """
    _check_layer(module, "apply_mask")
    weight = module.weight
    mask = torch.as_tensor(mask)
    if mask.numel() != weight.numel() or mask.shape not in (weight.shape, weight.reshape(weight.shape[0], -1).shape):
        raise ValueError(
            f"apply_mask({_describe(module)}): mask shape {tuple(mask.shape)} does not match "
            f"weight shape {tuple(weight.shape)} or its (F, K) matrix"
        )
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"apply_mask({_describe(module)}): mask must contain only 0 and 1")
    prune.custom_from_mask(module, "weight", mask.reshape(weight.shape).to(dtype=weight.dtype, device=weight.device))
    return module


def make_permanent(model: nn.Module) -> nn.Module:
    """``prune.remove`` on every pruned weight in ``model``: zeros become part of ``weight``."""
    for _, module in prunable_layers(model):
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model


@dataclass
class SparsityReport:
    """Zero counts of the (effective) weights of every Linear/Conv2d layer."""

    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (zeros, total)

    def fraction(self, name: str) -> float:
        zeros, total = self.layers[name]
        return zeros / total if total else 0.0

    @property
    def zeros(self) -> int:
        return sum(z for z, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.layers.values())

    @property
    def overall(self) -> float:
        return self.zeros / self.total if self.total else 0.0

    def __str__(self) -> str:
        width = max([len(n) for n in self.layers] + [5])
        lines = [f"{'layer':<{width}}  {'zeros':>9}  {'total':>9}  sparsity"]
        for name, (zeros, total) in self.layers.items():
            lines.append(f"{name:<{width}}  {zeros:>9}  {total:>9}  {self.fraction(name):8.2%}")
        lines.append(f"{'all':<{width}}  {self.zeros:>9}  {self.total:>9}  {self.overall:8.2%}")
        return "\n".join(lines)


def sparsity(model: nn.Module) -> SparsityReport:
    """Count zero weights per layer (masked or exactly zero) in ``model``'s Linear/Conv2d layers."""
    report = SparsityReport()
    for name, module in prunable_layers(model):
        weight = _current_weight(module)
        report.layers[name or type(module).__name__] = (int((weight == 0).sum()), weight.numel())
    return report
