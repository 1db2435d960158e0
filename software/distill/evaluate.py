"""How close a compressed MiniLM-L6 stays to the dense one, and what its FFNs cost on the array.

Embedding agreement on held-out sentences (software.distill.corpus), against the dense model:
  * cosine of each sentence embedding to the dense model's: mean and 5th percentile;
  * top-1 nearest-neighbour agreement: for each sentence, its nearest other sentence (cosine)
    among all held-out sentences, by the compressed model's embeddings and by the dense model's;
    the fraction where both pick the same one.
FFN cost on the array: each of the 12 FFN matrices quantized to int8 (symmetric, per output
channel), packed by its column grouping (software.packing.colcomb.pack) and cut into tiles by the
existing schedule code (software.packing.schedule.schedule_layer); cycles from the cycle model
(software.golden.cycles.layer_cost) for `tokens` input vectors (one sentence's tokens). Dense is the
same matrix, every weight kept, on an alpha = 1 array of the same size.
"""

import dataclasses
import math

import numpy as np
import torch

from software.frontend.quant import compute_scale, quantize
from software.golden.cycles import layer_cost
from software.packing.colcomb import dense_grouping, pack
from software.packing.schedule import schedule_layer
from spec.array import ArrayConfig


@torch.no_grad()
def embed(encoder, tokenizer_model, sentences, batch=64):
    """N x 384 sentence embeddings (numpy) of `encoder` on `sentences`."""
    from software.models.minilm import batch_ids
    encoder.eval()
    # Batches of similar lengths pad little; the rows go back to the sentences' order at the end.
    order = np.argsort([len(tokenizer_model.encode(s).ids) for s in sentences], kind="stable")
    out = np.zeros((len(sentences), encoder.config["hidden_size"]), dtype=np.float32)
    for start in range(0, len(sentences), batch):
        chosen = order[start:start + batch]
        ids, keep = batch_ids(tokenizer_model, [sentences[i] for i in chosen])
        out[chosen] = encoder(ids, keep)[1].numpy()
    return out


@dataclasses.dataclass(frozen=True)
class Agreement:
    mean_cosine: float
    p5_cosine: float
    neighbour_agreement: float
    sentences: int


def nearest_neighbours(embeddings):
    sim = embeddings @ embeddings.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(axis=1)


def agreement(reference, candidate):
    """Agreement of `candidate` embeddings with `reference` (both N x d, L2-normalized rows)."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape or reference.shape[0] < 2:
        raise ValueError(f"need two N x d embedding matrices with N >= 2, not {reference.shape} and {candidate.shape}")
    cosine = (reference * candidate).sum(axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1))
    same = nearest_neighbours(reference) == nearest_neighbours(candidate)
    return Agreement(mean_cosine=float(cosine.mean()), p5_cosine=float(np.percentile(cosine, 5)),
                     neighbour_agreement=float(same.mean()), sentences=len(cosine))


def array_config(alpha, rows=32, cols=32):
    return ArrayConfig(rows=rows, cols=cols, alpha=alpha)


@dataclasses.dataclass(frozen=True)
class MatrixCost:
    name: str
    shape: tuple
    groups: int
    tiles: int
    cycles: int
    nonzeros: int


def matrix_cost(name, weight, grouping, config, tokens):
    """Tiles and cycles of one float F x K matrix, int8 per channel, packed by `grouping`."""
    weight = torch.as_tensor(weight, dtype=torch.float32)
    q = quantize(weight, compute_scale(weight, 8, per_channel=True), 8).numpy().astype(np.int64)
    packing = pack(q, grouping, config.alpha)
    if np.count_nonzero(packing.packed) != np.count_nonzero(q):
        raise ValueError(f"{name}: its grouping does not hold every weight (one per row and group)")
    cost = layer_cost(schedule_layer(config, packing, np.zeros((tokens, q.shape[1]), np.int64)))
    return MatrixCost(name=name, shape=tuple(q.shape), groups=packing.packed.shape[1], tiles=cost.tiles,
                      cycles=cost.cycles, nonzeros=int(np.count_nonzero(q)))


def ffn_costs(encoder, groups, *, alpha=8, rows=32, cols=32, tokens=32):
    """MatrixCost of each FFN matrix: packed by `groups` ({name: grouping}) on an alpha array, or
    with groups None, every weight kept on a dense (alpha 1) array."""
    config = array_config(1 if groups is None else alpha, rows, cols)
    out = []
    for name, module in encoder.ffn_linears().items():
        weight = module.weight_orig * module.weight_mask if hasattr(module, "weight_mask") else module.weight
        weight = weight.detach()
        grouping = dense_grouping(weight.shape[1]) if groups is None else groups[name]
        if groups is None:
            weight = torch.ones_like(weight)       # dense: every weight kept, whatever its value
        out.append(matrix_cost(name, weight, grouping, config, tokens))
    return out


def tiles_of(costs):
    return sum(c.tiles for c in costs)


def dense_tiles(shape, rows=32, cols=32):
    F, K = shape
    return math.ceil(F / rows) * math.ceil(K / cols)
