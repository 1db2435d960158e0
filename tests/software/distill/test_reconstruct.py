"""Least-squares reconstruction of column-combined matrices: the per-row solve against a brute-force
least squares, the OBS saliency against its definition, the mask's column-combining shape, and the
whole layer-by-layer pass on a tiny BERT (random weights, the real tokenizer)."""

import numpy as np
import pytest
import torch

from software.distill import reconstruct as rc
from software.distill import spd
from software.models.minilm import SENTENCES, Encoder, MiniLM
from software.packing.colcomb import pack


def correlated_inputs(n, k, seed):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(k, k)) * 0.5 + np.eye(k)
    return rng.normal(size=(n, k)) @ mixing


def brute_force_row(x_s, x_t, w, kept, lam):
    """argmin ||x_s[:, S] v - x_t w||^2 + lam ||v - w_S||^2 by an augmented least-squares problem."""
    a = np.vstack([x_s[:, kept], np.sqrt(lam) * np.eye(len(kept))])
    b = np.concatenate([x_t @ w, np.sqrt(lam) * w[kept]])
    return np.linalg.lstsq(a, b, rcond=None)[0]


@pytest.mark.parametrize("teacher_target", [False, True])
def test_refit_is_the_per_row_least_squares_solution(teacher_target):
    rng = np.random.default_rng(1)
    f, k, n = 9, 12, 200
    x_s = correlated_inputs(n, k, 2)
    x_t = x_s + 0.3 * rng.normal(size=x_s.shape) if teacher_target else x_s
    w = rng.normal(size=(f, k))
    mask = rng.random((f, k)) < 0.4
    mask[0] = False                     # a row that keeps nothing
    mask[1] = True                      # and one that keeps everything
    h, c = x_s.T @ x_s, x_s.T @ x_t
    damp = 0.01
    new = rc.refit(w, mask, torch.from_numpy(h), cross=torch.from_numpy(c), damp=damp, rows_per_solve=4).numpy()
    lam = damp * np.diag(h).mean()
    assert np.all(new[~mask] == 0)
    for r in range(f):
        kept = np.nonzero(mask[r])[0]
        if len(kept):
            np.testing.assert_allclose(new[r, kept], brute_force_row(x_s, x_t, w[r], kept, lam), rtol=1e-7, atol=1e-9)
    error = lambda v: np.sum((x_s @ v.T - x_t @ w.T) ** 2)
    assert error(new) < 0.8 * error(w * mask)
    # The second-moment form of the error agrees with the direct one.
    assert rc.reconstruction_error(w, new, torch.from_numpy(h), torch.from_numpy(c),
                                   torch.from_numpy(x_t.T @ x_t)) == pytest.approx(error(new), rel=1e-9)


def test_refit_of_a_full_mask_reproduces_and_a_huge_damp_keeps_the_original():
    rng = np.random.default_rng(3)
    x = correlated_inputs(100, 8, 4)
    w = rng.normal(size=(5, 8))
    h = torch.from_numpy(x.T @ x)
    np.testing.assert_allclose(rc.refit(w, np.ones_like(w, bool), h).numpy(), w, rtol=1e-9)
    mask = rng.random(w.shape) < 0.5
    np.testing.assert_allclose(rc.refit(w, mask, h, damp=1e9).numpy(), w * mask, atol=1e-6)


def test_obs_saliency_is_the_error_of_pruning_one_weight_with_compensation():
    rng = np.random.default_rng(5)
    k, damp = 7, 0.05
    x = correlated_inputs(60, k, 6)
    w = rng.normal(size=(1, k))
    h = torch.from_numpy(x.T @ x)
    hd = rc.damped(h, damp).numpy()
    saliency = rc.obs_saliency(w, h, damp).numpy()[0]
    for j in range(k):
        kept = [c for c in range(k) if c != j]
        # The optimal change of the other weights when w_j goes to 0, in the damped quadratic.
        v = np.zeros(k)
        v[kept] = np.linalg.solve(hd[np.ix_(kept, kept)], hd[kept] @ w[0])
        d = v - w[0]
        assert d @ hd @ d == pytest.approx(saliency[j], rel=1e-8)


@pytest.mark.parametrize("fill", [False, True])
def test_choose_mask_keeps_one_weight_per_row_and_group(fill):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(24, 32))
    groups, mask = rc.choose_mask(w, np.abs(w), 0.6, 4, 0.5, "best", fill)
    assert sorted(c for g in groups for c in g) == list(range(32)) and max(map(len, groups)) <= 4
    per_cell = np.stack([mask[:, g].sum(axis=1) for g in groups], axis=1)
    assert per_cell.max() == 1
    if fill:
        assert per_cell.min() == 1          # every (row, group) cell holds a weight
        assert mask.sum() > rc.choose_mask(w, np.abs(w), 0.6, 4, 0.5, "best", False)[1].sum()
    packing = pack(np.where(mask, w, 0), groups, 4)
    assert np.array_equal(packing.unpack(), np.where(mask, w, 0))   # the grouping holds every kept weight


@pytest.fixture(scope="module")
def model():
    return MiniLM(max_tokens=24)


def tiny_teacher(model):
    config = dict(model.config, hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=256)
    torch.manual_seed(0)
    return Encoder(config).eval()


@pytest.mark.parametrize("dense", [False, True])
def test_reconstruct_brings_a_tiny_bert_closer_than_the_same_mask_alone(model, tmp_path, dense):
    teacher = tiny_teacher(model)
    batches = rc.calibration_batches(model, list(SENTENCES), batch=8)
    settings = rc.Settings(rate=0.6, alpha=4, calibration=len(SENTENCES), max_tokens=24, dense=dense)
    import copy
    student = copy.deepcopy(teacher)
    spd._prepare_masks(student)
    groups, report = rc.reconstruct(student, teacher, batches, settings)
    masked_only = copy.deepcopy(teacher)
    spd._prepare_masks(masked_only)
    for name, module in student.ffn_linears().items():
        original = teacher.ffn_linears()[name].weight.detach().numpy()
        mask = module.weight_mask.numpy().astype(bool)
        weight = (module.weight_orig * module.weight_mask).detach().numpy()
        assert np.all(weight[~mask] == 0) and not np.array_equal(weight[mask], original[mask])
        assert np.array_equal(pack(weight, groups[name], 4).unpack(), weight)
        assert report[name]["error_refit"] < report[name]["error_masked"]
        with torch.no_grad():
            masked_only.ffn_linears()[name].weight_mask.copy_(module.weight_mask)
    ids, keep = batches[0]
    with torch.no_grad():
        dense_emb, refit_emb, masked_emb = (m(ids, keep)[1] for m in (teacher, student, masked_only))
    refit_cos, masked_cos = ((dense_emb * e).sum(-1).mean() for e in (refit_emb, masked_emb))
    assert refit_cos > masked_cos and refit_cos > 0.9
    query = "encoder.layer.1.attention.self.query"
    assert (query in report) == dense
    if dense:      # the original weights on the drifted inputs, against the refit ones
        assert report[query]["error_refit"] < report[query]["error_masked"]
    changed = not torch.equal(student.encoder["layer"][1].attention["self"]["query"].weight,
                              teacher.encoder["layer"][1].attention["self"]["query"].weight)
    assert changed == dense
    # The saved file loads as a student (for the benchmark and for spd --init).
    rc.save(tmp_path / "s.pt", student, groups, settings, report)
    loaded, record = spd.load_student(tmp_path / "s.pt", config=teacher.config)
    with torch.no_grad():
        assert torch.equal(loaded(ids, keep)[1], refit_emb)
    assert record["groups"] == groups


def test_cli_rejects_bad_options_with_status_2(capsys, tmp_path):
    assert rc.main(["--out", str(tmp_path / "x.pt"), "--rate", "1.5"]) == 2
    assert rc.main(["--out", str(tmp_path / "x.pt"), "--score", "random"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


def test_spd_fine_tunes_a_reconstructed_student_without_changing_its_mask(model, tmp_path):
    import copy
    teacher = tiny_teacher(model)
    settings = rc.Settings(rate=0.6, alpha=4, calibration=8, max_tokens=24)
    student = copy.deepcopy(teacher)
    spd._prepare_masks(student)
    groups, report = rc.reconstruct(student, teacher, rc.calibration_batches(model, list(SENTENCES[:8])), settings)
    rc.save(tmp_path / "s.pt", student, groups, settings, report)
    plan = spd.Plan(steps=3, batch=8, events=0, qat_from=1.0, lr=1e-3, max_tokens=24)
    run = spd.new_run(plan, SENTENCES[:8], model=model, teacher=teacher, init=tmp_path / "s.pt")
    spd.train(run, progress=False)
    for name, module in run.student.ffn_linears().items():
        assert torch.equal(module.weight_mask, student.ffn_linears()[name].weight_mask)
        assert not torch.equal(module.weight_orig, student.ffn_linears()[name].weight_orig)     # it trained
    assert run.groups == groups and run.step == 3
    with pytest.raises(spd.DistillError):
        spd.new_run(plan, SENTENCES[:8], model=model, teacher=teacher, init=tmp_path / "missing.pt")


def test_output_matrices_can_have_their_own_rate(model):
    settings = rc.Settings(rate=0.5, output_rate=0.8)
    assert settings.rate_of("encoder.layer.3.output.dense") == 0.8
    assert settings.rate_of("encoder.layer.3.intermediate.dense") == 0.5
    assert settings.rate_of("encoder.layer.3.attention.output.dense") == 0.5
    assert rc.Settings(rate=0.5).rate_of("encoder.layer.3.output.dense") == 0.5
    with pytest.raises(rc.ReconstructError):
        rc.Settings(output_rate=1.0)
    teacher = tiny_teacher(model)
    batches = rc.calibration_batches(model, list(SENTENCES[:8]))
    widths = []
    for output_rate in (None, 0.9):
        import copy
        student = copy.deepcopy(teacher)
        spd._prepare_masks(student)
        groups, _ = rc.reconstruct(student, teacher, batches, rc.Settings(rate=0.5, output_rate=output_rate, alpha=8))
        widths.append({name: len(g) for name, g in groups.items()})
    for name in widths[0]:
        if name.endswith("intermediate.dense"):
            assert widths[0][name] == widths[1][name]
        else:
            assert widths[1][name] < widths[0][name]       # pruned harder before grouping: fewer groups
