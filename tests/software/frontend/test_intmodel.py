"""Integer export: bit-exact against an independent torch emulation, packing, costs, the packed file."""
import copy
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from software.packing.colcomb import dense_grouping, pack
from software.frontend.compress import dense_cost, packed_cost
from spec import ArrayConfig
from software.golden.array import wrap
from software.frontend.intmodel import ExportError, IntLayer, TermBudget, export_model, golden_matmul
from software.frontend.jointopt import ColumnCombiningSchedule
from software.models.digits import build_model, evaluate, load_digits_split, train
from software.packfile import PackedModelError, load, save
from software.frontend.quant import quantize_tensor
from software.frontend.termquant import hese_encode
from tests.reliability import crafted

CONFIG = ArrayConfig(rows=8, cols=8, alpha=8, act_signed=False)


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


@pytest.fixture(scope="module")
def dense(split):
    model = build_model(seed=0)
    train(model, epochs=12, progress=False)
    return model


@pytest.fixture(scope="module")
def combined(dense):
    model = copy.deepcopy(dense)
    schedule = ColumnCombiningSchedule(epochs=10, alpha=8, gamma=0.5)
    train(model, epochs=10, masks_hook=schedule, progress=False)
    return model, schedule.groups


def torch_emulation(model, int_model, x_float):
    """The integer model, recomputed with torch float64 ops from the torch model's own layers.

    Independent of software.frontend.intmodel's arithmetic: weights re-quantized from the torch module,
    F.linear / F.conv2d on exact integer-valued float64 (all sums < 2**53), rounding by
    floor(v / 2**s + 0.5), saturation by clamp.
    """
    x = torch.floor(x_float.double() / 2.0 ** int_model.input_exponent + 0.5).clamp(0, 255)
    layers = iter(int_model.layers)
    for module in model:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            layer = next(layers)
            w = module.weight_orig * module.weight_mask if hasattr(module, "weight_mask") else module.weight
            q = quantize_tensor(w.detach(), 8, per_channel=True, power_of_two=True).values.double()
            b = torch.from_numpy(layer.bias).double()
            if isinstance(module, nn.Linear):
                acc = F.linear(x, q) + b
            else:
                acc = F.conv2d(x, q, stride=module.stride, padding=module.padding) + b[:, None, None]
            shift = torch.from_numpy(layer.shift).double()
            shift = shift if acc.ndim == 2 else shift[:, None, None]
            if layer.hidden:
                x = torch.floor(acc / 2.0 ** shift + 0.5).clamp(0, 255)
            else:
                x = acc * 2.0 ** shift
        elif isinstance(module, (nn.Flatten, nn.Unflatten)):
            x = module(x)
    return x.reshape(len(x), -1)


def test_dense_export_is_bit_exact_and_accurate(dense, split):
    int_model = export_model(dense, CONFIG, split.x_train)
    x_int = int_model.quantize_input(split.x_test)
    logits = int_model.run_golden(x_int)
    emulated = torch_emulation(dense, int_model, split.x_test)
    assert np.array_equal(logits, emulated.numpy().astype(np.int64))
    accuracy = float((logits.argmax(1) == split.y_test.numpy()).mean())
    assert accuracy >= evaluate(dense) - 0.01
    # Logits dequantized with the output exponent approximate the float logits.
    with torch.no_grad():
        reference = dense(split.x_test).numpy()
    assert np.abs(logits * 2.0 ** int_model.layers[-1].output_exponent - reference).max() < 0.5
    # Digits pixels k/16 quantize exactly.
    assert np.array_equal(x_int * 2.0 ** int_model.input_exponent, split.x_test.numpy())


def test_colcomb_export_packs_by_the_training_groups(combined, split):
    model, groups = combined
    int_model = export_model(model, CONFIG, split.x_train, groups=groups)
    for layer, (name, module) in zip(int_model.layers, [(n, m) for n, m in model.named_children()
                                                       if isinstance(m, nn.Linear)]):
        assert layer.name == name and layer.packing.groups == groups[name]
        w = (module.weight_orig * module.weight_mask).detach()
        expected = quantize_tensor(w, 8, per_channel=True, power_of_two=True).values.numpy()
        assert np.array_equal(layer.weight_matrix, expected)
        assert layer.groups <= CONFIG.cols * 2
    x_int = int_model.quantize_input(split.x_test)
    assert np.array_equal(int_model.run_golden(x_int),
                          torch_emulation(model, int_model, split.x_test).numpy().astype(np.int64))
    # Fewer tiles and cycles than the same layers dense.
    packed, dense = packed_cost(int_model, x_int[:64]), dense_cost(int_model, x_int[:64])
    assert packed.tiles * 2.5 <= dense.tiles and packed.cycles < dense.cycles


def test_run_with_hands_each_layer_its_vectors(combined, split):
    model, groups = combined
    int_model = export_model(model, CONFIG, split.x_train, groups=groups)
    x_int = int_model.quantize_input(split.x_test[:5])
    seen = []

    def layer_fn(index, layer, vectors):
        seen.append((index, layer.name, vectors.shape))
        assert vectors.min() >= 0 and vectors.max() <= 255
        return golden_matmul(CONFIG)(index, layer, vectors)

    assert np.array_equal(int_model.run_with(layer_fn, x_int), int_model.run_golden(x_int))
    assert seen == [(0, "0", (5, 64)), (1, "2", (5, 128)), (2, "4", (5, 64))]
    with pytest.raises(ValueError, match="the matmul returned"):
        int_model.run_with(lambda i, layer, v: np.zeros((1, 1)), x_int)
    with pytest.raises(ValueError, match="integer inputs must be in"):
        int_model.run_with(layer_fn, x_int - 1)


def test_accumulator_wraps_like_the_array():
    """The golden matmul wraps to acc_width exactly like the hardware's accumulator."""
    config = ArrayConfig(rows=2, cols=2, alpha=1, act_signed=False, acc_width=20)
    packing = pack(np.full((1, 40), 127), dense_grouping(40), 1)
    layer = IntLayer("x", packing, np.zeros(1, np.int64), np.zeros(1, np.int64), True, 0, 0)
    x = np.full((1, 40), 255)
    assert golden_matmul(config)(0, layer, x)[0, 0] == wrap(40 * 255 * 127, 20) != 40 * 255 * 127


def test_conv_model_through_im2col(split):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(6, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 10))
    schedule = ColumnCombiningSchedule(epochs=4, alpha=4, gamma=0.5)
    train(model, epochs=4, masks_hook=schedule, progress=False)
    config = ArrayConfig(rows=4, cols=4, alpha=4, act_signed=False)
    int_model = export_model(model, config, split.x_train, groups=schedule.groups)
    conv = int_model.layers[0]
    assert conv.conv.out_h == 8 and int_model.layers[1].conv.out_h == 3
    assert conv.in_features == 9 and int_model.layers[1].in_features == 54
    x_int = int_model.quantize_input(split.x_test[:40])
    assert np.array_equal(int_model.run_golden(x_int),
                          torch_emulation(model, int_model, split.x_test[:40]).numpy().astype(np.int64))
    trace = int_model.layer_inputs(x_int)
    assert [t.shape for t in trace] == [(40 * 64, 9), (40 * 9, 54), (40, 72)]


def test_term_quantization_budgets(dense, split):
    budget = TermBudget(group=8, weight_terms=8, data_terms=2)
    int_model = export_model(dense, CONFIG, split.x_train, term_budget=budget)
    for layer in int_model.layers:
        w = layer.weight_matrix
        counts = hese_encode(torch.from_numpy(w), 8).counts().numpy()
        # A truncation that rounds up to 128 saturates to 127 = +128 - 1: one extra term each.
        counts -= np.abs(w) == 127
        padded = np.pad(counts, ((0, 0), (0, -counts.shape[1] % 8)))
        assert padded.reshape(counts.shape[0], -1, 8).sum(axis=2).max() <= 8
    x_int = int_model.quantize_input(split.x_test[:50])
    for vectors in int_model.layer_inputs(x_int):
        assert hese_encode(torch.from_numpy(vectors), 8).counts().max() <= 2
        assert vectors.max() <= 255
    plain = export_model(dense, CONFIG, split.x_train)
    assert int_model.term_pairs(x_int) < plain.term_pairs(x_int) / 2
    accuracy = float((int_model.predict(int_model.quantize_input(split.x_test)) == split.y_test.numpy()).mean())
    assert accuracy >= evaluate(dense) - 0.03


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)),
     r"layer '1' \(BatchNorm1d\) is not supported"),
    (nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 10)), r"layer '0' \(Linear 64->32\) is not followed by nn.ReLU"),
    (nn.Sequential(nn.Linear(100, 32), nn.ReLU(), nn.Linear(32, 10)), r"layer '0' \(Linear 100->32\) does not take"),
    (nn.Sequential(nn.Linear(64, 10), nn.ReLU()), r"layer '1' \(ReLU\) after the output"),
    (nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3, dilation=2), nn.ReLU(), nn.Flatten(),
                   nn.Linear(64, 10)), r"layer '1' \(Conv2d 1->4 k=\(3, 3\)\): groups, dilation"),
    (nn.Sequential(nn.Sequential(nn.Linear(64, 10)), nn.Sigmoid()), r"layer '1' \(Sigmoid\)"),
])
def test_unsupported_models_name_the_layer(model, message, split):
    with pytest.raises(ExportError, match=message):
        export_model(model, CONFIG, split.x_train[:10])


def test_bad_array_or_data(dense, split):
    with pytest.raises(ExportError, match="unsigned activations"):
        export_model(dense, ArrayConfig(rows=8, cols=8, alpha=8), split.x_train[:10])
    with pytest.raises(ExportError, match="non-negative"):
        export_model(dense, CONFIG, split.x_train[:10] - 0.5)
    narrow = ArrayConfig(rows=4, cols=1, alpha=1, act_signed=False, acc_width=18)
    with pytest.raises(ExportError, match=r"layer '0' .* overflow the 18-bit accumulator"):
        export_model(dense, narrow, split.x_train[:10])
    with pytest.raises(ExportError, match="do not pack losslessly"):
        export_model(dense, CONFIG, split.x_train[:10], groups={"0": [list(range(i, i + 8)) for i in range(0, 64, 8)]})


# ----------------------------------------------------------------------------------------------
# The packed file


@pytest.fixture(scope="module")
def saved(combined, split, tmp_path_factory):
    model, groups = combined
    int_model = export_model(model, CONFIG, split.x_train, groups=groups)
    path = tmp_path_factory.mktemp("packed") / "model.npz"
    save(int_model, path, info={"note": "test"})
    return int_model, path


def test_save_load_round_trip(saved, split):
    int_model, path = saved
    loaded, manifest = load(path)
    assert loaded.config == int_model.config and manifest["info"] == {"note": "test"}
    x_int = int_model.quantize_input(split.x_test)
    assert np.array_equal(loaded.run_golden(x_int), int_model.run_golden(x_int))
    for a, b in zip(loaded.layers, int_model.layers):
        assert a.packing.groups == b.packing.groups and np.array_equal(a.packing.select, b.packing.select)
    assert manifest["array"]["act_signed"] is False and len(manifest["steps"]) == 3


def _rewrite(src, dst, change):
    """Copy a packed file, letting ``change(name, bytes) -> bytes`` edit its members (valid zip)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, change(item.filename, zin.read(item.filename)))


def _npy(array):
    out = io.BytesIO()
    np.lib.format.write_array(out, array)
    return out.getvalue()


def _edit_manifest(edit):
    def change(name, data):
        if name != "manifest.npy":
            return data
        manifest = json.loads(np.lib.format.read_array(io.BytesIO(data)).tobytes())
        edit(manifest)
        return _npy(np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    return change


@pytest.mark.parametrize("corruption, reason", [
    ("truncate", "corrupt packed model"),
    ("flip", "corrupt packed model"),
    ("junk", "corrupt packed model"),
    ("array", "checksum mismatch"),
    ("select", "select indices outside"),
    ("version", "format version"),
    ("config", "array configuration"),
    ("missing", "no such file"),
])
def test_corrupt_files_get_one_line_naming_the_file(saved, tmp_path, corruption, reason):
    _, path = saved
    bad = tmp_path / "bad.npz"
    data = path.read_bytes()
    if corruption == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    elif corruption == "flip":
        middle = len(data) // 2
        bad.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    elif corruption == "junk":
        bad.write_bytes(b"not a zip file at all")
    elif corruption == "array":
        def change(name, member):
            if name != "layer1.packed.npy":
                return member
            return member[:-1] + bytes([(member[-1] + 1) % 256])
        _rewrite(path, bad, change)
    elif corruption == "select":
        # The whole-content hash recomputed after the edit, so that the range check itself is what fails.
        members = crafted.read(path)
        members["layer0.select"] = members["layer0.select"] + 9
        crafted.write(members, bad)
    elif corruption == "version":
        _rewrite(path, bad, _edit_manifest(lambda m: m.__setitem__("version", 99)))
    elif corruption == "config":
        members = crafted.read(path)
        members["manifest"]["array"]["rows"] = 0
        crafted.write(members, bad)
    elif corruption == "missing":
        bad = tmp_path / "absent.npz"
    with pytest.raises(PackedModelError) as info:
        load(bad)
    message = str(info.value)
    assert message.startswith(str(bad)) and reason in message and "\n" not in message


def test_negligible_channels_keep_shifts_and_biases_in_range(dense, split):
    """A dead unit's weights decay towards 0; its scale is floored instead of following them."""
    model = copy.deepcopy(dense)
    with torch.no_grad():
        model[0].weight[3] = 1e-20
        model[0].bias[3] = -7.0
        model[4].weight[2] *= 1e-15
    int_model = export_model(model, CONFIG, split.x_train)
    for layer in int_model.layers:
        assert layer.shift.max() <= 30 and np.abs(layer.bias).max() < 2 ** 31
    assert not int_model.layers[0].weight_matrix[3].any()
    x_int = int_model.quantize_input(split.x_test)
    with torch.no_grad():
        reference = model(split.x_test).argmax(1).numpy()
    assert (int_model.predict(x_int) == reference).mean() >= 0.98
