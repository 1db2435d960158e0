"""A corpus of crafted packed-model files: a valid ``model.npz`` edited one field at a time, its
whole-content hash recomputed afterwards, so that only the range checks can catch it.

``CRAFTED`` maps a case name to ``(edit, where)``: ``edit(members)`` changes the file's members in
place (``members["manifest"]`` is the parsed JSON here), and ``where`` says who must refuse it:
"load" (software.packfile.load itself) or "digits" (the commands that run the model on digits
images: ``python -m software evaluate`` and ``python -m sim.model``). ``LEGAL`` are edits that keep
the file valid and its results identical (the checks must not refuse everything).
"""
from __future__ import annotations

import io
import json
import pathlib

import numpy as np

from software.packfile import DIGEST, content_digest


def read(path):
    with np.load(path, allow_pickle=False) as npz:
        members = {name: npz[name] for name in npz.files}
    members["manifest"] = json.loads(members["manifest"].tobytes().decode())
    return members


def write(members, path, *, recompute=True):
    """Write ``members`` back as an .npz with a recomputed whole-content digest (``recompute=False``:
    the stale one). A manifest that is already an array is written as it is."""
    full = dict(members)
    stale = full.pop(DIGEST, None)
    manifest = full["manifest"]
    if not isinstance(manifest, np.ndarray):
        # json.dumps keeps NaN as JSON's non-standard constant, as a hand edit would
        full["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    digest = content_digest(full) if recompute or stale is None else stale.tobytes().decode()
    full[DIGEST] = np.frombuffer(digest.encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **full)
    pathlib.Path(path).write_bytes(buffer.getvalue())


def _manifest(edit):
    def change(members):
        edit(members["manifest"])
    return change


def _array(name, fn):
    def change(members):
        members[name] = fn(members[name])
    return change


def _step(index, key, value):
    return _manifest(lambda m: m["steps"][index].__setitem__(key, value))


def _layers(m):
    return [s for s in m["steps"] if "layer" in s]


def _both_input_exponents(value):
    def edit(m):
        m["input_exponent"] = value
        _layers(m)[0]["input_exponent"] = value
    return _manifest(edit)


def _set(name, index, value):
    def fn(a):
        a = a.copy()
        a.flat[index] = value
        return a
    return _array(name, fn)


def _empty_slot_select(members):
    groups, select = members["layer0.groups"], members["layer0.select"].copy()
    g = int(np.argmax((groups == -1).any(axis=1)))      # a group with an empty slot
    select[0, g] = int(np.argmax(groups[g] == -1))
    members["layer0.select"] = select


def _duplicate_column(members):
    groups = members["layer0.groups"].copy()
    groups[1, 0] = groups[0, 0]
    members["layer0.groups"] = groups


def _hole_in_group(members):
    groups = members["layer0.groups"].copy()
    g = int(np.argmax((groups >= 0).sum(axis=1) >= 2))
    groups[g, 0] = -1
    members["layer0.groups"] = groups


def _overflowing_weights(members):
    """Every weight of layer 0 at the format's extreme: on a narrow accumulator, rows can overflow."""
    members["manifest"]["array"]["acc_width"] = 20
    packed = members["layer0.packed"]
    members["layer0.packed"] = np.full_like(packed, 127)
    members["manifest"]["steps"][_first_layer(members)]["nonzero_weights"] = int(packed.size)


def _first_layer(members):
    return next(i for i, s in enumerate(members["manifest"]["steps"]) if "layer" in s)


def _swap_layers(m):
    layers = _layers(m)
    layers[0]["layer"], layers[1]["layer"] = 1, 0


def _extra_member(members):
    members["layer9.packed"] = np.zeros((1, 1), dtype=np.int32)


def _missing_member(members):
    del members["layer1.bias"]


I32, I64 = np.int32, np.int64
CRAFTED = {
    # The cases (hashes recomputed after editing).
    "nan bias": (_array("layer0.bias", lambda a: np.where(np.arange(a.size) == 0, np.nan, a.astype(float))), "load"),
    "inf bias": (_array("layer1.bias", lambda a: np.where(np.arange(a.size) == 2, np.inf, a.astype(float))), "load"),
    "nan shift": (_array("layer0.shift", lambda a: np.where(np.arange(a.size) == 0, np.nan, a.astype(float))), "load"),
    "bias 2**62": (_set("layer0.bias", 0, 1 << 62), "load"),
    "hidden shift -62": (_set("layer0.shift", 0, -62), "load"),
    "input exponent -30": (_both_input_exponents(-30), "digits"),
    "input exponent 5000": (_both_input_exponents(5000), "load"),
    "input exponent -30, layer 0 not": (_manifest(lambda m: m.__setitem__("input_exponent", -30)), "load"),
    # dtypes: never cast
    "bias float64": (_array("layer0.bias", lambda a: a.astype(np.float64)), "load"),
    "bias int32": (_array("layer0.bias", lambda a: a.astype(I32)), "load"),
    "shift uint64": (_array("layer1.shift", lambda a: a.astype(np.uint64)), "load"),
    "packed int64": (_array("layer0.packed", lambda a: a.astype(I64)), "load"),
    "packed big-endian": (_array("layer0.packed", lambda a: a.astype(">i4")), "load"),
    "packed float32": (_array("layer0.packed", lambda a: a.astype(np.float32)), "load"),
    "select int16": (_array("layer0.select", lambda a: a.astype(np.int16)), "load"),
    "groups float64": (_array("layer0.groups", lambda a: a.astype(np.float64)), "load"),
    "manifest as int8": (lambda m: m.__setitem__("manifest", np.frombuffer(json.dumps(m["manifest"]).encode(),
                                                                           dtype=np.int8)), "load"),
    # ranges the array and the integer model assume
    "bias 2**31": (_set("layer1.bias", 0, 1 << 31), "load"),
    "bias -2**31 - 1": (_set("layer2.bias", 0, -(1 << 31) - 1), "load"),
    "hidden shift 31": (_set("layer0.shift", 1, 31), "load"),
    "hidden shift 63": (_set("layer1.shift", 0, 63), "load"),
    "hidden shift -31": (_set("layer1.shift", 0, -31), "load"),
    "logit shift -1": (_set("layer2.shift", 0, -1), "load"),
    "logit shift 40": (_set("layer2.shift", 3, 40), "load"),
    "weight 128": (_set("layer0.packed", 0, 128), "load"),
    "weight -129": (_set("layer1.packed", 5, -129), "load"),
    "weights overflow the accumulator": (_overflowing_weights, "load"),
    "select = alpha": (_set("layer0.select", 0, 8), "load"),
    "select -1": (_set("layer1.select", 0, -1), "load"),
    "select points at an empty slot": (_empty_slot_select, "load"),
    "group column out of range": (_set("layer0.groups", 0, 64), "load"),
    "group column below -1": (_set("layer0.groups", 0, -2), "load"),
    "group column twice": (_duplicate_column, "load"),
    "empty slot before a used one": (_hole_in_group, "load"),
    "packed transposed": (_array("layer1.packed", lambda a: np.ascontiguousarray(a.T)), "load"),
    "bias too short": (_array("layer0.bias", lambda a: a[:-1]), "load"),
    "extra member": (_extra_member, "load"),
    "missing member": (_missing_member, "load"),
    # the manifest
    "input exponent NaN": (_both_input_exponents(float("nan")), "load"),
    "input exponent 7.0": (_both_input_exponents(-7.0), "load"),
    "input exponent true": (_both_input_exponents(True), "load"),
    "input exponent -127": (_both_input_exponents(-127), "load"),
    "output exponent 200": (_manifest(lambda m: _layers(m)[-1].__setitem__("output_exponent", 200)), "load"),
    "exponent chain broken": (_manifest(lambda m: _layers(m)[1].__setitem__("input_exponent", -3)), "load"),
    "hidden 'yes'": (_manifest(lambda m: _layers(m)[0].__setitem__("hidden", "yes")), "load"),
    "output layer hidden": (_manifest(lambda m: _layers(m)[-1].__setitem__("hidden", True)), "load"),
    "out_features true": (_manifest(lambda m: _layers(m)[0].__setitem__("out_features", True)), "load"),
    "in_features 65": (_manifest(lambda m: _layers(m)[0].__setitem__("in_features", 65)), "load"),
    "groups count +1": (_manifest(lambda m: _layers(m)[0].__setitem__("groups", _layers(m)[0]["groups"] + 1)), "load"),
    "layers out of order": (_manifest(_swap_layers), "load"),
    "nonzero_weights wrong": (_manifest(lambda m: _layers(m)[0].__setitem__("nonzero_weights", 1)), "load"),
    "conv geometry on a linear layer": (_manifest(lambda m: _layers(m)[0].__setitem__("conv", {
        "in_channels": 1, "in_h": 8, "in_w": 8, "kernel": [8, 8], "stride": [1, 1], "padding": [0, 0]})), "load"),
    "unknown step field": (_manifest(lambda m: _layers(m)[0].__setitem__("activation", "gelu")), "load"),
    "unknown manifest field": (_manifest(lambda m: m.__setitem__("pickle", "yes")), "load"),
    "input shape [65]": (_manifest(lambda m: m.__setitem__("input_shape", [65])), "load"),
    "input shape [0]": (_manifest(lambda m: m.__setitem__("input_shape", [0])), "load"),
    "input shape huge": (_manifest(lambda m: m.__setitem__("input_shape", [1 << 40])), "load"),
    "rows 0": (_manifest(lambda m: m["array"].__setitem__("rows", 0)), "load"),
    "signed activations": (_manifest(lambda m: m["array"].__setitem__("act_signed", True)), "load"),
    "tq mac": (_manifest(lambda m: m["array"].update(mac="tq", weight_terms=2, data_terms=3)), "load"),
    "alpha 4 (groups are 8 wide)": (_manifest(lambda m: m["array"].__setitem__("alpha", 4)), "load"),
    "weight width 4": (_manifest(lambda m: m["array"].__setitem__("weight_width", 4)), "load"),
    "term budget data_terms 0": (_manifest(lambda m: m.__setitem__("term_budget", {
        "group": 8, "weight_terms": 14, "data_terms": 0})), "load"),
    "term budget unknown key": (_manifest(lambda m: m.__setitem__("term_budget", {
        "group": 8, "weight_terms": 14, "data_terms": 3, "code": "x"})), "load"),
    "version 1": (_manifest(lambda m: m.__setitem__("version", 1)), "load"),
    "manifest a list": (lambda members: members.__setitem__("manifest", [1, 2]), "load"),
}

LEGAL = {
    "info edited": _manifest(lambda m: m["info"].__setitem__("note", "edited, still valid")),
    "arithmetic text edited": _manifest(lambda m: m.__setitem__("arithmetic", "y = W x")),
}


def crafted_files(valid, out_dir):
    """Write every case of CRAFTED into ``out_dir``; yields (name, path, where)."""
    for i, (name, (edit, where)) in enumerate(CRAFTED.items()):
        members = read(valid)
        edit(members)
        path = pathlib.Path(out_dir) / f"crafted{i:02d}.npz"
        write(members, path)
        yield name, path, where


def make_packed(path, *, seed=0):
    """A valid packed model of the digits MLP (untrained weights, calibrated on the digits training
    split: seconds), written to ``path``; returns its IntModel."""
    from software.frontend.intmodel import export_model
    from software.models.digits import build_model, load_digits_split
    from software.packfile import save
    from spec import ArrayConfig
    config = ArrayConfig(rows=8, cols=8, alpha=8, act_signed=False)
    model = export_model(build_model(seed=seed), config, load_digits_split().x_train)
    save(model, path)
    return model
