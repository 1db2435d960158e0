"""Crafted packed models (tests/reliability/crafted.py): edited one field at a time with the
whole-content hash recomputed, so only the range checks stand between them and a wrong answer.
Every one is refused in one line, by software.packfile.load or by the digits commands; legal edits
are accepted and compute exactly what the original does; any edit without a new hash is refused."""
import numpy as np
import pytest

from software.frontend import compress
from software.frontend.compress import check_digits_input
from software.models.digits import load_digits_split
from software.packfile import PackedModelError, load, save
from tests.reliability import crafted


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    path = tmp_path_factory.mktemp("valid") / "model.npz"
    crafted.make_packed(path)
    return path


@pytest.fixture(scope="module")
def files(valid, tmp_path_factory):
    return {name: (path, where) for name, path, where in crafted.crafted_files(valid, tmp_path_factory.mktemp("c"))}


def _one_line(message, path):
    assert message.startswith(str(path)) and "\n" not in message, message


@pytest.mark.parametrize("name", crafted.CRAFTED)
def test_a_crafted_file_is_refused(name, files, capsys, record_property):
    path, where = files[name]
    if where == "load":
        with pytest.raises(PackedModelError) as info:
            load(path)
        _one_line(str(info.value), path)
    else:                       # a legal file whose input scale would make the digits commands answer wrongly
        model, _ = load(path)
        with pytest.raises(PackedModelError) as info:
            check_digits_input(model, path)
        _one_line(str(info.value), path)
    assert compress.main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    record_property("refused", True)


@pytest.mark.parametrize("name", crafted.LEGAL)
def test_a_legal_edit_is_accepted_and_computes_the_same(name, valid, tmp_path):
    members = crafted.read(valid)
    crafted.LEGAL[name](members)
    crafted.write(members, tmp_path / "legal.npz")
    original, _ = load(valid)
    edited, _ = load(tmp_path / "legal.npz")
    x = original.quantize_input(load_digits_split().x_test)
    assert np.array_equal(original.run_golden(x), edited.run_golden(x))


def test_any_member_edited_without_a_new_hash_is_refused(valid, tmp_path):
    names = [n for n in crafted.read(valid) if n != crafted.DIGEST]
    assert len(names) == 1 + 5 * 3
    for name in names:
        members = crafted.read(valid)
        if name == "manifest":
            members["manifest"]["info"]["note"] = "edited"
        else:
            members[name] = members[name].copy()
            members[name].flat[0] ^= 1
        crafted.write(members, tmp_path / "stale.npz", recompute=False)
        with pytest.raises(PackedModelError, match="corrupt packed model .checksum mismatch"):
            load(tmp_path / "stale.npz")


def test_save_never_writes_what_load_would_refuse(valid, tmp_path):
    import dataclasses
    model, _ = load(valid)
    first = model.layers[0]
    bad = dataclasses.replace(model, steps=(dataclasses.replace(first, shift=first.shift - 40),) + model.steps[1:])
    with pytest.raises(PackedModelError, match="not written.*hidden-layer shifts"):
        save(bad, tmp_path / "bad.npz")
    assert not list(tmp_path.iterdir())
