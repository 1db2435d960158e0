"""A small random BERT layer of MiniLM's structure, its FFN matrices column-combined, for the integer
encoder layer's tests (fast, software) and its run through Verilator (slow)."""

import numpy as np
import torch

from software.frontend.pruning import apply_mask, magnitude_prune
from software.models.minilm import _Layer
from software.packing.colcomb import group_columns, pack


def tiny_layer(*, hidden=32, heads=2, ffn=64, alpha=4, sparsity=0.6, seed=0):
    """(layer, groups): random weights (LayerNorm gains and biases too), both FFN matrices
    magnitude-pruned to `sparsity` and column-combined with `alpha` as the distillation does."""
    torch.manual_seed(seed)
    layer = _Layer(hidden, heads, ffn).eval()
    with torch.no_grad():
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 1.5 / module.in_features ** 0.5)
                module.bias.normal_(0, 0.1)
            elif isinstance(module, torch.nn.LayerNorm):
                module.eps = 1e-12
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    groups = {}
    for name in ("intermediate", "output"):
        module = getattr(layer, name)["dense"]
        magnitude_prune(module, sparsity)
        weight = (module.weight_orig * module.weight_mask).detach().numpy()
        groups[name] = group_columns(weight, alpha, 0.5)
        apply_mask(module, torch.from_numpy(pack(weight, groups[name], alpha).mask.astype(np.float32)))
    return layer, groups


def hidden_states(n, hidden, seed):
    """Layer-normalized random hidden states, like a BERT layer's input."""
    x = torch.randn(n, hidden, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.layer_norm(x, (hidden,))
