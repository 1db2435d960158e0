"""The packed model file: an :class:`~software.frontend.intmodel.IntModel` as one ``.npz`` with a JSON manifest.

Layout (``numpy.savez_compressed``, loaded with ``allow_pickle=False``):

    manifest             uint8 bytes of a UTF-8 JSON document (below)
    layer<i>.packed      F x G int32 packed weights       (i = 0, 1, ... over Linear/Conv2d layers)
    layer<i>.select      F x G int32 select indices, in [0, alpha)
    layer<i>.groups      G x alpha int32 original column of each group slot, -1 for an empty slot
    layer<i>.bias        F int64 accumulator addends
    layer<i>.shift       F int64 requantization right shifts (hidden) / logit left shifts (output)

The manifest names the format and version, the array configuration (``ArrayConfig.as_dict``),
the input shape and exponent, every step in order (layers with their name, shapes, exponents,
hidden/output role and im2col geometry; reshapes), the term budget if any, free-form ``info``
(accuracies, method ...), and the SHA-256 of every array. :func:`load` checks all of it and
raises :class:`PackedModelError`, one line naming the file, on anything inconsistent.

Version 3 holds a layer graph instead of the chain of steps (software/packgraph.py: what models
from ``torch.export`` or ONNX need: residual adds, pools, grouped convolutions, host ops); version 1
files (a chain) still load, as the chain model they hold.
"""
from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np

from software.packing.colcomb import ColumnCombining
from spec import ArrayConfig, ConfigError
from software.frontend.intmodel import ConvGeometry, IntLayer, IntModel, Reshape, TermBudget, check_array_config, ExportError

FORMAT = "sparsegen-packed-model"
VERSION = 1             # a chain of steps (IntModel); GraphModels are written as packgraph.VERSION


class PackedModelError(ValueError):
    """A packed model file that cannot be read or does not make sense. One line, naming the file."""


def _sha(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def manifest_and_arrays(model: IntModel, info=None):
    arrays, steps = {}, []
    index = 0
    for step in model.steps:
        if isinstance(step, Reshape):
            steps.append({"reshape": step.name, "shape": list(step.shape)})
            continue
        p = step.packing
        groups = np.full((len(p.groups), p.alpha), -1, dtype=np.int32)
        for g, columns in enumerate(p.groups):
            groups[g, :len(columns)] = columns
        prefix = f"layer{index}."
        arrays[prefix + "packed"] = p.packed.astype(np.int32)
        arrays[prefix + "select"] = p.select.astype(np.int32)
        arrays[prefix + "groups"] = groups
        arrays[prefix + "bias"] = step.bias.astype(np.int64)
        arrays[prefix + "shift"] = step.shift.astype(np.int64)
        steps.append({
            "layer": index, "name": step.name, "in_features": step.in_features,
            "out_features": step.out_features, "groups": step.groups, "hidden": step.hidden,
            "input_exponent": step.input_exponent, "output_exponent": step.output_exponent,
            "nonzero_weights": int(np.count_nonzero(p.packed)),
            "conv": step.conv.as_dict() if step.conv is not None else None,
        })
        index += 1
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "array": model.config.as_dict(),
        "input_shape": list(model.input_shape),
        "input_exponent": model.input_exponent,
        "arithmetic": "per layer: acc = W_int x on the array (acc_width bits); hidden: "
                      "requant_shift(acc + bias, shift, act_width, unsigned) (rounding right shift, "
                      "saturation to [0, 2**act_width - 1] is the ReLU); output: logits = (acc + bias) << shift",
        "term_budget": model.term_budget.as_dict() if model.term_budget else None,
        "steps": steps,
        "info": info or {},
        "sha256": {name: _sha(a) for name, a in arrays.items()},
    }
    return manifest, arrays


def graph_manifest(model, info=None):
    """Manifest and arrays of a GraphModel (format version 3)."""
    from software.packgraph import VERSION as GRAPH_VERSION, graph_manifest_and_arrays
    graph, arrays = graph_manifest_and_arrays(model)
    manifest = {
        "format": FORMAT,
        "version": GRAPH_VERSION,
        "array": model.config.as_dict(),
        "input_shape": list(model.input_shape),
        "input_exponent": model.input_exponent,
        "arithmetic": "every tensor is v * 2**exponent (unsigned, or signed with an act_width-bit magnitude); "
                      "matmul: acc = W_int x on the array (a signed x as its positive and negative parts), "
                      "acc + bias requantized by a rounding right shift per channel (output: left-aligned "
                      "logits); add: operands shifted to the sum's exponent; see software/frontend/intgraph.py",
        "term_budget": model.term_budget.as_dict() if model.term_budget else None,
        "graph": graph,
        "info": info or {},
        "sha256": {name: _sha(a) for name, a in arrays.items()},
    }
    return manifest, arrays


def save(model, path, info=None):
    """Write ``model`` (IntModel or GraphModel) to ``path`` atomically (a temporary file renamed into
    place); returns the manifest."""
    from software.frontend.intgraph import GraphModel
    if isinstance(model, GraphModel):
        manifest, arrays = graph_manifest(model, info)
    else:
        manifest, arrays = manifest_and_arrays(model, info)
    text = json.dumps(manifest, indent=1, sort_keys=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, manifest=np.frombuffer(text.encode(), dtype=np.uint8), **arrays)
    write_atomically(path, buffer.getvalue())
    return manifest


def write_atomically(path, data: bytes | str):
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path) -> tuple[IntModel, dict]:
    """Read and validate a packed model; returns (IntModel, manifest)."""
    path = os.fspath(path)
    try:
        return _load(path)
    except PackedModelError:
        raise
    except FileNotFoundError:
        raise PackedModelError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes numpy, zlib or json raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PackedModelError(f"{path}: corrupt packed model ({reason})") from None


def _fail(path, message):
    raise PackedModelError(f"{path}: corrupt packed model ({message})")


def _load(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}   # reads every member: zip CRCs are checked
    if "manifest" not in arrays:
        _fail(path, "no manifest")
    manifest = json.loads(arrays.pop("manifest").tobytes().decode())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        _fail(path, f"not a {FORMAT} file")
    from software.packgraph import VERSION as GRAPH_VERSION, graph_from_manifest
    if manifest.get("version") not in (VERSION, GRAPH_VERSION):
        _fail(path, f"format version {manifest.get('version')!r}, this sparsegen reads {VERSION} and {GRAPH_VERSION}; "
                    "rewrite it with python -m software compress")
    digests = manifest["sha256"]
    if set(digests) != set(arrays):
        _fail(path, "the arrays do not match the manifest's list")
    for name, array in arrays.items():
        if _sha(array) != digests[name]:
            _fail(path, f"checksum mismatch in {name}")
    try:
        config = ArrayConfig.from_dict(manifest["array"])
        check_array_config(config)
    except (ConfigError, ExportError, TypeError) as e:
        _fail(path, f"array configuration: {e}")
    term_budget = TermBudget(**manifest["term_budget"]) if manifest["term_budget"] else None
    if manifest["version"] == GRAPH_VERSION:
        return graph_from_manifest(manifest, arrays, config, term_budget, lambda m: _fail(path, m)), manifest
    input_shape = tuple(int(d) for d in manifest["input_shape"])
    shape = input_shape
    steps, index = [], 0
    w_lo, w_hi = config.weight_range
    for entry in manifest["steps"]:
        if "reshape" in entry:
            new = tuple(int(d) for d in entry["shape"])
            if int(np.prod(new)) != int(np.prod(shape)):
                _fail(path, f"reshape {entry['reshape']} from {shape} to {new}")
            steps.append(Reshape(str(entry["reshape"]), new))
            shape = new
            continue
        if entry["layer"] != index:
            _fail(path, f"layer {entry['layer']} out of order")
        prefix = f"layer{index}."
        packed, select, groups = (arrays[prefix + k] for k in ("packed", "select", "groups"))
        bias, shift = arrays[prefix + "bias"], arrays[prefix + "shift"]
        F, K, G = int(entry["out_features"]), int(entry["in_features"]), int(entry["groups"])
        where = f"layer {index} ('{entry['name']}')"
        if packed.shape != (F, G) or select.shape != (F, G) or groups.shape != (G, config.alpha) \
                or bias.shape != (F,) or shift.shape != (F,):
            _fail(path, f"{where}: array shapes do not match {F} x {K} with {G} groups")
        if packed.size and (packed.min() < w_lo or packed.max() > w_hi):
            _fail(path, f"{where}: weights outside the {config.weight_width}-bit range")
        if select.size and (select.min() < 0 or select.max() >= config.alpha):
            _fail(path, f"{where}: select indices outside [0, {config.alpha})")
        columns = [[int(c) for c in row if c >= 0] for row in groups]
        if sorted(c for g in columns for c in g) != list(range(K)):
            _fail(path, f"{where}: groups do not cover its {K} inputs exactly once")
        if any(select[f, g] >= len(columns[g]) for f, g in zip(*np.nonzero(packed))):
            _fail(path, f"{where}: a select index points at an empty group slot")
        if shift.size and (shift.min() < -62 or shift.max() > 62):
            _fail(path, f"{where}: shifts outside [-62, 62]")
        conv = ConvGeometry.from_dict(entry["conv"]) if entry["conv"] is not None else None
        if conv is not None:
            expected_in, vector = (conv.in_channels, conv.in_h, conv.in_w), conv.in_channels * conv.kernel[0] * conv.kernel[1]
            out_shape = (F, conv.out_h, conv.out_w)
        else:
            expected_in, vector, out_shape = (K,), K, (F,)
        if shape != expected_in or vector != K:
            _fail(path, f"{where}: takes {expected_in} but gets {shape}")
        packing = ColumnCombining(groups=columns, packed=packed.astype(np.int64), select=select.astype(np.int64),
                                  alpha=config.alpha, in_features=K)
        steps.append(IntLayer(name=str(entry["name"]), packing=packing, bias=bias.astype(np.int64),
                              shift=shift.astype(np.int64), hidden=bool(entry["hidden"]),
                              input_exponent=int(entry["input_exponent"]),
                              output_exponent=int(entry["output_exponent"]), conv=conv))
        shape = out_shape
        index += 1
    layers = [s for s in steps if isinstance(s, IntLayer)]
    if not layers or any(not l.hidden for l in layers[:-1]) or layers[-1].hidden:
        _fail(path, "layers must be hidden layers followed by one output layer")
    if len(arrays) != 5 * index:
        _fail(path, "arrays of layers the manifest does not list")
    model = IntModel(config=config, input_shape=input_shape, input_exponent=int(manifest["input_exponent"]),
                     steps=tuple(steps), term_budget=term_budget)
    return model, manifest
