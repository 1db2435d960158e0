"""Sparse progressive distillation (SPD) of MiniLM-L6 onto a column-combining array.

Teacher: the dense pretrained model (frozen). Student: the same model whose 12 FFN matrices are
pruned and column-combined in `events` pruning events spread over the first `prune_until` of the
steps; event k (1-based) magnitude-prunes every FFN matrix to sparsity
``sparsity * (1 - (1 - k / events)**3)`` (the cubic schedule of DESIGN.md §2), groups its columns
(software.packing.colcomb.group_columns: alpha, gamma) and applies the column-combine mask (one
weight per row and group), through torch.nn.utils.prune (masks AND across events). Between events
the student recovers by distillation; from `qat_from` of the steps on, the FFN matrices run
int8 quantization-aware (fake-quant with a straight-through estimator: weights per output channel,
their inputs per tensor, power-of-two scales as the integer export uses).

Loss: mean over the 7 hidden states (embedding output and each layer's output) of the MSE to the
teacher's, on real tokens only, plus ||e_s - e_t||^2 = 2 (1 - cos) of the L2-normalized sentence
embeddings, plus (with `attention_kl` > 0, off by default) that weight times the KL divergence
KL(teacher || student) of every layer's and head's attention map (softmax of q k^T / sqrt(d) over
the real tokens), averaged over layers, heads and real query tokens (the attention transfer of
MiniLM / SPD). The word, position and type embeddings stay frozen (they are not on the array and
hold half the parameters); everything else trains (AdamW; the learning rate decays linearly to 0
over the quantization-aware phase).

Checkpoints (`checkpoint.pt` in the output folder, every `save_every` steps and at the end):
torch.save of plain data (state dicts, optimizer state, step, groupings, history) loaded back
with torch.load(weights_only=True); a run resumes where it stopped and reaches the same state as
an uninterrupted one. After the recovery that follows each event, the student is saved as
`event-K.pt`; the last state as `final.pt` (both weights only): the points of the curve.

    python -m software.distill.spd --out runs/minilm --steps 320       # resumes if runs/minilm has a checkpoint
    python -m software.distill.spd --out runs/minilm --steps 160 --prune-until 0.65 --replan   # new budget
    python -m software.distill.spd --out runs/ft --init refit-71.pt --events 0 --steps 500   # fine-tune a fixed mask
"""

import argparse
import dataclasses
import io
import math
import pathlib
import pickle
import sys
import time

import numpy as np
import torch

from software.frontend.pruning import apply_mask, magnitude_prune
from software.frontend.quant import fake_quant_tensor
from software.output_set import write_atomically
from software.packing.colcomb import GROUPINGS, group_columns, kept_fraction, pack

CHECKPOINT = "checkpoint.pt"


class DistillError(ValueError):
    """Bad options or files; one line."""


@dataclasses.dataclass(frozen=True)
class Plan:
    steps: int = 320
    batch: int = 32
    events: int = 6
    prune_until: float = 0.45       # the last event runs before this fraction of the steps
    qat_from: float = 0.8           # int8 fake-quant from this fraction of the steps on
    sparsity: float = 0.8           # magnitude sparsity of each FFN matrix at the last event
    alpha: int = 8
    gamma: float = 0.5
    grouping: str = "best"          # software.packing.colcomb.GROUPINGS
    lr: float = 1e-4
    max_tokens: int = 48
    seed: int = 0
    weight_bits: int = 8
    attention_kl: float = 0.0       # weight of the attention-map KL term of the loss (0: off)

    def __post_init__(self):
        for name in ("steps", "batch", "alpha", "max_tokens", "weight_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise DistillError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.events, int) or self.events < 0:
            raise DistillError(f"events must be a non-negative integer, not {self.events!r}")
        for name in ("prune_until", "qat_from", "sparsity"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise DistillError(f"{name} must be in [0, 1], not {value!r}")
        if self.sparsity >= 1:
            raise DistillError("sparsity must be below 1")
        if not (self.gamma >= 0 and math.isfinite(self.gamma)):
            raise DistillError(f"gamma must be a non-negative number, not {self.gamma!r}")
        if self.grouping not in GROUPINGS:
            raise DistillError(f"unknown grouping {self.grouping!r}; known: {', '.join(GROUPINGS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise DistillError(f"lr must be a positive number, not {self.lr!r}")
        if not (self.attention_kl >= 0 and math.isfinite(self.attention_kl)):
            raise DistillError(f"attention_kl must be a non-negative number, not {self.attention_kl!r}")

    def event_steps(self):
        """Step at whose start each event k = 1..events runs (the first at step 0)."""
        last = self.prune_until * self.steps
        return [math.floor((k - 1) * last / self.events) for k in range(1, self.events + 1)]

    def rate(self, k):
        return self.sparsity * (1.0 - (1.0 - k / self.events) ** 3)

    @property
    def qat_step(self):
        return math.ceil(self.qat_from * self.steps)

    def lr_at(self, step):
        if step < self.qat_step:
            return self.lr
        return self.lr * (self.steps - step) / max(1, self.steps - self.qat_step)


def batch_order(plan, n_sentences, step):
    """Indices of the training sentences of `step`: a fixed shuffle per pass, from the seed and step
    alone (so a resumed run sees the same batches)."""
    per_pass = max(1, n_sentences // plan.batch)
    pass_index, position = divmod(step, per_pass)
    order = np.random.default_rng([plan.seed, pass_index]).permutation(n_sentences)
    return order[position * plan.batch:(position + 1) * plan.batch]


def _quantize_ffn_inputs_and_weights(bits):
    def hook(module, args):
        # torch.nn.utils.prune's pre-hook (registered earlier) has just set module.weight = orig * mask.
        module.weight = fake_quant_tensor(module.weight, bits, per_channel=True, power_of_two=True)
        return (fake_quant_tensor(args[0], bits, power_of_two=True),)
    return hook


def enable_qat(student, bits):
    return [m.register_forward_pre_hook(_quantize_ffn_inputs_and_weights(bits)) for m in student.ffn_linears().values()]


def ffn_sparsity(student):
    zeros = total = 0
    for module in student.ffn_linears().values():
        weight = module.weight_orig * module.weight_mask if hasattr(module, "weight_mask") else module.weight
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total


def column_combine(student, sparsity, alpha, gamma, grouping="best"):
    """Magnitude-prune every FFN matrix to `sparsity`, group its columns and apply the column-combine
    mask (one weight per row and group). Returns {name: (grouping, fraction of nonzeros kept)}."""
    out = {}
    for name, module in student.ffn_linears().items():
        magnitude_prune(module, sparsity)
        weight = (module.weight_orig * module.weight_mask).detach().numpy()
        groups = group_columns(weight, alpha, gamma, grouping=grouping)
        packing = pack(weight, groups, alpha)
        apply_mask(module, torch.from_numpy(packing.mask.astype(np.float32)))
        out[name] = (groups, kept_fraction(weight, packing))
    return out


def prune_event(student, plan, k):
    """Event k of the plan (see the module docstring)."""
    return column_combine(student, plan.rate(k), plan.alpha, plan.gamma, plan.grouping)


def masked_states_mse(student_states, teacher_states, keep):
    weights = keep.to(student_states[0].dtype).unsqueeze(-1)
    count = weights.sum() * student_states[0].shape[-1]
    return sum(((s - t) ** 2 * weights).sum() / count for s, t in zip(student_states, teacher_states)) / len(student_states)


def distillation_loss(student_out, teacher_out, keep):
    (s_states, s_emb), (t_states, t_emb) = student_out, teacher_out
    hidden = masked_states_mse(s_states, t_states, keep)
    cosine = (s_emb * t_emb).sum(dim=-1)
    return hidden + 2 * (1 - cosine).mean(), cosine.mean()


class AttentionScores:
    """Forward hooks on every layer's query and key linears of an Encoder, so that after a forward
    pass `log_maps(keep)` gives each layer's attention log-probabilities (B x heads x n x n, the
    softmax of q k^T / sqrt(d) over the real keys), as the layer's scaled_dot_product_attention
    computes them. The model itself is not changed; `remove()` takes the hooks off."""

    def __init__(self, encoder):
        self.heads = encoder.config["num_attention_heads"]
        self.layers = len(encoder.encoder["layer"])
        self.outputs = {}
        self.handles = []
        for i, layer in enumerate(encoder.encoder["layer"]):
            for part in ("query", "key"):
                self.handles.append(layer.attention["self"][part].register_forward_hook(self._record(i, part)))

    def _record(self, layer, part):
        def hook(module, args, output):
            self.outputs[layer, part] = output
        return hook

    def log_maps(self, keep):
        out = []
        for layer in range(self.layers):
            q, k = self.outputs[layer, "query"], self.outputs[layer, "key"]
            b, n, hidden = q.shape
            q, k = (t.view(b, n, self.heads, hidden // self.heads).transpose(1, 2) for t in (q, k))
            scores = q @ k.transpose(-1, -2) / math.sqrt(hidden // self.heads)
            # A large finite negative (not -inf): padded keys get probability exactly 0 and a finite log.
            scores = scores.masked_fill(~keep[:, None, None, :], -1e9)
            out.append(torch.log_softmax(scores, dim=-1))
        return out

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []


def attention_kl(student_log_maps, teacher_log_maps, keep):
    """KL(teacher || student) of the attention distributions, summed over the keys, averaged over
    the layers, heads and real query tokens (padded queries and keys count for nothing)."""
    weights = keep.to(student_log_maps[0].dtype)[:, None, :]           # B x 1 x n (queries)
    total = 0
    for s, t in zip(student_log_maps, teacher_log_maps):
        kl = (t.exp() * (t - s)).sum(dim=-1)                            # B x heads x n
        total = total + (kl * weights).sum() / (weights.sum() * kl.shape[1])
    return total / len(student_log_maps)


@dataclasses.dataclass
class Run:
    """A distillation in progress: plan, models, optimizer and what has happened so far."""

    plan: Plan
    tokenizer: object           # a software.models.minilm.MiniLM (for its tokenizer)
    teacher: torch.nn.Module
    student: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sentences: tuple
    step: int = 0
    groups: dict = dataclasses.field(default_factory=dict)      # FFN name -> last event's grouping
    kept: dict = dataclasses.field(default_factory=dict)        # FFN name -> kept fraction per event
    history: list = dataclasses.field(default_factory=list)     # (step, loss, cosine, sparsity)
    qat_hooks: list = dataclasses.field(default_factory=list)
    attention: tuple = ()       # (student, teacher) AttentionScores while attention_kl > 0

    def state(self):
        return {"plan": dataclasses.asdict(self.plan), "step": self.step,
                "student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                "groups": self.groups, "kept": self.kept, "history": self.history}


def _trainable(student):
    return [p for name, p in student.named_parameters() if not name.startswith("embeddings.")]


def _prepare_masks(student):
    """Identity masks on the FFN matrices, so that a pruned state dict (weight_orig, weight_mask) loads."""
    for module in student.ffn_linears().values():
        if not hasattr(module, "weight_mask"):
            apply_mask(module, torch.ones_like(module.weight))


def new_run(plan, sentences, *, model=None, teacher=None, init=None):
    """A run from step 0. `model` (a MiniLM) gives the tokenizer and, unless `teacher` (an Encoder)
    is given, the pretrained weights; the student starts as a copy of the teacher, or with `init`
    (a student file: event-K.pt, or software.distill.reconstruct's output) as that student, its
    masks and groupings (plan.events = 0 then keeps them: a fine-tune without pruning events)."""
    import copy
    from software.models.minilm import Encoder, MiniLM
    model = model or MiniLM(max_tokens=plan.max_tokens)
    teacher = (teacher or Encoder.pretrained(model)).eval()
    student = copy.deepcopy(teacher).train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    for p in student.embeddings.parameters():
        p.requires_grad_(False)
    _prepare_masks(student)
    groups = {}
    if init is not None:
        record = _read_student(init)
        student.load_state_dict(record["student"])
        groups = dict(record["groups"])
    optimizer = torch.optim.AdamW(_trainable(student), lr=plan.lr, weight_decay=0.0)
    return Run(plan=plan, tokenizer=model, teacher=teacher, student=student, optimizer=optimizer,
               sentences=tuple(sentences), groups=groups)


def _torch_save_atomically(obj, path):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomically(path, buffer.getvalue())


def save_checkpoint(run, folder):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _torch_save_atomically(run.state(), folder / CHECKPOINT)


def save_student(run, path):
    _torch_save_atomically({"student": run.student.state_dict(), "step": run.step, "groups": run.groups,
                            "plan": dataclasses.asdict(run.plan), "qat": run.step > run.plan.qat_step}, path)


def check_replan(old, new, step):
    """A new plan for a run at `step` must agree with the old one on everything that already happened."""
    # Batch, learning rate, length and token limit only shape the steps still to come.
    fixed = ("events", "sparsity", "alpha", "gamma", "grouping", "seed", "weight_bits")
    changed = [name for name in fixed if getattr(old, name) != getattr(new, name)]
    if changed:
        raise DistillError(f"a resumed run cannot change {', '.join(changed)}")
    done_old = [s for s in old.event_steps() if s < step]
    done_new = [s for s in new.event_steps() if s < step]
    if done_old != done_new:
        raise DistillError(f"at step {step} the new plan's events {new.event_steps()} disagree with the "
                           f"ones already run {done_old}")
    if (step > old.qat_step) != (step > new.qat_step) or new.steps < step:
        raise DistillError(f"at step {step} the new plan disagrees on the quantization-aware phase or length")


def read_checkpoint(folder):
    """(state, plan) of `folder`'s checkpoint, read with weights_only=True; DistillError if unreadable."""
    path = pathlib.Path(folder) / CHECKPOINT
    try:
        state = torch.load(path, weights_only=True)
        return state, Plan(**state["plan"])
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise DistillError(f"cannot resume from {path}: {str(error).splitlines()[0]}") from None


def resume(folder, sentences, *, model=None, replan=None, teacher=None):
    """The run saved in `folder` (its plan comes from the checkpoint, or `replan` if it agrees with
    the steps already run: a longer or shorter budget)."""
    state, plan = read_checkpoint(folder)
    if replan is not None and replan != plan:
        check_replan(plan, replan, state["step"])
        plan = replan
    run = new_run(plan, sentences, model=model, teacher=teacher)
    run.student.load_state_dict(state["student"])
    if state["step"] >= plan.qat_step:
        run.qat_hooks = enable_qat(run.student, plan.weight_bits)
    run.optimizer.load_state_dict(state["optimizer"])
    run.step, run.groups, run.kept, run.history = state["step"], state["groups"], state["kept"], state["history"]
    return run


def train(run, *, until=None, folder=None, save_every=20, progress=True):
    """Run steps from run.step up to `until` (default: all); checkpoints into `folder` if given."""
    from tqdm.auto import tqdm
    from software.models.minilm import batch_ids
    plan = run.plan
    until = plan.steps if until is None else min(until, plan.steps)
    events = plan.event_steps()
    if folder is not None:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(run.step, until), initial=run.step, total=plan.steps, desc="spd", unit="step",
               disable=not progress, dynamic_ncols=True)
    if plan.attention_kl > 0 and not run.attention:
        run.attention = (AttentionScores(run.student), AttentionScores(run.teacher))
    for step in bar:
        if step in events:
            k = events.index(step) + 1
            if k > 1 and folder is not None:
                save_student(run, pathlib.Path(folder) / f"event-{k - 1}.pt")
            for name, (groups, kept) in prune_event(run.student, plan, k).items():
                run.groups[name] = groups
                run.kept.setdefault(name, []).append(kept)
            # Pruned weights keep their Adam moments; they are masked, so they never act again.
        if step == plan.qat_step and not run.qat_hooks:
            if folder is not None:
                save_student(run, pathlib.Path(folder) / f"event-{plan.events}.pt")
            run.qat_hooks = enable_qat(run.student, plan.weight_bits)
        for group in run.optimizer.param_groups:
            group["lr"] = plan.lr_at(step)
        ids, keep = batch_ids(run.tokenizer, [run.sentences[i] for i in batch_order(plan, len(run.sentences), step)])
        with torch.no_grad():
            teacher_out = run.teacher(ids, keep)
        loss, cosine = distillation_loss(run.student(ids, keep), teacher_out, keep)
        if plan.attention_kl > 0:
            student_maps, teacher_maps = (a.log_maps(keep) for a in run.attention)
            loss = loss + plan.attention_kl * attention_kl(student_maps, [t.detach() for t in teacher_maps], keep)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.step = step + 1
        sparsity = ffn_sparsity(run.student)
        run.history.append((run.step, float(loss.detach()), float(cosine.detach()), sparsity))
        bar.set_postfix(loss=f"{run.history[-1][1]:.4f}", sparsity=f"{sparsity:.1%}", cos=f"{run.history[-1][2]:.4f}")
        if folder is not None and (run.step % save_every == 0 or run.step == until):
            save_checkpoint(run, folder)
    bar.close()
    if folder is not None and run.step == plan.steps:
        save_student(run, pathlib.Path(folder) / "final.pt")
    return run


def _read_student(path):
    try:
        record = torch.load(path, weights_only=True)
        Plan(**record["plan"])
        if "student" not in record or "groups" not in record:
            raise KeyError("no student or groups")
        return record
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise DistillError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


def load_student(path, *, model=None, config=None):
    """(Encoder with the saved weights and masks, saved record) from event-K.pt / final.pt."""
    from software.models.minilm import Encoder, MiniLM
    record = _read_student(path)
    plan = Plan(**record["plan"])
    if config is None:
        config = (model or MiniLM(max_tokens=plan.max_tokens)).config
    student = Encoder(config)
    _prepare_masks(student)
    student.load_state_dict(record["student"])
    if record["qat"]:
        enable_qat(student, plan.weight_bits)
    return student.eval(), record


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m software.distill.spd",
                                     description="Sparse progressive distillation of MiniLM-L6 (resumes from --out).")
    parser.add_argument("--out", required=True, help="folder for checkpoint.pt, event-K.pt and final.pt")
    defaults = Plan()
    for field in dataclasses.fields(Plan):
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name))
    parser.add_argument("--init", default=None,
                        help="start a new run from this student file (event-K.pt or software.distill.reconstruct's "
                             "output) instead of the pretrained model; with --events 0 its masks stay as they are")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--replan", action="store_true",
                        help="resume with the plan given here instead of the checkpoint's (same events so far)")
    args = parser.parse_args(argv)
    try:
        from software.distill.corpus import load_corpus
        torch.set_num_threads(max(1, args.threads))
        plan = Plan(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Plan)})
        if (pathlib.Path(args.out) / CHECKPOINT).exists():
            read_checkpoint(args.out)            # a bad file fails before the corpus is read
        corpus = load_corpus()
        if (pathlib.Path(args.out) / CHECKPOINT).exists():
            run = resume(args.out, corpus.train, replan=plan if args.replan else None)
            print(f"resuming at step {run.step} of {run.plan.steps}", file=sys.stderr)
        else:
            run = new_run(plan, corpus.train, init=args.init)
        print(f"corpus: {len(corpus.train)} training, {len(corpus.held_out)} held-out sentences "
              f"({', '.join(f'{n}: {c}' for n, c in corpus.sources)})", file=sys.stderr)
        start = time.time()
        train(run, folder=args.out, progress=not args.no_progress)
        print(f"done: step {run.step}, {time.time() - start:.0f} s this session", file=sys.stderr)
    except DistillError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
