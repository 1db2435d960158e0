"""The pruning-method registry (software/frontend/sparsity/): what every method provides, the command line
built from it, and a new method added by one registry entry alone."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from software.frontend.compress import METHODS, CompressError, Options, main, make_schedule
from software.frontend.jointopt import (ColumnCombiningSchedule, GradualPruning, MagnitudeSchedule, NMSchedule,
                               TileWiseSchedule)
from software.models.digits import build_model
from software.packfile import load
from software.frontend.sparsity import SPARSITY, Flag, SparsityMethod, lookup, method_flags
from software.frontend.sparsity.base import SPARSITY_TARGET

FAST = ["--epochs", "4", "--finetune-epochs", "4", "--rows", "8", "-q"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "software", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "100"})


def test_methods_are_the_registry():
    assert METHODS == tuple(SPARSITY) == ("colcomb", "dense", "magnitude", "nm", "tilewise")
    for name, method in SPARSITY.items():
        assert isinstance(method, SparsityMethod) and method.name == name and lookup(name) is method


@pytest.mark.parametrize("name", list(SPARSITY))
def test_every_method_has_summary_label_flags_and_schedule(name):
    method = SPARSITY[name]
    assert method.summary and "\n" not in method.summary and method.summary == method.summary.strip()
    opts = Options(method=name, finetune_epochs=2).validate()
    assert opts.label() == method.label(opts) and opts.label()
    for flag in method.flags:
        assert isinstance(flag, Flag) and flag.dest in {f.name for f in dataclasses.fields(Options)}
    model = build_model(seed=0)
    schedule = method.schedule(opts, model)
    assert schedule is None or isinstance(schedule, GradualPruning)
    if schedule is not None:
        schedule(model, 0)      # the first pruning event runs on the digits MLP
        groups = method.groups(schedule)
        assert groups is None or set(groups) <= {"0", "2", "4"}


@pytest.mark.parametrize("kwargs, label, kind", [
    (dict(method="colcomb", alpha=4, gamma=0.25), "colcomb alpha=4 gamma=0.25", ColumnCombiningSchedule),
    (dict(method="dense"), "dense", type(None)),
    (dict(method="magnitude", sparsity=0.5), "magnitude 50%", MagnitudeSchedule),
    (dict(method="nm", nm=(1, 4)), "1:4", NMSchedule),
    (dict(method="tilewise", sparsity=0.75, rows=16), "tilewise 75%", TileWiseSchedule),
])
def test_labels_and_schedules_are_as_before(kwargs, label, kind):
    opts = Options(finetune_epochs=10, **kwargs).validate()
    assert opts.label() == label
    schedule = make_schedule(opts, build_model(seed=0))
    assert type(schedule) is kind
    if kind is ColumnCombiningSchedule:
        assert (schedule.alpha, schedule.gamma, schedule.epochs) == (4, 0.25, 10)
    if kind is NMSchedule:
        assert (schedule.n, schedule.m) == (1, 4)
    if kind is TileWiseSchedule:
        # tiles of one row block of the array; the output layer (the classes) is left whole
        assert schedule.tile_size == 16 and schedule.skip == ("4",) and schedule.sparsity == 0.75


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="bogus"), "unknown method 'bogus'; choose from colcomb, dense, magnitude, nm, tilewise"),
    (dict(gamma=-1.0), "--gamma must be a non-negative number, not -1.0"),
    (dict(gamma=float("nan")), "--gamma must be a non-negative number, not nan"),
    (dict(sparsity=1.0), "--sparsity must be in [0, 1), not 1.0"),
    (dict(nm=(3, 2)), "--nm 3:2: need 1 <= N <= M"),
    (dict(tile_size=0), "--tile-size must be >= 1, not 0"),
    (dict(method="magnitude", finetune_epochs=0),
     "--method magnitude prunes during fine-tuning: --finetune-epochs must be >= 1"),
    # every method's parameters are checked whichever method runs (as before the registry)
    (dict(method="dense", gamma=-1.0), "--gamma must be a non-negative number"),
])
def test_validation_messages(kwargs, message):
    with pytest.raises(CompressError) as error:
        Options(**kwargs).validate()
    assert str(error.value).startswith(message)


def test_dense_needs_no_fine_tuning():
    Options(method="dense", finetune_epochs=0).validate()


def test_shared_flags_are_listed_once_with_their_methods():
    flags = {flag.dest: users for flag, users in method_flags()}
    assert flags == {"gamma": ("colcomb",), "sparsity": ("magnitude", "tilewise"), "nm": ("nm",),
                     "tile_size": ("tilewise",)}


def test_two_flags_with_one_name_are_a_registry_error(monkeypatch):
    class Clash(SparsityMethod):
        name = "clash"
        summary = "defines its own --gamma"
        flags = (Flag("gamma", "another gamma"),)
    monkeypatch.setitem(SPARSITY, "clash", Clash())
    with pytest.raises(ValueError, match="define --gamma twice"):
        method_flags()


def test_help_lists_every_method_with_its_summary_and_flag():
    done = run_cli("compress", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for name, method in SPARSITY.items():
        assert f"{name} {method.summary}" in text, name
    for flag, users in method_flags():
        assert flag.option in text and f"({', '.join(users)}; default" in text


def test_unknown_method_is_one_line_with_exit_2(tmp_path):
    out = tmp_path / "out"
    done = run_cli("compress", "--method", "bogus", "-o", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("python -m software compress: error: argument --method: invalid choice: 'bogus'")
    assert all(repr(name) in done.stderr for name in SPARSITY)
    assert not out.exists()


class RandomPruning(SparsityMethod):
    """A new pattern with nothing but a registry entry: a random fraction of each layer, once."""

    name = "random"
    summary = "drops --sparsity of every layer's weights at random (a baseline)"
    flags = (SPARSITY_TARGET,)     # the --sparsity that magnitude and tilewise read

    def label(self, options):
        return f"random {options.sparsity:.0%}"

    def schedule(self, options, model):
        from torch.nn.utils import prune

        class Random(GradualPruning):
            def prune_event(self, name, module, k):
                if k == 1:
                    generator = torch.Generator().manual_seed(options.seed)
                    keep = torch.rand(module.weight.shape, generator=generator) >= options.sparsity
                    prune.custom_from_mask(module, "weight", keep.float())
        return Random(epochs=options.finetune_epochs)


def test_a_new_method_is_one_registry_entry(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(SPARSITY, "random", RandomPruning())
    assert dict((flag.dest, users) for flag, users in method_flags())["sparsity"] == ("magnitude", "tilewise", "random")
    out = tmp_path / "out"
    assert main(["compress", "--method", "random", "--sparsity", "0.5", "--alpha", "4", *FAST, "-o", str(out)]) == 0
    assert "digits: random 50%" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "random 50%" and 0.4 < report["sparsity"] < 0.6
    model, _ = load(out / "model.npz")
    assert model.config.alpha == 4
