"""Term quantization: HESE golden encoding, vectorized encoder, budgets, term pairs, STE."""
import random

import pytest
import torch

from software.frontend.quant import quantize
from software.frontend.termquant import (
    TermCodes,
    activation_terms,
    hese_encode,
    hese_terms,
    max_terms,
    term_fake_quant_activation,
    term_fake_quant_weight,
    term_pairs,
    term_quantize_activations,
    term_quantize_weights,
    truncate_groups,
    weight_terms,
)

BITS = range(4, 9)


def all_values(bits):
    """Every signed and unsigned `bits`-bit value: -(2**bits - 1) .. 2**bits - 1 covers both."""
    return range(-(2**bits) + 1, 2**bits)


def value_of(terms):
    return sum(sign * 2**exponent for sign, exponent in terms)


def runs_reference(v: int) -> list[tuple[int, int]]:
    """Independent HESE model from the run view: a run of ones t..u (t > u) becomes
    +2**(t+1) - 2**u, a single one at i becomes +2**i; negatives flip signs."""
    sign = -1 if v < 0 else 1
    magnitude, terms, i = abs(v), [], 0
    while magnitude >> i:
        if not (magnitude >> i) & 1:
            i += 1
            continue
        bottom = i
        while (magnitude >> i) & 1:
            i += 1
        top = i - 1
        terms += [(sign, top)] if top == bottom else [(-sign, bottom), (sign, top + 1)]
    return sorted(terms, key=lambda t: -t[1])


@pytest.mark.parametrize("bits", BITS)
def test_hese_terms_sum_to_value_for_all_values(bits):
    for v in all_values(bits):
        terms = hese_terms(v, bits)
        assert value_of(terms) == v, v


@pytest.mark.parametrize("bits", BITS)
def test_hese_terms_structure_and_count_bound(bits):
    most = 0
    for v in all_values(bits):
        terms = hese_terms(v, bits)
        exponents = [e for _, e in terms]
        assert exponents == sorted(exponents, reverse=True) and len(set(exponents)) == len(exponents)
        assert all(sign in (-1, 1) for sign, _ in terms)
        assert all(0 <= e <= bits for e in exponents)
        assert len(terms) <= bin(abs(v)).count("1"), "never more terms than binary ones"
        assert len(terms) <= max_terms(bits)
        most = max(most, len(terms))
    assert most == max_terms(bits) == 2 * (bits + 1) // 3, "the bound is tight"


def test_hese_terms_follow_the_run_rule_for_all_8_bit_values():
    for v in all_values(8):
        assert hese_terms(v, 8) == runs_reference(v), v


def test_hese_known_encodings():
    assert hese_terms(0, 8) == []
    assert hese_terms(5, 4) == [(1, 2), (1, 0)]  # 0101: 010 windows
    assert hese_terms(7, 4) == [(1, 3), (-1, 0)]  # 0111: 011 then 110
    assert hese_terms(-7, 4) == [(-1, 3), (1, 0)]
    assert hese_terms(6, 4) == [(1, 3), (-1, 1)]
    assert hese_terms(127, 8) == [(1, 7), (-1, 0)]
    assert hese_terms(255, 8) == [(1, 8), (-1, 0)]  # bits above the MSB read as 0
    assert hese_terms(219, 8) == [(1, 8), (-1, 6), (1, 5), (-1, 3), (1, 2), (-1, 0)]
    assert hese_terms(-128, 8) == [(-1, 7)]


def test_hese_terms_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\|16\| does not fit in 4 bits"):
        hese_terms(16, 4)
    with pytest.raises(ValueError, match="does not fit"):
        hese_terms(-16, 4)
    with pytest.raises(ValueError, match="bits must be at least 1"):
        hese_terms(1, 0)


@pytest.mark.parametrize("bits", BITS)
def test_vectorized_encoder_matches_golden(bits):
    values = torch.tensor(list(all_values(bits)))
    codes = hese_encode(values, bits)
    assert codes.signs.shape == (len(values), max_terms(bits))
    assert torch.equal(codes.values(), values)
    for v, signs, exponents in zip(values.tolist(), codes.signs.tolist(), codes.exponents.tolist()):
        golden = hese_terms(v, bits)
        assert [(s, e) for s, e in zip(signs, exponents) if s != 0] == golden
        assert signs[len(golden):] == [0] * (len(signs) - len(golden)), "terms are packed first"


def test_wide_values_use_the_bit_serial_path_and_match_golden():
    rng = random.Random(5)
    values = [rng.randint(-(2**20) + 1, 2**20 - 1) for _ in range(300)] + [2**20 - 1, -(2**19), 0]
    codes = hese_encode(torch.tensor(values), 20)
    assert codes.signs.shape[-1] == max_terms(20) == 14
    for v, signs, exponents in zip(values, codes.signs.tolist(), codes.exponents.tolist()):
        assert [(s, e) for s, e in zip(signs, exponents) if s != 0] == hese_terms(v, 20)


def test_vectorized_encoder_validates_input():
    with pytest.raises(ValueError, match="integer tensor"):
        hese_encode(torch.tensor([1.0]), 8)
    with pytest.raises(ValueError, match="magnitude >= 2\\*\\*4"):
        hese_encode(torch.tensor([3, -16]), 4)


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_per_value_budget_keeps_largest_terms(budget):
    values = torch.tensor(list(all_values(8)))
    truncated = term_quantize_activations(values, budget, 8)
    for v, t in zip(values.tolist(), truncated.tolist()):
        terms = hese_terms(v, 8)
        assert t == value_of(terms[:budget])
        kept, dropped = terms[:budget], terms[budget:]
        if kept and dropped:
            assert min(e for _, e in kept) > max(e for _, e in dropped)
    assert bool((activation_terms(values, budget, 8).counts() <= budget).all())


def reference_group_budget(row: list[int], group: int, budget: int, bits: int) -> list[int]:
    """Literal rule: per group, `budget` times take the largest remaining term, ties to lower index."""
    out = []
    for start in range(0, len(row), group):
        values = row[start:start + group]
        remaining = [list(hese_terms(v, bits)) for v in values]
        kept = [[] for _ in values]
        for _ in range(budget):
            candidates = [(-terms[0][1], i) for i, terms in enumerate(remaining) if terms]
            if not candidates:
                break
            _, i = min(candidates)
            kept[i].append(remaining[i].pop(0))
        out += [value_of(k) for k in kept]
    return out


@pytest.mark.parametrize("group, budget, length", [(8, 14, 32), (4, 3, 16), (3, 5, 10), (1, 2, 7), (16, 1, 20)])
def test_group_budget_matches_literal_rule(group, budget, length):
    rng = random.Random(group * 100 + budget)
    w = torch.tensor([[rng.randint(-127, 127) for _ in range(length)] for _ in range(6)])
    got = term_quantize_weights(w, group, budget, 8)
    assert got.shape == w.shape
    for row, got_row in zip(w.tolist(), got.tolist()):
        assert got_row == reference_group_budget(row, group, budget, 8)
    counts = weight_terms(w, group, budget, 8).counts()
    padded = torch.nn.functional.pad(counts, (0, -length % group))
    assert bool((padded.reshape(6, -1, group).sum(-1) <= budget).all())


def test_group_budget_tie_breaking():
    # Four equal values 1 (= +2^0): budget 2 goes to the two lowest indices.
    assert term_quantize_weights(torch.tensor([[1, 1, 1, 1]]), 4, 2).tolist() == [[1, 1, 0, 0]]
    # 3 = +4 -1 and 4 = +4: the +4 terms tie, index 0 wins the first pick.
    pair = torch.tensor([[3, 4]])
    assert term_quantize_weights(pair, 2, 1).tolist() == [[4, 0]]
    assert term_quantize_weights(pair, 2, 2).tolist() == [[4, 4]]
    assert term_quantize_weights(pair, 2, 3).tolist() == [[3, 4]]
    # A larger term at a higher index beats a smaller one at a lower index.
    assert term_quantize_weights(torch.tensor([[1, 8]]), 2, 1).tolist() == [[0, 8]]
    # Signs follow the values.
    assert term_quantize_weights(torch.tensor([[-3, 4]]), 2, 1).tolist() == [[-4, 0]]


def test_group_budget_on_conv_weight_groups_flattened_input():
    torch.manual_seed(0)
    w = torch.randint(-127, 128, (4, 3, 3, 3))
    got = term_quantize_weights(w, 8, 10)
    assert torch.equal(got, term_quantize_weights(w.reshape(4, -1), 8, 10).reshape(w.shape))


def test_generous_budget_is_lossless():
    w = torch.randint(-127, 128, (5, 16), generator=torch.Generator().manual_seed(1))
    assert torch.equal(term_quantize_weights(w, 4, 4 * max_terms(8)), w)
    assert torch.equal(term_quantize_activations(w, max_terms(8)), w)


def test_truncate_groups_validation():
    codes = hese_encode(torch.tensor([[1, 2]]), 4)
    with pytest.raises(ValueError, match="group must be at least 1"):
        truncate_groups(codes, 0, 1)
    with pytest.raises(ValueError, match="budget must be at least 1"):
        truncate_groups(codes, 2, 0)
    with pytest.raises(ValueError, match="same shape"):
        TermCodes(torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 2, dtype=torch.int8))


def test_term_pairs_counts_weight_times_data_terms():
    w_counts = torch.tensor([[1, 2, 0], [3, 1, 1]])
    x_counts = torch.tensor([[2, 1, 4], [1, 0, 1]])
    brute = sum(
        int(w_counts[f, k]) * int(x_counts[n, k]) for n in range(2) for f in range(2) for k in range(3)
    )
    assert term_pairs(w_counts, x_counts) == brute == 4 * 3 + 3 * 1 + 1 * 5
    macs = 7 * 5 * 11  # uniform budgets: MACs x weight terms x data terms
    assert term_pairs(torch.full((5, 11), 2), torch.full((7, 11), 3)) == macs * 2 * 3
    assert term_pairs(torch.ones(2, 3), torch.ones(3)) == 6
    with pytest.raises(ValueError, match="must share K"):
        term_pairs(torch.ones(2, 3), torch.ones(4, 2))


def test_term_fake_quant_forward_and_straight_through_gradient():
    torch.manual_seed(2)
    w = (torch.randn(4, 16) * 0.5).requires_grad_()
    scale = torch.full((4,), 0.01)  # clips |w| > 1.27
    y = term_fake_quant_weight(w, scale, 8, group=8, budget=6)
    expected = term_quantize_weights(quantize(w.detach(), scale, 8), 8, 6).float() * scale[:, None]
    assert torch.equal(y.detach(), expected)
    y.sum().backward()
    inside = (w.detach().abs() <= 1.27).float()
    assert torch.equal(w.grad, inside)
    assert 0 < int(inside.sum()) < inside.numel()

    x = torch.tensor([[0.0, 0.07, 0.5, 3.0]], requires_grad=True)
    y = term_fake_quant_activation(x, 0.01, 8, budget=1)  # unsigned: 0..2.55
    # 7 = +8 -1 keeps +8; 50 = +64 -16 +2 keeps +64; 3.0 clips to 255 = +256 -1 keeps +256.
    assert y.detach()[0].tolist() == pytest.approx([0.0, 0.08, 0.64, 2.56])
    y.sum().backward()
    assert x.grad.tolist() == [[1, 1, 1, 0]]
