"""Sparse progressive distillation on a tiny budget: a few steps on a handful of sentences, with the
real tokenizer and a tiny BERT of the same structure as MiniLM-L6 (2 layers, hidden 64, FFN 256,
random weights) as the teacher: the schedule, the masks, the loss, quantization-aware training and
checkpoints are the ones the real run uses."""

import dataclasses

import numpy as np
import pytest
import torch

from software.distill import spd
from software.frontend.quant import compute_scale
from software.models.minilm import SENTENCES, Encoder, MiniLM
from software.packing.colcomb import pack

# One batch of all the sentences every step; one event at step 0; int8 from step 3 on.
PLAN = spd.Plan(steps=4, batch=8, events=1, prune_until=0.25, qat_from=0.75, sparsity=0.5, lr=1e-4,
                grouping="fewest-empty", max_tokens=24)
SENTENCES_USED = SENTENCES[:8]


@pytest.fixture(scope="module")
def model():
    return MiniLM(max_tokens=PLAN.max_tokens)


def tiny_teacher(model):
    config = dict(model.config, hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=256)
    torch.manual_seed(0)
    return Encoder(config)


@pytest.fixture(scope="module")
def trained(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("spd")
    run = spd.new_run(PLAN, SENTENCES_USED, model=model, teacher=tiny_teacher(model))
    spd.train(run, folder=folder, save_every=1, progress=False)
    return run, folder


def test_schedule():
    plan = spd.Plan(steps=100, events=5, prune_until=0.5, sparsity=0.8, qat_from=0.8)
    assert plan.event_steps() == [0, 10, 20, 30, 40]
    rates = [plan.rate(k) for k in range(1, 6)]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.8)
    assert plan.qat_step == 80 and plan.lr_at(79) == plan.lr and plan.lr_at(90) == pytest.approx(plan.lr / 2)
    for bad in (dict(sparsity=1.0), dict(steps=0), dict(gamma=-1.0), dict(grouping="nope"), dict(qat_from=2.0)):
        with pytest.raises(spd.DistillError):
            spd.Plan(**bad)


def test_batches_depend_on_seed_and_step_only():
    plan = spd.Plan(batch=4)
    first = [spd.batch_order(plan, 10, step).tolist() for step in range(4)]
    assert first == [spd.batch_order(plan, 10, step).tolist() for step in range(4)]
    assert sorted(first[0] + first[1]) == sorted(set(first[0] + first[1]))      # one pass: no repeats


def test_sparsity_is_reached_and_packs_without_loss(trained):
    run, _ = trained
    assert spd.ffn_sparsity(run.student) >= PLAN.sparsity
    for name, module in run.student.ffn_linears().items():
        weight = (module.weight_orig * module.weight_mask).detach().numpy()
        groups = run.groups[name]
        assert all(len(g) <= PLAN.alpha for g in groups)
        # The column-combine mask leaves at most one weight per row and group.
        assert np.array_equal(pack(weight, groups, PLAN.alpha).unpack(), weight)
        assert len(run.kept[name]) == 1 and 0 < run.kept[name][0] <= 1
    assert min(k[0] for k in run.kept.values()) < 1           # conflicts pruned somewhere


def test_distillation_lowers_the_loss(trained):
    run, _ = trained
    losses = [loss for _, loss, _, _ in run.history]
    cosines = [cos for _, _, cos, _ in run.history]
    assert len(losses) == PLAN.steps
    assert losses[2] < losses[0] and cosines[2] > cosines[0]          # before quantization starts


def test_quantization_aware_phase_runs_int8_weights(trained):
    run, _ = trained
    assert run.qat_hooks
    module = run.student.ffn_linears()["encoder.layer.0.intermediate.dense"]
    ids = torch.tensor([[101, 2023, 102]])
    run.student(ids, torch.ones_like(ids, dtype=torch.bool))
    used = module.weight.detach()                      # what the forward pass multiplied by
    scale = compute_scale(module.weight_orig * module.weight_mask, 8, per_channel=True, power_of_two=True)
    q = used / scale[:, None]
    assert torch.equal(q, q.round()) and q.abs().max() <= 127
    assert not used[module.weight_mask == 0].any()        # pruned weights stay pruned


def test_resumed_run_reaches_the_same_state(trained, model, tmp_path):
    run, _ = trained
    half = spd.new_run(PLAN, SENTENCES_USED, model=model, teacher=tiny_teacher(model))
    spd.train(half, until=2, folder=tmp_path, save_every=1, progress=False)
    resumed = spd.resume(tmp_path, SENTENCES_USED, model=model, teacher=tiny_teacher(model))
    assert resumed.step == 2
    spd.train(resumed, folder=tmp_path, save_every=1, progress=False)
    expected, got = run.student.state_dict(), resumed.student.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [h[1] for h in resumed.history] == [h[1] for h in run.history]


def test_snapshots_load_with_their_masks_and_quantization(trained, model):
    run, folder = trained
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "event-1.pt", "final.pt"]
    student, record = spd.load_student(folder / "final.pt", config=run.student.config)
    assert record["qat"] and record["step"] == PLAN.steps
    ids = torch.tensor([[101, 2023, 2003, 102]])
    keep = torch.ones_like(ids, dtype=torch.bool)
    run.student.eval()
    with torch.no_grad():
        assert torch.equal(student(ids, keep)[1], run.student(ids, keep)[1])


def test_replan_must_agree_with_what_already_ran():
    old = spd.Plan(steps=240, events=5, prune_until=0.45)
    spd.check_replan(old, dataclasses.replace(old, steps=150, prune_until=0.7), 20)
    with pytest.raises(spd.DistillError, match="disagree"):
        spd.check_replan(old, dataclasses.replace(old, steps=100), 30)
    with pytest.raises(spd.DistillError, match="cannot change sparsity"):
        spd.check_replan(old, dataclasses.replace(old, sparsity=0.5), 5)
    spd.check_replan(old, dataclasses.replace(old, batch=16, lr=1e-5), 5)     # only future steps change


def test_bad_checkpoint_is_one_line_and_exit_status_2(tmp_path, capsys):
    (tmp_path / spd.CHECKPOINT).write_bytes(b"not a checkpoint")
    assert spd.main(["--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot resume from") and len(err[-1].splitlines()) == 1


def _padded_batch(model):
    from software.models.minilm import batch_ids
    return batch_ids(model, ["A short one.", "This sentence is a good deal longer than the first one is."])


def test_attention_scores_are_the_layers_attention(model):
    teacher = tiny_teacher(model).eval()
    ids, keep = _padded_batch(model)
    assert not keep.all()                               # padded keys and queries present
    scores = spd.AttentionScores(teacher)
    with torch.no_grad():
        states, _ = teacher(ids, keep)
    log_maps = scores.log_maps(keep)
    assert len(log_maps) == len(teacher.encoder["layer"])
    heads = teacher.config["num_attention_heads"]
    for layer, x, log_map in zip(teacher.encoder["layer"], states, log_maps):
        b, n, hidden = x.shape
        q, k, v = (layer.attention["self"][p](x).view(b, n, heads, hidden // heads).transpose(1, 2)
                   for p in ("query", "key", "value"))
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        assert torch.allclose(log_map.exp() @ v, expected, atol=1e-5)
        assert torch.all(log_map.exp()[~keep[:, None, None, :].expand_as(log_map)] == 0)    # padded keys
    scores.remove()
    with torch.no_grad():
        teacher(ids[:1], keep[:1])
    assert scores.log_maps(keep)[0].shape[0] == 2           # hooks removed: nothing recorded since


def test_attention_kl():
    torch.manual_seed(1)
    keep = torch.tensor([[True, True, True], [True, True, False]])
    scores = [torch.randn(2, 2, 3, 3) for _ in range(2)]
    mask = ~keep[:, None, None, :]
    t = [torch.log_softmax(s.masked_fill(mask, -1e9), -1) for s in scores]
    assert spd.attention_kl(t, t, keep) == 0
    s = [torch.log_softmax((x + torch.randn_like(x)).masked_fill(mask, -1e9), -1) for x in scores]
    got = spd.attention_kl(s, t, keep)
    # By hand: each real query row's KL over its real keys, averaged over rows, heads, then layers.
    per_layer = []
    for sl, tl in zip(s, t):
        rows = [(tl[b, h, i, :n].exp() * (tl[b, h, i, :n] - sl[b, h, i, :n])).sum()
                for b, n in ((0, 3), (1, 2)) for h in range(2) for i in range(n)]
        per_layer.append(sum(rows) / len(rows))
    assert got > 0 and torch.isclose(got, sum(per_layer) / 2)
    # What the padded query of sentence 1 sees does not count.
    s2 = [x.clone() for x in s]
    s2[0][1, :, 2] = torch.log_softmax(torch.randn(2, 3), -1)
    assert torch.isclose(spd.attention_kl(s2, t, keep), got)


def test_attention_kl_term_joins_the_loss(model):
    plan = dataclasses.replace(PLAN, steps=2, qat_from=1.0)
    runs = {}
    for weight in (0.0, 1.0):
        run = spd.new_run(dataclasses.replace(plan, attention_kl=weight), SENTENCES_USED, model=model,
                          teacher=tiny_teacher(model))
        runs[weight] = spd.train(run, progress=False)
    # Same state and batch at step 1: the attention term adds a positive KL.
    assert runs[1.0].history[0][1] > runs[0.0].history[0][1]
    assert runs[1.0].history[0][2] == runs[0.0].history[0][2]
    with pytest.raises(spd.DistillError):
        spd.Plan(attention_kl=-1.0)
