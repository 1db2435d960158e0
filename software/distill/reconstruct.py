"""Layer-wise least-squares reconstruction of column-combined FFN matrices (no training).

After a matrix W (F x K) is column-combined, its mask is fixed: each row keeps at most one weight
per column group. Which values those kept weights should hold is then a least-squares problem on
calibration activations X (N x K, the matrix's inputs on real tokens of training sentences), as in
OBS / SparseGPT's layer-wise reconstruction. Per row r with kept columns S:

    minimise  || X_s w'_S - X_t w_r ||^2 + lam || w'_S - w_r,S ||^2
    =>  (H + lam I)_SS w'_S = (C w_r)_S + lam w_r,S,     H = X_s^T X_s,  C = X_s^T X_t,

with lam = damp * mean(diag H). X_s are the inputs the pruned student actually sees (its upstream
matrices already reconstructed: sequential, layer by layer) and X_t the dense teacher's on the same
tokens (target "teacher": the refit also corrects what the upstream layers got wrong) or X_s itself
(target "self": C = H, the matrix alone reproduces its own dense output). The ridge pulls towards
the original weights, so damp -> infinity gives back the masked original. Pruned entries stay 0.

With `bias` the bias is refit with the weights (one more input, always 1; never pruned): it takes
up the mean of what the kept weights cannot reproduce. With `dense` the four attention matrices of
each layer (query, key, value, attention output; dense on the array, not column-combined) are refit
too, with every weight kept, to the teacher's outputs on the student's inputs: they correct the
drift that the pruned layers before them left, which is free in tiles.

The mask itself comes from a score: |w| ("magnitude", what spd.column_combine uses) or the OBS
saliency w^2 / [(H + lam I)^-1]_jj ("obs": the output error of removing w alone, the others
compensating). Each matrix is score-pruned to `rate`, its columns are grouped on the pruned scores
(software.packing.colcomb.group_columns: alpha, gamma, grouping), and each (row, group) keeps its
highest-scoring column. With `fill`, that choice is made among all the group's columns, not only
the ones that survived the rate: a cell that pruning left empty costs the same tile as a full one,
and after the refit any kept weight helps.

    python -m software.distill.reconstruct --rate 0.71 --out runs/recon/refit-71.pt --threads 1
"""

import argparse
import dataclasses
import math
import pathlib
import sys
import time

import numpy as np
import torch

from software.frontend.pruning import apply_mask
from software.packing.colcomb import GROUPINGS, group_columns, pack

MASK_SCORES = ("magnitude", "obs")
TARGETS = ("teacher", "self")


class ReconstructError(ValueError):
    """Bad options; one line."""


@dataclasses.dataclass(frozen=True)
class Settings:
    rate: float = 0.71              # score sparsity of each FFN matrix before grouping
    output_rate: float | None = None    # that of the FFN output matrices (384 x 1536), if not `rate`
    alpha: int = 8
    gamma: float = 0.5
    grouping: str = "best"
    score: str = "obs"              # MASK_SCORES
    fill: bool = True
    target: str = "teacher"         # TARGETS
    damp: float = 0.01
    calibration: int = 512          # training sentences
    bias: bool = True               # refit the bias too (an input of ones)
    dense: bool = False             # also refit the dense attention matrices (full mask) to the teacher's outputs
    max_tokens: int = 40

    def __post_init__(self):
        for name in ("rate", "output_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ReconstructError(f"{name} must be in [0, 1), not {value!r}")
        if self.alpha < 1 or self.calibration < 1 or self.max_tokens < 2:
            raise ReconstructError("alpha and calibration must be at least 1, max_tokens at least 2")
        if not (self.gamma >= 0 and math.isfinite(self.gamma)):
            raise ReconstructError(f"gamma must be a non-negative number, not {self.gamma!r}")
        if not (self.damp > 0 and math.isfinite(self.damp)):
            raise ReconstructError(f"damp must be a positive number, not {self.damp!r}")
        for name, known in (("score", MASK_SCORES), ("target", TARGETS), ("grouping", tuple(GROUPINGS))):
            if getattr(self, name) not in known:
                raise ReconstructError(f"unknown {name} {getattr(self, name)!r}; known: {', '.join(known)}")

    def rate_of(self, name):
        """The rate of FFN matrix `name`: the output matrices (pruning them costs little output error,
        their 1536 columns pack into few tiles) may be pruned harder than the intermediate ones."""
        if self.output_rate is not None and name.endswith(".output.dense") and ".attention." not in name:
            return self.output_rate
        return self.rate

    def key(self):
        return " ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))


def damped(hessian, damp):
    """H + damp * mean(diag H) * I (float64); an all-zero H gets damp * I."""
    hessian = torch.as_tensor(hessian, dtype=torch.float64)
    scale = float(hessian.diagonal().mean()) or 1.0
    return hessian + damp * scale * torch.eye(hessian.shape[0], dtype=torch.float64)


def obs_saliency(weight, hessian, damp):
    """w^2 / [(H + lam I)^-1]_jj for every weight of `weight` (F x K): the squared output error of
    pruning that weight alone while the rest of its row compensates (Optimal Brain Surgeon)."""
    inverse_diag = torch.linalg.inv(damped(hessian, damp)).diagonal()
    return torch.as_tensor(weight, dtype=torch.float64) ** 2 / inverse_diag


def refit(weight, mask, hessian, *, cross=None, damp=0.01, rows_per_solve=64):
    """The weights of `weight` (F x K) on `mask` (F x K bool) that best reproduce its output on the
    calibration inputs (module docstring); 0 off the mask. `hessian` = X_s^T X_s (K x K); `cross` =
    X_s^T X_t (default: the hessian, i.e. the target is the matrix's own dense output on X_s)."""
    weight = torch.as_tensor(weight, dtype=torch.float64)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if weight.ndim != 2 or mask.shape != weight.shape or hessian.shape != (weight.shape[1],) * 2:
        raise ValueError(f"refit: weight {tuple(weight.shape)}, mask {tuple(mask.shape)} and hessian "
                         f"{tuple(hessian.shape)} do not agree")
    hessian = torch.as_tensor(hessian, dtype=torch.float64)
    system = damped(hessian, damp)
    lam = float(system[0, 0] - hessian[0, 0])
    cross = hessian if cross is None else torch.as_tensor(cross, dtype=torch.float64)
    rhs_all = weight @ cross.T + lam * weight               # F x K: row r is (C w_r + lam w_r)^T
    out = torch.zeros_like(weight)
    counts = mask.sum(dim=1)
    width = int(counts.max()) if len(counts) else 0
    if width == 0:
        return out
    # Each row's kept columns first (stable, ascending), padded to `width`; padded slots solve
    # an identity row with right-hand side 0, so they come out 0 and touch nothing.
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width)[None, :] < counts[:, None]
    for start in range(0, weight.shape[0], rows_per_solve):
        idx, ok = order[start:start + rows_per_solve], valid[start:start + rows_per_solve]
        a = system[idx[:, :, None], idx[:, None, :]]
        pair = ok[:, :, None] & ok[:, None, :]
        eye = torch.eye(width, dtype=torch.bool)[None]
        a = torch.where(pair, a, eye.to(a.dtype))
        b = torch.where(ok, torch.gather(rhs_all[start:start + rows_per_solve], 1, idx), 0.0)
        solved = torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)
        block = out[start:start + rows_per_solve]
        block.scatter_(1, idx, torch.where(ok, solved, 0.0))
    return out


def reconstruction_error(weight, new_weight, hessian, cross=None, target_hessian=None):
    """sum_r ||X_s w'_r - X_t w_r||^2 from the second moments (without the constant term when
    target_hessian = X_t^T X_t is not given): how well new_weight on X_s reproduces weight on X_t."""
    w = torch.as_tensor(weight, dtype=torch.float64)
    v = torch.as_tensor(new_weight, dtype=torch.float64)
    hessian = torch.as_tensor(hessian, dtype=torch.float64)
    cross = hessian if cross is None else torch.as_tensor(cross, dtype=torch.float64)
    target_hessian = hessian if (target_hessian is None and cross is hessian) else target_hessian
    value = ((v @ hessian) * v).sum() - 2 * ((v @ cross) * w).sum()
    if target_hessian is not None:
        value = value + ((w @ torch.as_tensor(target_hessian, dtype=torch.float64)) * w).sum()
    return float(value)


def choose_mask(weight, score, rate, alpha, gamma, grouping, fill):
    """(groups, F x K bool mask): score-prune to `rate`, group the columns on the pruned scores, keep
    the best-scoring column of each (row, group) among the survivors, or among all with `fill`."""
    score = np.asarray(score, dtype=np.float64) * (np.asarray(weight) != 0)
    flat = np.sort(score, axis=None)
    prune = int(round(rate * score.size))
    pruned = score if prune == 0 else np.where(score > flat[prune - 1], score, 0.0)
    groups = group_columns(pruned, alpha, gamma, grouping=grouping)
    return groups, pack(score if fill else pruned, groups, alpha).mask


class _Captured(Exception):
    """Raised by the capturing hook: the rest of the forward pass is not needed."""


@torch.no_grad()
def linear_inputs(encoder, name, batches):
    """N x K: the inputs of the linear `name` (a module name of `encoder`) on the real tokens of
    `batches` ([(ids, keep)]), as the encoder computes them now (each pass stops there)."""
    module = dict(encoder.named_modules())[name]
    rows = []

    def record(m, args):
        rows.append(args[0])
        raise _Captured
    handle = module.register_forward_pre_hook(record, prepend=True)
    try:
        out = []
        for ids, keep in batches:
            rows.clear()
            try:
                encoder(ids, keep)
            except _Captured:
                pass
            out.append(rows[0][keep])
    finally:
        handle.remove()
    return torch.cat(out).to(torch.float64)


def with_ones(x):
    """x with a column of ones appended: the bias as one more input."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)


def linears_in_order(encoder, dense):
    """Module names in the order the sequential pass handles them: per layer, with `dense` the four
    attention matrices (query, key, value, attention output), then the two FFN matrices."""
    ffn = list(encoder.ffn_linears())
    out = []
    for i in range(len(encoder.encoder["layer"])):
        if dense:
            out += [f"encoder.layer.{i}.attention.self.{p}" for p in ("query", "key", "value")]
            out.append(f"encoder.layer.{i}.attention.output.dense")
        out += [n for n in ffn if n.startswith(f"encoder.layer.{i}.")]
    return out


def _dense_weight(module):
    return (module.weight_orig * module.weight_mask if hasattr(module, "weight_mask") else module.weight).detach()


@torch.no_grad()
def reconstruct(student, teacher, batches, settings, *, log=None):
    """Column-combine and refit every FFN matrix of `student` (a copy of `teacher`) in order,
    layer by layer (with settings.dense, the attention matrices too, each with its full mask).
    Returns {name: groups} of the FFN matrices and {name: dict of what happened} per matrix."""
    groups, report = {}, {}
    ffn = student.ffn_linears()
    modules = dict(student.named_modules())
    for name in linears_in_order(student, settings.dense):
        start = time.time()
        module = modules[name]
        weight = _dense_weight(module).to(torch.float64)
        x_s = linear_inputs(student, name, batches)
        x_t = linear_inputs(teacher, name, batches) if settings.target == "teacher" else x_s
        hessian = x_s.T @ x_s                       # the saliency's, without the bias input
        if name in ffn:
            score = weight.abs() if settings.score == "magnitude" else obs_saliency(weight, hessian, settings.damp)
            groups[name], mask = choose_mask(weight.numpy(), score.numpy(), settings.rate_of(name), settings.alpha,
                                             settings.gamma, settings.grouping, settings.fill)
        else:
            mask = np.ones(tuple(weight.shape), dtype=bool)
        if settings.bias and module.bias is not None:
            x_s, x_t = with_ones(x_s), with_ones(x_t)
            weight = torch.cat([weight, module.bias.detach().to(torch.float64)[:, None]], dim=1)
            mask = np.concatenate([mask, np.ones((mask.shape[0], 1), dtype=bool)], axis=1)
        hessian = x_s.T @ x_s
        cross, target_hessian = x_s.T @ x_t, x_t.T @ x_t
        new = refit(weight, mask, hessian, cross=cross, damp=settings.damp)
        total = reconstruction_error(weight, torch.zeros_like(weight), hessian, cross, target_hessian)
        before = reconstruction_error(weight, weight * torch.from_numpy(mask), hessian, cross, target_hessian)
        after = reconstruction_error(weight, new, hessian, cross, target_hessian)
        if settings.bias and module.bias is not None:
            module.bias.copy_(new[:, -1].to(module.bias.dtype))
            new, mask = new[:, :-1], mask[:, :-1]
        if name in ffn:
            apply_mask(module, torch.from_numpy(mask.astype(np.float32)))
            module.weight_orig.copy_(new.to(module.weight_orig.dtype))
        else:
            module.weight.copy_(new.to(module.weight.dtype))
        report[name] = {"groups": len(groups[name]) if name in ffn else int(weight.shape[1]) - settings.bias,
                        "kept": float(mask.mean()), "tokens": int(x_s.shape[0]),
                        "error_masked": max(0.0, before / total), "error_refit": max(0.0, after / total),
                        "seconds": time.time() - start}
        if log:
            r = report[name]
            log(f"{name}: {r['groups']} groups, {r['kept']:.1%} kept, relative output error "
                f"{r['error_masked']:.4f} masked -> {r['error_refit']:.4f} refit ({r['seconds']:.0f} s)")
    return groups, report


def calibration_batches(tokenizer_model, sentences, batch=64):
    from software.models.minilm import batch_ids
    return [batch_ids(tokenizer_model, sentences[i:i + batch]) for i in range(0, len(sentences), batch)]


def reconstructed_student(settings, *, model=None, teacher=None, sentences=None, log=None):
    """(student Encoder, groups, report): the pretrained model with every FFN matrix column-combined
    and refit on the first `settings.calibration` training sentences (corpus.py's split)."""
    import copy
    from software.distill.corpus import load_corpus
    from software.distill.spd import _prepare_masks
    from software.models.minilm import Encoder, MiniLM
    model = model or MiniLM(max_tokens=settings.max_tokens)
    teacher = (teacher or Encoder.pretrained(model)).eval()
    student = copy.deepcopy(teacher).eval()
    _prepare_masks(student)
    if sentences is None:
        sentences = load_corpus().train
    batches = calibration_batches(model, list(sentences)[:settings.calibration])
    groups, report = reconstruct(student, teacher, batches, settings, log=log)
    return student, groups, report


def save(path, student, groups, settings, report):
    """A student file that software.distill.spd.load_student reads (and spd --init starts from)."""
    from software.distill.spd import Plan, _torch_save_atomically
    plan = Plan(events=1, sparsity=settings.rate, alpha=settings.alpha, gamma=settings.gamma,
                grouping=settings.grouping, max_tokens=settings.max_tokens)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _torch_save_atomically({"student": student.state_dict(), "step": 0, "groups": groups,
                            "plan": dataclasses.asdict(plan), "qat": False,
                            "reconstruction": {"settings": dataclasses.asdict(settings), "report": report}}, path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m software.distill.reconstruct", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="student file to write (read by spd.load_student)")
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        flag = "--" + field.name.replace("_", "-")
        if field.type is bool or isinstance(getattr(defaults, field.name), bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=getattr(defaults, field.name))
        else:
            value = getattr(defaults, field.name)
            parser.add_argument(flag, type=float if value is None else type(value), default=value)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        settings = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
    except ReconstructError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    start = time.time()
    student, groups, report = reconstructed_student(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
    save(args.out, student, groups, settings, report)
    print(f"wrote {args.out} ({time.time() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
