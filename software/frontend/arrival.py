"""How a model and its data arrive at ``python -m software compress``.

Models (``--model``):
  digits                      the built-in 64-128-64-10 MLP (software.models.digits)
  pkg.module:factory          ``factory()`` from an importable module (the current directory is on the
                              path), with ``--weights file.pt``: a state_dict read with
                              ``torch.load(weights_only=True)`` (tensors only: nothing in it runs)
  model.onnx                  parsed with the ``onnx`` package into the same graph (no training)
  model.pt                    a whole pickled module: only with ``--trust-pickle``
Data (``--data``): ``digits`` (built in), or a ``.npz`` with ``x`` (float, n x sample shape) and
optionally ``y`` (int labels); ``--input-shape`` reshapes every sample. Split deterministically
into calibration/training (75%) and evaluation (25%).
"""
from __future__ import annotations

import importlib
import os
import sys
import zipfile

import numpy as np
import torch
from torch import nn

from .sparsity import CompressError


def _one_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_factory(spec: str, weights=None) -> nn.Module:
    """``pkg.module:factory`` called with no arguments; ``weights`` (a state_dict file) loaded strictly."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CompressError(f"--model {spec}: give pkg.module:factory")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise CompressError(f"--model {spec}: cannot import {module_name} ({_one_line(e)})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CompressError(f"--model {spec}: {module_name} has no callable {attr}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise CompressError(f"--model {spec}: {attr}() returned a {type(model).__name__}, not an nn.Module")
    if weights is not None:
        load_weights(model, weights, spec)
    return model.float().cpu()


def load_weights(model: nn.Module, path, where):
    if not os.path.isfile(path):
        raise CompressError(f"--weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, TypeError) as e:
        text = str(e)
        if "unsupported global" in text.lower() or "weights_only" in text.lower():
            raise CompressError(f"--weights {path}: not a plain state_dict (it pickles objects; save "
                                "model.state_dict())") from None
        raise CompressError(f"--weights {path}: not a readable torch file ({_one_line(e)})") from None
    if isinstance(state, nn.Module) or not isinstance(state, dict) \
            or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CompressError(f"--weights {path}: not a state_dict of tensors")
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CompressError(f"--weights {path}: {key} holds NaN or inf")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} is {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model")
        raise CompressError(f"--weights {path} does not match {where}: {'; '.join(parts)}")
    model.load_state_dict(state)


def load_data(spec: str, input_shape=None, seed=0):
    """(x_train, y_train, x_test, y_test) float32 / int64 tensors (y None without labels) and a label."""
    if spec == "digits":
        from software.models.digits import load_digits_split
        s = load_digits_split()
        parts = [s.x_train, s.y_train, s.x_test, s.y_test]
        name = "digits"
    else:
        if not os.path.isfile(spec):
            raise CompressError(f"--data {spec}: no such file")
        try:
            with np.load(spec, allow_pickle=False) as npz:
                files = set(npz.files)
                if "x" not in files:
                    raise CompressError(f"--data {spec}: no array 'x' (give x, and y for accuracy)")
                x = np.asarray(npz["x"])
                y = np.asarray(npz["y"]) if "y" in files else None
        except CompressError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise CompressError(f"--data {spec}: not a readable .npz ({_one_line(e)})") from None
        if x.ndim < 2 or len(x) < 4 or not np.issubdtype(x.dtype, np.number):
            raise CompressError(f"--data {spec}: x must be numbers, n x sample shape with n >= 4, not {x.shape}")
        if not np.isfinite(x.astype(np.float64)).all():
            raise CompressError(f"--data {spec}: x holds NaN or inf")
        if y is not None and (y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
            raise CompressError(f"--data {spec}: y must be {len(x)} non-negative integer labels, not {y.dtype} "
                                f"{y.shape}")
        order = np.random.default_rng(seed).permutation(len(x))
        cut = (3 * len(x)) // 4
        tr, te = order[:cut], order[cut:]
        x = torch.from_numpy(x.astype(np.float32))
        y = torch.from_numpy(y.astype(np.int64)) if y is not None else None
        parts = [x[tr], None if y is None else y[tr], x[te], None if y is None else y[te]]
        name = os.path.basename(spec)
    if input_shape is not None:
        shape = tuple(input_shape)
        size = int(np.prod(parts[0].shape[1:]))
        if int(np.prod(shape)) != size:
            raise CompressError(f"--input-shape {','.join(map(str, shape))} does not fit samples of {size} values")
        parts[0] = parts[0].reshape((-1,) + shape)
        parts[2] = parts[2].reshape((-1,) + shape)
    return parts, name


def parse_shape(text):
    try:
        shape = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise CompressError(f"--input-shape {text}: give positive sizes like 1,8,8")
    return shape
