"""The generated Verilog of the array, in Verilator under cocotb, against the golden model.

Every configuration runs twice: without stalls (where the RTL's cycle count must equal the cycle
model's) and with random valid/ready stalls on all three streams (results must still be exact).

Term-quantized arrays (`--mac tq`) get weights term-quantized by the front-end (software/termquant:
a group budget, then at most --weight-terms terms per weight) and integer activations that the
array truncates itself; the reference is the matrix product of the term-quantized weights and the
truncated activations. One of them runs a real layer of the digits MLP on its real activations.
"""

import dataclasses

import numpy as np
import pytest

from gen import cli
from sim.array import run_schedule
from sim.lint import lint
from sim.runner import build
from software.packing.colcomb import combine
from software.golden.cycles import layer_cycles
from software.golden.array import reference_layer, truncate_activations
from software.packing.schedule import schedule_layer

TQ_DENSE = ("--rows", "4", "--sparsity", "dense", "--mac", "tq", "--weight-terms", "1", "--data-terms", "1",
            "--acc-width", "18")
TQ_COLCOMB = ("--rows", "4", "--cols", "3", "--alpha", "2", "--no-act-signed", "--mac", "tq",
              "--weight-terms", "5", "--data-terms", "2")
# Term-serial: weight_terms x data_terms clocks per vector, one term pair each.
TQ_SERIAL = ("--rows", "4", "--cols", "3", "--alpha", "3", "--mac", "tq-serial", "--weight-terms", "2",
             "--data-terms", "3")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    gen_args: tuple           # arguments of `python -m gen`
    shape: tuple              # layer F x K
    batch: int
    density: float = 0.3
    gamma: float = 0.5
    extreme: str = ""         # "" (random), "min" (most negative x most negative), "max"
    weight_group: int = 1     # --mac tq: the front-end's groups of weights sharing a term budget,
    group_terms: int = 0      # of this many terms (0: weight_group x --weight-terms)
    data: str = "random"      # "random", or "digits": the digits MLP's last layer and its inputs
    slow: bool = False        # Verilator build and runs only with --all / -m slow (the fast set keeps
    big: bool = False         # one design of each kind); a big one is linted only with --all too


CASES = [
    Case("dense_4x4", ("--rows", "4", "--sparsity", "dense"), (4, 4), 6, density=1.0, slow=True),
    Case("colcomb_8x8_a4", ("--rows", "8", "--alpha", "4"), (8, 32), 8, slow=True),
    Case("nonsquare_6x3_a2_unsigned", ("--rows", "6", "--cols", "3", "--alpha", "2", "--no-act-signed"),
         (6, 6), 5, density=0.5, slow=True),
    Case("int4_4x4_a2", ("--rows", "4", "--alpha", "2", "--act-width", "4", "--weight-width", "4",
                         "--acc-width", "12"), (4, 8), 7, density=0.6),
    Case("multitile_4x3_a3_batch_chunks", ("--rows", "4", "--cols", "3", "--alpha", "3", "--max-batch", "4",
                                           "--no-double-buffer"), (10, 40), 9, density=0.3),
    # Full-length accumulation of the most negative products, in the narrowest legal accumulator:
    # 3 group blocks of 4 columns, so the sum wraps modulo 2**18 across tiles.
    Case("extreme_min_4x4_a2_acc18", ("--rows", "4", "--alpha", "2", "--acc-width", "18"), (4, 24), 3,
         density=1.0, gamma=0.0, extreme="min"),
    Case("extreme_max_unsigned_4x4", ("--rows", "4", "--sparsity", "dense", "--no-act-signed",
                                      "--no-weight-signed", "--acc-width", "19"), (8, 12), 4,
         density=1.0, extreme="max"),
    # Exactly what the README's first command generates.
    Case("readme_32x32_a8", ("--rows", "32", "--sparsity", "colcomb"), (40, 300), 40, density=0.1, slow=True,
         big=True),
    # Term quantization. One term per weight and activation in the narrowest accumulator: 127 rounds
    # up to 128 on both sides, so the "max" case reaches the accumulator's bound and wraps across tiles.
    Case("tq_dense_4x4_t1x1_acc18", TQ_DENSE, (6, 10), 6, density=0.7, slow=True),
    Case("tq_extreme_max_dense_4x4_t1x1_acc18", TQ_DENSE, (8, 12), 4, density=1.0, extreme="max", slow=True),
    # A budget of 7 terms per group of 4 weights (1.75 per weight), up to 5 on one weight.
    Case("tq_colcomb_4x3_a2_t5x2_unsigned", TQ_COLCOMB, (9, 20), 7, density=0.5, weight_group=4, group_terms=7),
    # The digits MLP's last layer (64 -> 10) with the activations it sees on test images; 14 terms
    # per group of 8 weights (the paper's 1.75 per weight), 2 per activation.
    Case("tq_digits_colcomb_4x3_a2_t5x2", TQ_COLCOMB, (10, 64), 8, gamma=1.0, weight_group=8, group_terms=14,
         data="digits"),
    # Term-serial cells (one term pair per clock): two row blocks and group blocks, so tiles of
    # 6-clock vectors run back to back and accumulate across tiles; the weights' group budget of 12
    # terms per 8 weights (1.5 per weight, at most 2 kept per weight).
    Case("tq_serial_colcomb_4x3_a3_t2x3", TQ_SERIAL, (7, 24), 6, density=0.6, weight_group=8, group_terms=12),
    # Single-buffered, unsigned activations, one weight term, extreme values wrapping acc 18 bits.
    Case("tq_serial_extreme_max_dense_4x4_t1x2_sb_acc18",
         ("--rows", "4", "--sparsity", "dense", "--mac", "tq-serial", "--weight-terms", "1", "--data-terms", "2",
          "--no-double-buffer", "--acc-width", "18"), (8, 12), 4, density=1.0, extreme="max", slow=True),
]


GENERATED = {}      # case name -> directory: the lint and the Verilator fixtures share one generation


def generate(tmp_path_factory, case):
    if case.name not in GENERATED:
        out = tmp_path_factory.mktemp(case.name)
        assert cli.main([*case.gen_args, "-o", str(out)]) == 0
        GENERATED[case.name] = out
    return GENERATED[case.name]


def params(slow):
    return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if slow(c) else []) for c in CASES]


def digits_layer(batch):
    """The integer weights (10 x 64) and input vectors (batch x 64, unsigned 8-bit) of the last layer
    of the digits MLP, trained and exported to int8 by the front-end."""
    from spec import ArrayConfig
    from software.frontend.intmodel import export_model
    from software.models.digits import build_model, load_digits_split, train
    model = build_model(seed=0)
    train(model, epochs=10, progress=False)
    split = load_digits_split()
    int_model = export_model(model, ArrayConfig(rows=8, cols=8, act_signed=False), split.x_train)
    vectors = int_model.layer_inputs(int_model.quantize_input(split.x_test[:batch]))
    return int_model.layers[-1].weight_matrix, vectors[-1]


def layer_and_inputs(config, case, rng):
    """(packed layer, integer inputs, the weights' terms or None)."""
    F, K = case.shape
    if case.data == "digits":
        w, x = digits_layer(case.batch)
        assert w.shape == (F, K)
    elif case.extreme:
        pick = min if case.extreme == "min" else max
        w = np.full((F, K), pick(config.weight_range), dtype=np.int64)
        x = np.full((case.batch, K), pick(config.act_range), dtype=np.int64)
    else:
        lo, hi = config.weight_range
        w = rng.integers(lo, hi + 1, size=(F, K))
        w[rng.random(w.shape) >= case.density] = 0
        lo, hi = config.act_range
        x = rng.integers(lo, hi + 1, size=(case.batch, K))
    if not config.mac_style.uses_terms:
        return combine(w, config.alpha, case.gamma), x, None
    import torch
    from software.frontend.termquant import weight_terms
    codes = weight_terms(torch.from_numpy(np.asarray(w, np.int64)), group=case.weight_group,
                         budget=case.group_terms or case.weight_group * config.weight_terms,
                         bits=config.weight_width)
    # The array holds weight_terms slots per weight: a weight keeps at most that many of its terms.
    codes = codes.mask(torch.arange(codes.signs.shape[-1]) < config.weight_terms)
    return combine(codes.values().numpy(), config.alpha, case.gamma), x, codes


@pytest.fixture(scope="module", params=params(lambda c: c.slow or c.big))
def design(request, tmp_path_factory):
    case = request.param
    gen_dir = generate(tmp_path_factory, case)
    return case, gen_dir, build(gen_dir)


@pytest.mark.parametrize("case", params(lambda c: c.big))
def test_lint_clean(tmp_path_factory, case):
    """Linting needs no C++ build: every design but the big one is linted in the fast set."""
    verilog, = generate(tmp_path_factory, case).glob("*.v")
    ok, warnings = lint(verilog, verilog.stem)
    assert ok, "\n".join(warnings[:20])


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_rtl_matches_golden(design, stall):
    case, gen_dir, built = design
    config = built.config
    layer, x, terms = layer_and_inputs(config, case, np.random.default_rng(2))
    schedule = schedule_layer(config, layer, x, terms=terms)
    out, run = run_schedule(built, schedule, stall=stall, seed=11, name=f"{case.name}_stall{stall}")
    multiplied = truncate_activations(config, x) if config.mac_style.uses_terms else x
    assert np.array_equal(out, reference_layer(layer.unpack(), multiplied, config.acc_width))
    if stall == 0.0:
        assert run.cycles == layer_cycles(config, schedule.tile_batches)


def test_mid_stream_reset_then_replay_is_exact(design):
    """Reset in the middle of the streams (under stalls), then every stream replayed from its first
    beat: the array must come back clean and produce every result again, bit for bit."""
    case, gen_dir, built = design
    config = built.config
    layer, x, terms = layer_and_inputs(config, case, np.random.default_rng(3))
    schedule = schedule_layer(config, layer, x, terms=terms)
    results = sum(tile.batch for tile in schedule.tiles if tile.emit)
    out, _ = run_schedule(built, schedule, stall=0.2, seed=5, reset_after=max(1, results // 2),
                          name=f"{case.name}_reset")
    multiplied = truncate_activations(config, x) if config.mac_style.uses_terms else x
    assert np.array_equal(out, reference_layer(layer.unpack(), multiplied, config.acc_width))
