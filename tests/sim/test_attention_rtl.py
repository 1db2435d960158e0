"""The generated Verilog of the attention unit, in Verilator under cocotb, against the golden model.

Two builds of the README's unit (d = 32, L = 64): without pruning, and with threshold + top-k
pruning. Each runs random heads of every length class, real MiniLM-L6 heads, all-equal scores and
extreme values, without stalls (RTL cycles == cycle model) and with random valid/ready stalls on
all three streams (still bit-exact). Every out beat is compared with the golden model inside the
testbench; sim.attention.run_heads raises on the first mismatch.
"""


import numpy as np
import pytest

from gen import cli
from sim.attention import Head, run_heads
from sim.runner import build
from sim.lint import lint
from software.golden.attention import dense_head_cycles, golden_head, head_cycles, quantize_head
from software.models.minilm import SENTENCES, MiniLM

BUILDS = {
    "dense": ("--head-dim", "32", "--max-len", "64"),
    "pruned": ("--head-dim", "32", "--max-len", "64", "--prune", "both", "--threshold", "5", "--top-k", "8"),
}

# Further configurations that are only linted (their arithmetic runs in tests/hdl).
LINT_ONLY = {
    "threshold_narrow": ("--head-dim", "4", "--max-len", "8", "--data-width", "4", "--out-width", "3",
                         "--scale-width", "5", "--exp-frac-bits", "1", "--exp-bits", "3", "--prob-bits", "2",
                         "--threshold", "2"),
    "topk_wide": ("--head-dim", "16", "--max-len", "128", "--data-width", "12", "--out-width", "16",
                  "--top-k", "16", "--exp-bits", "16", "--prob-bits", "14"),
    "single_row": ("--head-dim", "1", "--max-len", "1", "--top-k", "1"),
}

# Real heads: early, middle and last layers.
MINILM_HEADS = [(0, 0), (2, 5), (5, 11)]


GENERATED = {}


def generate(tmp_path_factory, name, args):
    if name not in GENERATED:
        out = tmp_path_factory.mktemp(f"attention_{name}")
        assert cli.main(["--unit", "attention", *args, "-o", str(out)]) == 0
        GENERATED[name] = out
    return GENERATED[name]


# The fast set simulates the pruned build (the dense datapath plus threshold and top-k pruning) and
# lints both; --all simulates the dense one too.
@pytest.fixture(scope="module", params=[pytest.param("dense", marks=pytest.mark.slow), "pruned"])
def design(request, tmp_path_factory):
    gen_dir = generate(tmp_path_factory, request.param, BUILDS[request.param])
    return request.param, gen_dir, build(gen_dir)


@pytest.fixture(scope="module")
def minilm_heads():
    """Q, K, V of real heads for two sentences of different lengths (float, n x 32)."""
    model = MiniLM()
    return [(sentence, key, qkv) for sentence in (SENTENCES[0], SENTENCES[15])
            for key, qkv in model.capture_heads(sentence, MINILM_HEADS).items()]


def random_head(rng, config, n, m):
    lo, hi = config.data_range
    k, v, q = (rng.integers(lo, hi + 1, size=(rows, config.head_dim)) for rows in (n, n, m))
    # Scales as quantize_head would pick them for typical data, varied per query.
    mul = rng.integers(1 << (config.scale_width - 1), 1 << config.scale_width, size=m)
    shift = rng.integers(24, 30, size=m)
    return Head(k=k, v=v, q=q, mul=mul, shift=shift)


def special_heads(config):
    d, L = config.head_dim, config.max_len
    lo, hi = config.data_range
    top = (1 << config.scale_width) - 1
    even = np.arange(L)[:, None] % 2 == 0
    alternating = np.where(even, lo, hi).repeat(d, axis=1)
    opposite = np.where(even, hi, lo).repeat(d, axis=1)
    return [
        # All-equal scores (q = 0): uniform probabilities; top-k keeps the first k positions.
        Head(k=np.tile(np.arange(L)[:, None] % 5 - 2, (1, d)), v=np.tile(np.arange(L)[:, None] - 32, (1, d)),
             q=np.zeros((2, d), dtype=np.int64), mul=[top, 1], shift=[0, 63]),
        # Most negative everywhere: the largest score, every position tied, saturating outputs.
        Head(k=np.full((L, d), lo), v=np.full((L, d), lo), q=np.full((2, d), lo), mul=[top, top], shift=[0, 5]),
        # The widest score spread times the largest multiplier: everything but the max underflows to 0.
        Head(k=alternating, v=opposite, q=np.full((2, d), lo), mul=[top, top], shift=[0, 40]),
        # A single row.
        Head(k=np.full((1, d), hi), v=np.full((1, d), hi), q=np.full((1, d), hi), mul=[top], shift=[0]),
    ]


def real_heads(config, minilm_heads):
    heads = []
    for _, _, (q, k, v) in minilm_heads:
        h = quantize_head(config, q, k, v)
        heads.append(Head(k=h.k, v=h.v, q=h.q, mul=h.mul, shift=h.shift))
    return heads


@pytest.mark.parametrize("name", list(BUILDS))
def test_lint_clean(tmp_path_factory, name):
    verilog, = generate(tmp_path_factory, name, BUILDS[name]).glob("*.v")
    ok, warnings = lint(verilog, verilog.stem)
    assert ok, "\n".join(warnings[:20])


@pytest.mark.parametrize("name", list(LINT_ONLY))
def test_lint_clean_other_configurations(tmp_path_factory, name):
    gen_dir = generate(tmp_path_factory, name, LINT_ONLY[name])
    ok, warnings = lint(gen_dir / "sparsegen_attention.v", "sparsegen_attention")
    assert ok, "\n".join(warnings[:20])


@pytest.fixture(scope="module")
def runs(design, minilm_heads):
    """Two simulations per build (each cocotb run costs seconds to start): every kind of head
    back to back without stalls, and a mix of them under random stalls on all three streams."""
    _, _, built = design
    config = built.config
    rng = np.random.default_rng(7)
    # Full length, short, and a single row: the memories are reused between sequences.
    random = [random_head(rng, config, config.max_len, 3), random_head(rng, config, 13, 4),
              random_head(rng, config, 1, 2)]
    special, real = special_heads(config), real_heads(config, minilm_heads)
    groups = {"random": random, "special": special, "minilm": real}
    heads = random + special + real
    steady = run_heads(built, heads, name="steady")
    stalled = run_heads(built, random[1:] + special + real[:2], stall=0.3, seed=5, name="stalled")
    # Per group: (heads, RTL outputs, RTL kept counts) from the run without stalls.
    by_group, i = {}, 0
    for name, group in groups.items():
        by_group[name] = (group, steady.out[i:i + len(group)], steady.kept[i:i + len(group)])
        i += len(group)
    return steady, stalled, by_group


def test_rtl_cycles_equal_the_cycle_model(runs):
    steady, _, _ = runs
    assert steady.cycles == steady.model_cycles


def test_random_stalls_stay_bit_exact(runs):
    _, stalled, _ = runs
    assert stalled.cycles >= stalled.model_cycles     # and every beat matched (run_heads checks)


def test_all_equal_scores_and_extremes(design, runs):
    _, _, built = design
    config = built.config
    heads, out, kept = runs[2]["special"]
    # All-equal scores: uniform over the kept positions (all of them, or the first top_k).
    assert list(kept[0]) == [config.max_len if config.prune == "none" else config.top_k] * 2
    lo, _ = config.out_range
    assert (out[1] == lo).all()            # a convex combination of the most negative value
    g = golden_head(config, heads[2].q, heads[2].k, heads[2].v, heads[2].mul, heads[2].shift)
    at_max = g.scores[0] == g.scores[0].max()
    assert ((g.e[0] > 0) == at_max).all() and list(kept[2]) == list(g.kept)   # the rest underflow
    assert list(kept[3]) == [1]


def test_real_minilm_heads_bit_exact(design, runs):
    name, _, built = design
    config = built.config
    heads, out, kept = runs[2]["minilm"]
    for h, o, k in zip(heads, out, kept):
        g = golden_head(config, h.q, h.k, h.v, h.mul, h.shift)
        assert np.array_equal(o, g.out) and np.array_equal(k, g.kept)
    dense = sum(dense_head_cycles(config, len(h.k), len(h.q)) for h in heads)
    golden = [golden_head(config, h.q, h.k, h.v, h.mul, h.shift) for h in heads]
    model = sum(head_cycles(config, len(h.k), g.candidates, g.kept) for h, g in zip(heads, golden))
    if name == "dense":
        assert model == dense
    else:
        assert model < dense                 # pruned positions are skipped in p.V
        assert all((k < len(h.k)).all() for h, k in zip(heads, kept) if len(h.k) > config.top_k)


def test_mid_stream_reset_then_replay_is_exact(design):
    """Reset while heads are streaming (under stalls), then replay: every out beat exact again."""
    _, _, built = design
    config = built.config
    rng = np.random.default_rng(13)
    heads = [random_head(rng, config, 9, 3), random_head(rng, config, config.max_len, 3)]
    # run_heads raises SimulationError on any wrong, lost or extra beat, or if the reset never came.
    run_heads(built, heads, stall=0.2, seed=17, reset_after=4, name="reset")
