"""A digits MLP whose layers map one-to-one onto the systolic array (all linear layers).

Data: scikit-learn's bundled ``load_digits`` (1797 8x8 images, 16 grey levels), split once and
for all with ``train_test_split(test_size=0.25, random_state=0, stratify=y)``: 1347 training and
450 test images. Pixels are scaled to [0, 1] (divided by 16), so the first layer sees
non-negative inputs that quantize as unsigned integers.

Model: 64 -> 128 -> 64 -> 10 with ReLU. Training is deterministic for a given seed (the seed
drives initialization and the shuffling generator) and takes about a second on 2 CPU cores.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm.auto import tqdm

__all__ = ["DigitsSplit", "load_digits_split", "build_model", "train", "evaluate", "LAYER_SIZES"]

LAYER_SIZES = (64, 128, 64, 10)
PIXEL_MAX = 16.0  # load_digits pixels are integers 0..16


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed train/test split: float32 images ``(N, 64)`` in [0, 1] and int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@functools.lru_cache(maxsize=1)
def load_digits_split() -> DigitsSplit:
    """Load scikit-learn's digits and return the project's fixed, stratified 75/25 split."""
    data = load_digits()
    x = (data.data / PIXEL_MAX).astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    split = DigitsSplit(*(torch.from_numpy(a) for a in (x_train, y_train, x_test, y_test)))
    for t in (split.x_train, split.y_train, split.x_test, split.y_test):
        t.requires_grad_(False)
    return split


def build_model(sizes=LAYER_SIZES, seed: int = 0) -> nn.Sequential:
    """MLP ``sizes[0] -> ... -> sizes[-1]`` with ReLU between layers, initialized from ``seed``."""
    sizes = tuple(sizes)
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"build_model: sizes must list >= 2 positive layer widths, got {sizes}")
    if sizes[0] != LAYER_SIZES[0] or sizes[-1] != LAYER_SIZES[-1]:
        raise ValueError(f"build_model: digits needs 64 inputs and 10 outputs, got sizes {sizes}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(generator_state)  # don't disturb the caller's random stream


@contextlib.contextmanager
def _single_thread():
    """Run torch on one intra-op thread: these matrices are tiny, so threads only add overhead,
    and OpenMP workers spinning on shared CI cores can slow training down tenfold."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(
    model: nn.Module,
    epochs: int = 30,
    masks_hook: Callable[[nn.Module, int], None] | None = None,
    *,
    lr: float = 3e-3,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
    split: DigitsSplit | None = None,
) -> list[float]:
    """Train ``model`` with Adam and cross-entropy; return the mean training loss of each epoch.

    ``masks_hook(model, epoch)`` runs at the start of every epoch (0-based) and after the last
    one (``epoch == epochs``); it may prune or apply masks with ``software.frontend.pruning``. Masks
    registered through ``torch.nn.utils.prune`` keep pruned weights at zero while training,
    because the optimizer updates ``weight_orig`` and the forward pre-hook re-applies the mask.
    """
    epochs = int(epochs)
    if epochs < 0:
        raise ValueError(f"train: epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"train: batch_size must be >= 1, got {batch_size}")
    split = split or load_digits_split()
    # Pruning re-registers `weight` as `weight_orig` (same Parameter object), so one optimizer
    # created here keeps working across pruning events.
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    n = split.x_train.shape[0]
    history: list[float] = []
    bar = tqdm(range(epochs), desc="digits", unit="epoch", disable=not progress, leave=False)
    with _single_thread():
        for epoch in bar:
            if masks_hook is not None:
                masks_hook(model, epoch)
            model.train()
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, batch_size):
                batch = order[start:start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(split.x_train[batch]), split.y_train[batch])
                loss.backward()
                optimizer.step()
                total += loss.detach().item() * len(batch)
            history.append(total / n)
            bar.set_postfix(loss=f"{history[-1]:.4f}")
        if masks_hook is not None:
            masks_hook(model, epochs)
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, split: DigitsSplit | None = None, *, train_set: bool = False) -> float:
    """Top-1 accuracy of ``model`` on the held-out test set (or the training set)."""
    split = split or load_digits_split()
    x, y = (split.x_train, split.y_train) if train_set else (split.x_test, split.y_test)
    was_training = model.training
    model.eval()
    accuracy = float((model(x).argmax(dim=1) == y).to(torch.float32).mean())
    model.train(was_training)
    return accuracy
