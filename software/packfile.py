"""The packed model file: an :class:`~software.frontend.intmodel.IntModel` as one ``.npz`` with a JSON manifest.

Layout (``numpy.savez_compressed``, loaded with ``allow_pickle=False``):

    manifest             uint8 bytes of a UTF-8 JSON document (below)
    sha256               uint8 bytes of the hex SHA-256 of everything else (see content_digest)
    layer<i>.packed      F x G int32 packed weights       (i = 0, 1, ... over Linear/Conv2d layers)
    layer<i>.select      F x G int32 select indices, in [0, alpha)
    layer<i>.groups      G x alpha int32 original column of each group slot, -1 for an empty slot
    layer<i>.bias        F int64 accumulator addends
    layer<i>.shift       F int64 requantization right shifts (hidden) / logit left shifts (output)

The manifest names the format and version, the array configuration (``ArrayConfig.as_dict``),
the input shape and exponent, every step in order (layers with their name, shapes, exponents,
hidden/output role and im2col geometry; reshapes), the term budget if any and free-form ``info``
(accuracies, method ...). One SHA-256 covers the whole content, manifest included.

A hash only tells a damaged file from an intact one: whoever edits a file can recompute it. So
:func:`load` also checks every value against what the integer model and the array assume -- exact
dtypes (nothing is cast), shapes against the configuration and the steps, weights in the weight
format, select indices and groups consistent, biases in ``BIAS_BITS``, shifts in
``[-MAX_SHIFT, MAX_SHIFT]`` (output layers: left shifts only), no sum that overflows the
accumulator and no bias + shift that overflows the host's 64-bit arithmetic, exponents of
normal float32 scales that chain from layer to layer -- and raises :class:`PackedModelError`,
one line naming the file, on the first value out of range. Each field has its own small check
below, so a new field (a layer graph, say) is one more function.

Version 3 holds a layer graph instead of the chain of steps (software/packgraph.py: what models
from ``torch.export`` or ONNX need: residual adds, pools, grouped convolutions, host ops), under
the same whole-content digest; :func:`save` writes it for a GraphModel, :func:`load` returns the
model a file holds (a chain, version 2, or a graph).
"""
from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np

from software.output_set import write_atomically
from software.packing.colcomb import ColumnCombining
from spec import ArrayConfig, ConfigError
from spec.checks import int_range, signed_width_for
from software.frontend.intmodel import (BIAS_BITS, MAX_SHIFT, ConvGeometry, ExportError, IntLayer, IntModel,
                                        Reshape, TermBudget, check_array_config)

FORMAT = "sparsegen-packed-model"
VERSION = 2
DIGEST = "sha256"               # the member holding the whole-content digest

# dtype of every per-layer array, exactly: a file with any other dtype is refused, never cast.
LAYER_ARRAYS = {"packed": np.dtype("<i4"), "select": np.dtype("<i4"), "groups": np.dtype("<i4"),
                "bias": np.dtype("<i8"), "shift": np.dtype("<i8")}
MANIFEST_KEYS = {"format", "version", "array", "input_shape", "input_exponent", "arithmetic", "term_budget",
                 "steps", "info"}
LAYER_KEYS = {"layer", "name", "in_features", "out_features", "groups", "hidden", "input_exponent",
              "output_exponent", "nonzero_weights", "conv"}
RESHAPE_KEYS = {"reshape", "shape"}
CONV_KEYS = {"in_channels", "in_h", "in_w", "kernel", "stride", "padding"}
# Scales are 2**e in float32 (the host quantizes its input in float32): a normal float32 needs
# e >= -126, and the largest real value (2**act_width - 1) * 2**e must stay finite.
MIN_EXPONENT, MAX_EXPONENT = -126, 127
MAX_ELEMENTS = 1 << 24          # per sample and per dimension: a shape beyond this is not a digits-sized model
HOST_BITS = 64                  # the host's bias, shift and logits arithmetic (int64)


class PackedModelError(ValueError):
    """A packed model file that cannot be read or does not make sense. One line, naming the file."""


class _Invalid(Exception):
    """A value out of range; load() names the file."""


def content_digest(members) -> str:
    """SHA-256 over every member but the digest itself, in name order: each member's name, dtype,
    shape and bytes, length-prefixed so that no two different contents hash alike."""
    h = hashlib.sha256()
    for name in sorted(members):
        if name == DIGEST:
            continue
        array = np.ascontiguousarray(members[name])
        header = json.dumps([name, array.dtype.str, list(array.shape)]).encode()
        h.update(f"{len(header)}:".encode() + header + f"{array.nbytes}:".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def packing_arrays(prefix, packing: ColumnCombining):
    """A packing's members of the file: `prefix` + packed, select (F x G) and groups (G x alpha,
    -1 for an empty slot), int32."""
    groups = np.full((len(packing.groups), packing.alpha), -1, dtype=np.int32)
    for g, columns in enumerate(packing.groups):
        groups[g, :len(columns)] = columns
    return {prefix + "packed": packing.packed.astype(np.int32), prefix + "select": packing.select.astype(np.int32),
            prefix + "groups": groups}


def manifest_and_arrays(model: IntModel, info=None):
    arrays, steps = {}, []
    index = 0
    for step in model.steps:
        if isinstance(step, Reshape):
            steps.append({"reshape": step.name, "shape": [int(d) for d in step.shape]})
            continue
        p = step.packing
        prefix = f"layer{index}."
        arrays.update(packing_arrays(prefix, p))
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
        "input_shape": [int(d) for d in model.input_shape],
        "input_exponent": int(model.input_exponent),
        "arithmetic": "per layer: acc = W_int x on the array (acc_width bits); hidden: "
                      "requant_shift(acc + bias, shift, act_width, unsigned) (rounding right shift, "
                      "saturation to [0, 2**act_width - 1] is the ReLU); output: logits = (acc + bias) << shift",
        "term_budget": model.term_budget.as_dict() if model.term_budget else None,
        "steps": steps,
        "info": info or {},
    }
    return manifest, arrays


def members_of(manifest, arrays):
    """Every member of the file, the whole-content digest included."""
    text = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False)
    members = {"manifest": np.frombuffer(text.encode(), dtype=np.uint8), **arrays}
    members[DIGEST] = np.frombuffer(content_digest(members).encode(), dtype=np.uint8)
    return members


GRAPH_MANIFEST_KEYS = MANIFEST_KEYS - {"steps"} | {"graph"}


def graph_manifest(model, info=None):
    """Manifest and arrays of a GraphModel (format version 3)."""
    from software.packgraph import VERSION as GRAPH_VERSION, graph_manifest_and_arrays
    graph, arrays = graph_manifest_and_arrays(model)
    manifest = {
        "format": FORMAT,
        "version": GRAPH_VERSION,
        "array": model.config.as_dict(),
        "input_shape": [int(d) for d in model.input_shape],
        "input_exponent": int(model.input_exponent),
        "arithmetic": "every tensor is v * 2**exponent (unsigned, or signed with an act_width-bit magnitude); "
                      "matmul: acc = W_int x on the array (a signed x as its positive and negative parts), "
                      "acc + bias requantized by a rounding right shift per channel (output: left-aligned "
                      "logits); add: operands shifted to the sum's exponent; see software/frontend/intgraph.py",
        "term_budget": model.term_budget.as_dict() if model.term_budget else None,
        "graph": graph,
        "info": info or {},
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
    members = members_of(manifest, arrays)
    try:        # what load() would refuse is never written (a layer the export let through, say)
        _validate(_manifest(members), members)
    except _Invalid as e:
        raise PackedModelError(f"{os.fspath(path)}: not written, the model is not a valid packed model ({e})") from None
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **members)
    write_atomically(path, buffer.getvalue())
    return manifest




def load(path) -> tuple[IntModel, dict]:
    """Read and validate a packed model; returns (IntModel, manifest)."""
    path = os.fspath(path)
    try:
        members = _read_members(path)
    except FileNotFoundError:
        raise PackedModelError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PackedModelError(f"{path}: is a directory, not a packed model") from None
    except PermissionError:
        raise PackedModelError(f"{path}: permission denied") from None
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes numpy, zlib or zipfile raise
        raise PackedModelError(f"{path}: corrupt packed model ({_first_line(e)})") from None
    try:
        manifest = _manifest(members)       # first: an old or foreign file is named as such
        _check_digest(members)
    except _Invalid as e:
        raise PackedModelError(f"{path}: corrupt packed model ({e})") from None
    try:
        return _validate(manifest, members)
    except _Invalid as e:
        raise PackedModelError(f"{path}: invalid packed model ({e})") from None


def digest(path) -> str:
    """The whole-content SHA-256 of a packed model that load() accepted: what a model accelerator
    generated from it is tied to (spec/model.py's model_sha256)."""
    return _text_member(_read_members(os.fspath(path)), DIGEST)


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _read_members(path):
    npz = np.load(path, allow_pickle=False)
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError("a single .npy array, not an .npz archive")
    with npz:
        return {name: npz[name] for name in npz.files}   # reads every member: zip CRCs are checked


def _text_member(members, name):
    array = members.get(name)
    if array is None:
        raise _Invalid(f"no {name}")
    if array.dtype != np.uint8 or array.ndim != 1:
        raise _Invalid(f"{name} is not a byte string")
    try:
        return array.tobytes().decode()
    except UnicodeDecodeError:
        raise _Invalid(f"{name} is not UTF-8") from None


def _check_digest(members):
    stored = _text_member(members, DIGEST)
    if stored != content_digest(members):
        raise _Invalid("checksum mismatch: the content is not what was written")


# ----------------------------------------------------------------------------------------------
# Field checks: each raises _Invalid with a short reason.


def _reject_constant(name):
    raise _Invalid(f"the manifest holds {name}, which is not JSON")


def _manifest(members):
    try:
        manifest = json.loads(_text_member(members, "manifest"), parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise _Invalid(f"manifest is not JSON ({e.msg})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _Invalid(f"not a {FORMAT} file")
    from software.packgraph import VERSION as GRAPH_VERSION
    if manifest.get("version") not in (VERSION, GRAPH_VERSION):
        raise _Invalid(f"format version {manifest.get('version')!r}, this sparsegen reads {VERSION} and "
                       f"{GRAPH_VERSION}; write it again with python -m software compress")
    _keys(manifest, GRAPH_MANIFEST_KEYS if manifest["version"] == GRAPH_VERSION else MANIFEST_KEYS, "the manifest")
    if not isinstance(manifest["info"], dict) or not isinstance(manifest["arithmetic"], str):
        raise _Invalid("the manifest's info must be a mapping and its arithmetic a text")
    return manifest


def _keys(entry, expected, what):
    if not isinstance(entry, dict):
        raise _Invalid(f"{what} must be a mapping, not {type(entry).__name__}")
    if set(entry) != expected:
        missing, unknown = sorted(expected - set(entry)), sorted(set(entry) - expected)
        raise _Invalid(f"{what}: " + "; ".join(filter(None, [
            missing and f"missing {', '.join(missing)}", unknown and f"unknown {', '.join(unknown)}"])))


def _int(value, what, lo, hi):
    """An int (JSON integer, never a bool or a float) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{what} must be an integer, not {value!r}"[:200])
    if not lo <= value <= hi:
        raise _Invalid(f"{what} {value} outside [{lo}, {hi}]"[:200])
    return value


def _name(value, what):
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise _Invalid(f"{what} must be a short printable name")
    return value


def _shape(value, what):
    if not isinstance(value, list) or not 1 <= len(value) <= 4:
        raise _Invalid(f"{what} must be a list of 1 to 4 dimensions")
    shape = tuple(_int(d, f"{what} dimension", 1, MAX_ELEMENTS) for d in value)
    if int(np.prod(shape)) > MAX_ELEMENTS:
        raise _Invalid(f"{what} {shape} has more than {MAX_ELEMENTS} values")
    return shape


def _exponent(value, what, config):
    return _int(value, what, MIN_EXPONENT, MAX_EXPONENT - config.act_width)


def _config(manifest):
    try:
        config = ArrayConfig.from_dict(manifest["array"])
        check_array_config(config)
    except (ConfigError, ExportError) as e:
        raise _Invalid(f"array configuration: {e}") from None
    return config


def _term_budget(value, config):
    if value is None:
        return None
    _keys(value, {"group", "weight_terms", "data_terms"}, "term budget")
    group = _int(value["group"], "term budget group", 1, 1 << 16)
    return TermBudget(group=group, weight_terms=_int(value["weight_terms"], "term budget weight_terms", 1,
                                                     group * config.weight_width),
                      data_terms=_int(value["data_terms"], "term budget data_terms", 1, config.act_width))


def _conv(value, K):
    if value is None:
        return None
    _keys(value, CONV_KEYS, "conv geometry")
    pairs = {}
    for key, lo in (("kernel", 1), ("stride", 1), ("padding", 0)):
        pair = value[key]
        if not isinstance(pair, list) or len(pair) != 2:
            raise _Invalid(f"conv {key} must be two integers")
        pairs[key] = tuple(_int(v, f"conv {key}", lo, 1 << 12) for v in pair)
    conv = ConvGeometry(in_channels=_int(value["in_channels"], "conv in_channels", 1, MAX_ELEMENTS),
                        in_h=_int(value["in_h"], "conv in_h", 1, 1 << 12),
                        in_w=_int(value["in_w"], "conv in_w", 1, 1 << 12), **pairs)
    if conv.out_h < 1 or conv.out_w < 1 or any(p >= k for p, k in zip(conv.padding, conv.kernel)):
        raise _Invalid("conv geometry leaves no output (or pads by a whole kernel)")
    if conv.in_channels * conv.kernel[0] * conv.kernel[1] != K:
        raise _Invalid(f"conv geometry makes vectors of {conv.in_channels * conv.kernel[0] * conv.kernel[1]} "
                       f"values, the layer takes {K}")
    return conv


def _layer_arrays(members, index, F, G, alpha):
    """The five arrays of layer ``index``: exact dtype, exact shape."""
    shapes = {"packed": (F, G), "select": (F, G), "groups": (G, alpha), "bias": (F,), "shift": (F,)}
    arrays = {}
    for key, dtype in LAYER_ARRAYS.items():
        name = f"layer{index}.{key}"
        array = members.get(name)
        if array is None:
            raise _Invalid(f"no {name}")
        if array.dtype != dtype:
            raise _Invalid(f"{name} is {array.dtype.str}, must be {dtype.str} (not cast)")
        if array.shape != shapes[key]:
            raise _Invalid(f"{name} has shape {array.shape}, the manifest says {shapes[key]}")
        arrays[key] = array.astype(np.int64)
    return arrays


def _in_range(array, lo, hi, what):
    if array.size and (array.min() < lo or array.max() > hi):
        raise _Invalid(f"{what} outside [{lo}, {hi}]")


def _groups(groups, K, alpha):
    """Each group: its columns, then -1s; together the K columns, each exactly once."""
    _in_range(groups, -1, K - 1, "group columns")
    columns = []
    for row in groups:
        used = [int(c) for c in row if c >= 0]
        if not used or (row[len(used):] != -1).any():
            raise _Invalid("a group with no column, or an empty slot before a used one")
        columns.append(used)
    if sorted(c for g in columns for c in g) != list(range(K)):
        raise _Invalid(f"groups do not cover its {K} inputs exactly once")
    return columns


def _selects(select, columns):
    sizes = np.array([len(c) for c in columns], dtype=np.int64)
    if select.size and ((select < 0) | (select >= sizes[None, :])).any():
        raise _Invalid("select indices outside their groups' used slots")


def _accumulator(weights, config):
    """The worst sum of a row, with every activation at its largest, fits the accumulator (the
    export refuses a layer otherwise: the host's requantization must never see a wrap)."""
    _, a_hi = config.act_range
    worst = np.abs(weights).sum(axis=1) * a_hi
    if worst.size and signed_width_for(-int(worst.max()), int(worst.max())) > config.acc_width:
        raise _Invalid(f"its weights can overflow the {config.acc_width}-bit accumulator")
    return worst


def _bias_and_shift(bias, shift, worst, hidden):
    """Biases as the export writes them (BIAS_BITS); shifts within MAX_SHIFT, output layers left
    shifts only; (acc + bias) shifted left never leaves the host's int64."""
    _in_range(bias, *int_range(BIAS_BITS, True), f"biases ({BIAS_BITS}-bit)")
    _in_range(shift, -MAX_SHIFT if hidden else 0, MAX_SHIFT, "hidden-layer shifts" if hidden else "logit shifts")
    left = np.maximum(-shift if hidden else shift, 0)
    for total, amount in zip(worst + np.abs(bias), left):
        if int(total) << int(amount) >= 1 << (HOST_BITS - 1):
            raise _Invalid(f"(acc + bias) << {int(amount)} overflows the host's {HOST_BITS}-bit arithmetic")


def _layer(entry, members, index, shape, config):
    """IntLayer ``index`` from its manifest entry and arrays, and its output shape."""
    _keys(entry, LAYER_KEYS, f"step of layer {index}")
    if _int(entry["layer"], "layer number", 0, 1 << 16) != index:
        raise _Invalid(f"layer {entry['layer']} out of order")
    name = _name(entry["name"], f"layer {index} name")
    F = _int(entry["out_features"], "out_features", 1, MAX_ELEMENTS)
    K = _int(entry["in_features"], "in_features", 1, MAX_ELEMENTS)
    G = _int(entry["groups"], "groups", 1, K)
    if not isinstance(entry["hidden"], bool):
        raise _Invalid("hidden must be true or false")
    a = _layer_arrays(members, index, F, G, config.alpha)
    _in_range(a["packed"], *config.weight_range, f"weights ({config.weight_width}-bit)")
    columns = _groups(a["groups"], K, config.alpha)
    _selects(a["select"], columns)
    if _int(entry["nonzero_weights"], "nonzero_weights", 0, F * K) != int(np.count_nonzero(a["packed"])):
        raise _Invalid("nonzero_weights does not count the packed weights")
    packing = ColumnCombining(groups=columns, packed=a["packed"], select=a["select"], alpha=config.alpha,
                              in_features=K)
    worst = _accumulator(packing.unpack(), config)
    _bias_and_shift(a["bias"], a["shift"], worst, entry["hidden"])
    conv = _conv(entry["conv"], K)
    expected_in = (conv.in_channels, conv.in_h, conv.in_w) if conv else (K,)
    if shape != expected_in:
        raise _Invalid(f"takes {expected_in} but gets {shape}")
    layer = IntLayer(name=name, packing=packing, bias=a["bias"], shift=a["shift"], hidden=entry["hidden"],
                     input_exponent=_exponent(entry["input_exponent"], "input_exponent", config),
                     output_exponent=_exponent(entry["output_exponent"], "output_exponent", config), conv=conv)
    return layer, ((F, conv.out_h, conv.out_w) if conv else (F,))


def _reshape(entry, shape):
    _keys(entry, RESHAPE_KEYS, "reshape step")
    new = _shape(entry["shape"], f"reshape {entry['reshape']!r}"[:80])
    if int(np.prod(new)) != int(np.prod(shape)):
        raise _Invalid(f"reshape from {shape} to {new}")
    return Reshape(_name(entry["reshape"], "reshape name"), new)


def _chain(layers, input_exponent):
    """Hidden layers, then one output layer; each layer's input scale is its producer's output scale."""
    if not layers or any(not l.hidden for l in layers[:-1]) or layers[-1].hidden:
        raise _Invalid("layers must be hidden layers followed by one output layer")
    produced = input_exponent
    for layer in layers:
        if layer.input_exponent != produced:
            raise _Invalid(f"layer '{layer.name}' reads activations at scale 2**{layer.input_exponent}, "
                           f"its input has 2**{produced}")
        produced = layer.output_exponent


def _validate_graph(manifest, members, config, term_budget):
    from software.packgraph import graph_from_manifest

    def fail(message):
        raise _Invalid(message[:300])
    _shape(manifest["input_shape"], "input_shape")
    arrays = {k: v for k, v in members.items() if k not in ("manifest", DIGEST)}
    try:
        return graph_from_manifest(manifest, arrays, config, term_budget, fail), manifest
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
        raise _Invalid(f"the graph is malformed ({_first_line(e)})"[:300]) from None


def _validate(manifest, members):
    config = _config(manifest)
    term_budget = _term_budget(manifest["term_budget"], config)
    if "graph" in manifest:
        return _validate_graph(manifest, members, config, term_budget)
    input_shape = _shape(manifest["input_shape"], "input_shape")
    input_exponent = _exponent(manifest["input_exponent"], "input_exponent", config)
    if not isinstance(manifest["steps"], list):
        raise _Invalid("steps must be a list")
    shape, steps = input_shape, []
    for entry in manifest["steps"]:
        index = sum(isinstance(s, IntLayer) for s in steps)
        where = f"layer {index}"
        try:
            if isinstance(entry, dict) and "reshape" in entry:
                steps.append(_reshape(entry, shape))
                shape = steps[-1].shape
            else:
                layer, shape = _layer(entry, members, index, shape, config)
                steps.append(layer)
        except _Invalid as e:
            name = entry.get("name") if isinstance(entry, dict) else None
            raise _Invalid(f"{where}{f' ({name!r})' if isinstance(name, str) else ''}: {e}"[:300]) from None
    layers = [s for s in steps if isinstance(s, IntLayer)]
    _chain(layers, input_exponent)
    expected = {"manifest", DIGEST} | {f"layer{i}.{k}" for i in range(len(layers)) for k in LAYER_ARRAYS}
    if set(members) != expected:
        raise _Invalid(f"members the manifest does not list: {', '.join(sorted(set(members) - expected))[:100]}")
    model = IntModel(config=config, input_shape=input_shape, input_exponent=input_exponent,
                     steps=tuple(steps), term_budget=term_budget)
    return model, manifest
