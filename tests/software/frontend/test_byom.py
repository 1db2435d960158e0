"""Bring your own model: graph capture, the integer layer graph, ONNX import, and the command's arrival paths."""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples.models.mobile import digits_separable
from examples.models.resnet import digits_resnet
from software.frontend.capture import capture
from software.frontend.compress import Options, main
from software.frontend.graph import GraphError, run_float
from software.frontend.intgraph import export_graph
from software.frontend.onnx_import import import_onnx
from software.packfile import load, save

CONFIG = Options(rows=8, alpha=8).array_config()


def _randomize_batchnorm(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model.eval()


def _images(n=64, seed=0):
    return torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))


def test_capture_folds_batchnorm_fuses_relu_and_keeps_the_float_function():
    torch.manual_seed(0)
    model = _randomize_batchnorm(digits_resnet())
    graph = capture(model, (1, 8, 8))
    ops = [(n.name, n.op, n.attrs.get("act")) for n in graph.nodes]
    assert ops == [("x", "input", None), ("conv2d", "conv", [0.0, None]), ("conv2d_1", "conv", [0.0, None]),
                   ("conv2d_2", "conv", None), ("add", "add", [0.0, None]), ("conv2d_3", "conv", None),
                   ("conv2d_4", "conv", [0.0, None]), ("conv2d_5", "conv", None), ("add_1", "add", [0.0, None]),
                   ("adaptive_avgpool", "adaptive_avgpool", None), ("flatten", "flatten", None),
                   ("linear", "linear", None)]
    assert graph.node("add").inputs == ["conv2d_2", "conv2d"]       # the residual
    assert graph.node("conv2d_4").source == "block2.conv1"          # pruning groups are keyed by module path
    x = _images()
    with torch.no_grad():
        assert torch.allclose(run_float(graph, x), model(x), atol=1e-5)


def _conv_reference(node, x_int):
    """The integer conv of a matmul node, computed independently with torch's conv2d in float64 (exact here)."""
    a = node.attrs
    weight = np.concatenate([p.weight_matrix for p in node.parts])
    groups = len(node.parts)
    w = torch.from_numpy(weight.astype(np.float64)).reshape(weight.shape[0], a["in_shape"][0] // groups, *a["kernel"])
    acc = F.conv2d(torch.from_numpy(x_int.astype(np.float64)), w, None, a["stride"], a["padding"], a["dilation"], groups)
    return acc.numpy().astype(np.int64)


def test_grouped_strided_dilated_convolutions_are_exact_integer_convolutions():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.ReLU(),
                          nn.MaxPool2d(2, padding=1), nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))
    _randomize_batchnorm(model)
    x = _images(32)
    graph = capture(model, (1, 8, 8))
    int_model = export_graph(graph, CONFIG, x)
    assert [len(n.parts) for n in int_model.nodes if n.op == "matmul"] == [1, 2, 8, 1]
    env = {}
    x_int = int_model.quantize_input(x)
    int_model.run_with(int_model.golden_fn(), x_int, env=env)
    for node in (n for n in int_model.nodes if n.attrs.get("kind") == "conv"):
        acc = _conv_reference(node, env[node.inputs[0]]) + node.arrays["bias"][None, :, None, None]
        shift = node.arrays["shift"][None, :, None, None]
        expected = np.clip((acc + (1 << (shift - 1))) >> shift, 0, 255)
        if "hi" in node.attrs:                                          # the fused ReLU6
            expected = np.minimum(expected, node.attrs["hi"])
        assert np.array_equal(env[node.name], expected), node.name
    # and the whole integer model stays close to the float model
    y = int_model.dequantize_output(int_model.run_golden(x_int))
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(y - ref).max() < 0.1 * np.abs(ref).max()


def test_signed_inputs_run_as_two_unsigned_passes():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(16, 8))
    x = torch.randn(40, 16)
    int_model = export_graph(capture(model, (16,)), CONFIG, x)
    assert int_model.input.signed
    seen = []

    def layer_fn(index, layer, vectors):
        seen.append(vectors)
        return vectors @ layer.weight_matrix.T
    x_int = int_model.quantize_input(x)
    y = int_model.run_with(layer_fn, x_int)
    assert seen[0].shape == (80, 16) and seen[0].min() >= 0         # x+ then x-, both unsigned
    node = int_model.node("linear")
    exact = (x_int @ int_model.layers[0].weight_matrix.T + node.arrays["bias"]) << node.arrays["shift"]
    assert np.array_equal(y, exact)
    assert int_model.macs(x_int) == 40 * 16 * 8                        # the two passes are one layer's MACs


def test_host_ops_run_on_the_host_and_are_named():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 10))
    x = torch.rand(100, 64)
    int_model = export_graph(capture(model, (64,)), CONFIG, x)
    assert [n.name for n in int_model.host_ops] == ["layer_norm", "gelu"]
    assert int_model.node("linear_1").attrs["split"]               # GELU's output is signed
    with torch.no_grad():
        ref = model(x).numpy()
    y = int_model.dequantize_output(int_model.run_golden(int_model.quantize_input(x)))
    assert (y.argmax(1) == ref.argmax(1)).mean() > 0.9


def test_packed_graph_round_trip(tmp_path):
    torch.manual_seed(4)
    model = _randomize_batchnorm(digits_separable())
    x = _images()
    int_model = export_graph(capture(model, (1, 8, 8)), CONFIG, x)
    save(int_model, tmp_path / "m.npz")
    loaded, manifest = load(tmp_path / "m.npz")
    assert manifest["version"] == 3 and len(loaded.layers) == len(int_model.layers) == 1 + 16 + 1 + 32 + 1 + 1
    x_int = int_model.quantize_input(x)
    assert np.array_equal(loaded.run_golden(x_int), int_model.run_golden(x_int))


# ----------------------------------------------------------------------------------------------
# ONNX


def _export_onnx(model, shape, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros((1,) + shape),), str(path), dynamo=False,
                          training=torch.onnx.TrainingMode.PRESERVE)


def _same_packed(a, b):
    with np.load(a) as za, np.load(b) as zb:
        assert sorted(za.files) == sorted(zb.files)
        ma, mb = (json.loads(z["manifest"].tobytes()) for z in (za, zb))
        for name in za.files:
            if name not in ("manifest", "sha256"):      # the whole-content digest covers info, which differs
                assert np.array_equal(za[name], zb[name]), name
    ma.pop("info"), mb.pop("info")
    assert ma == mb


def test_onnx_export_imports_to_the_identical_packed_model(tmp_path, capsys):
    """The digits ResNet (BatchNorm, two residual blocks) from its factory + state_dict and from ONNX."""
    torch.manual_seed(5)
    model = _randomize_batchnorm(digits_resnet())
    torch.save(model.state_dict(), tmp_path / "w.pt")
    _export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", x=_images(80).numpy(), y=np.arange(80) % 10)
    common = ["--method", "dense", "--data", str(tmp_path / "d.npz"), "--rows", "8", "-q"]
    assert main(["compress", "--model", "examples.models.resnet:digits_resnet", "--weights", str(tmp_path / "w.pt"),
                 "--epochs", "0", *common, "-o", str(tmp_path / "torch")]) == 0
    assert main(["compress", "--model", str(tmp_path / "m.onnx"), *common, "-o", str(tmp_path / "onnx")]) == 0
    _same_packed(tmp_path / "torch" / "model.npz", tmp_path / "onnx" / "model.npz")
    assert "host ops: none" in capsys.readouterr().out


def test_onnx_mlp_gives_the_packed_model_of_its_pytorch_source(tmp_path):
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10)).eval()
    _export_onnx(model, (64,), tmp_path / "m.onnx")
    x = torch.rand(50, 64)
    a, b = (export_graph(g, CONFIG, x) for g in (capture(model, (64,)), import_onnx(tmp_path / "m.onnx")))
    save(a, tmp_path / "a.npz")
    save(b, tmp_path / "b.npz")
    _same_packed(tmp_path / "a.npz", tmp_path / "b.npz")


# ----------------------------------------------------------------------------------------------
# Bad input: one line naming what and where, exit status 2, nothing written


def _onnx_with_sigmoid(path):
    import onnx
    from onnx import TensorProto, helper
    w = helper.make_tensor("w", TensorProto.FLOAT, [10, 64], np.ones(640, dtype=np.float32))
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
             helper.make_node("Sigmoid", ["h"], ["y"], name="squash")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w])
    onnx.save(helper.make_model(graph), str(path))


@pytest.mark.parametrize("case, message", [
    ("onnx-op", "ONNX node 'squash' (Sigmoid) is outside the supported set"),
    ("onnx-prune", "--method colcomb prunes while training, but an ONNX model is not trained here"),
    ("data-shape", "module '0' (Linear) does not take the (50,) input per sample"),
    ("nan", "w.pt: 0.weight holds NaN or inf"),
    ("mismatch", "does not match examples.models.mlp:digits_mlp: missing 4.bias, 4.weight"),
    ("factory", "cannot import examples.models.nothing"),
    ("input-shape", "--input-shape 3,8,8 does not fit samples of 64 values"),
])
def test_bad_input_is_one_line(tmp_path, capsys, case, message):
    out = tmp_path / "out"
    args = ["compress", "-q", "--epochs", "1", "--finetune-epochs", "1", "--rows", "8", "-o", str(out)]
    factory = ["--model", "examples.models.mlp:digits_mlp"]
    state = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)).state_dict()
    if case == "onnx-op":
        _onnx_with_sigmoid(tmp_path / "m.onnx")
        args += ["--model", str(tmp_path / "m.onnx"), "--method", "dense"]
    elif case == "onnx-prune":
        _export_onnx(nn.Sequential(nn.Linear(64, 10)).eval(), (64,), tmp_path / "m.onnx")
        args += ["--model", str(tmp_path / "m.onnx")]
    elif case == "data-shape":
        np.savez(tmp_path / "d.npz", x=np.random.rand(40, 50).astype(np.float32), y=np.arange(40) % 10)
        args += factory + ["--data", str(tmp_path / "d.npz")]
    elif case == "nan":
        state["0.weight"][3, 3] = float("nan")
        torch.save(state, tmp_path / "w.pt")
        args += factory + ["--weights", str(tmp_path / "w.pt")]
    elif case == "mismatch":
        del state["4.weight"], state["4.bias"]
        torch.save(state, tmp_path / "w.pt")
        args += factory + ["--weights", str(tmp_path / "w.pt")]
    elif case == "factory":
        args += ["--model", "examples.models.nothing:net"]
    elif case == "input-shape":
        args += factory + ["--input-shape", "3,8,8"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("python -m software compress: error:"), err
    assert not out.exists()


def test_an_unsupported_onnx_op_exits_2_without_a_traceback(tmp_path):
    _onnx_with_sigmoid(tmp_path / "m.onnx")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "software", "compress", "--model", str(tmp_path / "m.onnx"),
                           "--method", "dense", "-q", "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "ONNX node 'squash' (Sigmoid)" in done.stderr and not out.exists()


def test_data_without_labels_reports_fidelity(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((80, 64), dtype=np.float32))
    out = tmp_path / "out"
    assert main(["compress", "--model", "examples.models.mlp:digits_mlp", "--data", str(tmp_path / "d.npz"),
                 "--method", "dense", "--rows", "8", "-q", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy_is"] == "agreement with the float model" and report["accuracy"]["float_dense"] == 1.0
    assert report["accuracy"]["integer"] > 0.8 and report["test_images"] == 20


def test_unrunnable_node_is_refused_naming_it():
    class Nonzero(nn.Module):
        def forward(self, x):
            return torch.nonzero(x).float()
    with pytest.raises(GraphError) as info:
        capture(nn.Sequential(nn.Linear(4, 4), Nonzero()), (4,))
    assert "\n" not in str(info.value)


class _GoldenBoard:
    """A board whose array is the golden tile-by-tile array model (software.golden.array.ArrayModel)."""

    def __init__(self, config):
        self.config, self.calls = config, 0

    def run_layer(self, packing, x):
        from software.golden.array import ArrayModel
        from software.packing.schedule import schedule_layer
        self.calls += 1
        schedule = schedule_layer(self.config, packing, x)
        return schedule.assemble(ArrayModel(self.config).run(schedule))


def test_the_board_host_runs_a_graph_it_knows_nothing_about(tmp_path):
    from software.host import run_model
    torch.manual_seed(7)
    model = _randomize_batchnorm(digits_resnet())
    x = _images(6)
    save(export_graph(capture(model, (1, 8, 8)), CONFIG, x), tmp_path / "m.npz")
    packed, _ = load(tmp_path / "m.npz")
    board = _GoldenBoard(packed.config)
    x_int = packed.quantize_input(x)
    assert np.array_equal(run_model(board, packed, x_int), packed.run_golden(x_int))
    assert board.calls == len(packed.layers) == 7


@pytest.mark.slow
def test_resnet18_is_captured_packed_and_scheduled_per_layer():
    from examples.models.resnet import resnet18
    from software.frontend.compress import _cost, dense_cost, packed_cost
    from software.frontend.jointopt import ColumnCombiningSchedule
    from software.frontend.pruning import prunable_layers
    torch.manual_seed(0)
    model = resnet18().eval()
    schedule = ColumnCombiningSchedule(epochs=1, alpha=8, gamma=0.5)
    for name, module in prunable_layers(model):
        schedule.prune_event(name, module, schedule.events)
    config = Options(rows=32, alpha=8).array_config()
    x = torch.rand(2, 3, 32, 32)
    int_model = export_graph(capture(model, (3, 32, 32)), config, x, groups=schedule.groups)
    assert len(int_model.layers) == 21 and not int_model.host_ops          # 20 convolutions and the classifier
    assert [n.op for n in int_model.nodes].count("add") == 8 and int_model.node("maxpool").op == "maxpool"
    x_int = int_model.quantize_input(x[:1])
    packed, dense = packed_cost(int_model, x_int), dense_cost(int_model, x_int)
    per_layer = [_cost(config, [l.packing], [v]) for l, v in zip(int_model.layers, int_model.layer_inputs(x_int))]
    assert sum(c.tiles for c in per_layer) == packed.tiles and sum(c.cycles for c in per_layer) == packed.cycles
    assert packed.tiles < dense.tiles / 3 and packed.cycles < dense.cycles / 2


@pytest.mark.slow
def test_minilm_ffn_layers_are_captured_with_attention_on_the_host():
    from examples.models.minilm import FFN_LAYERS, encoder, token_embeddings
    model = encoder()
    x = token_embeddings(["The quick brown fox jumps over the lazy dog.", "Systolic arrays multiply matrices.",
                          "FPGAs run sparse networks.", "It rained all afternoon."], 16)
    graph = capture(model, (16, 384))
    sources = [n.source for n in graph.array_nodes]
    assert len(sources) == 36 and [s for s in sources if s in FFN_LAYERS] == FFN_LAYERS
    assert {n.attrs["target"] for n in graph.host_nodes} == {
        "aten.layer_norm.default", "aten.gelu.default", "aten.softmax.int", "aten.matmul.default", "aten.div.Tensor"}
    int_model = export_graph(graph, CONFIG, x[:3])
    y = int_model.dequantize_output(int_model.run_golden(int_model.quantize_input(x[3:]))).mean(axis=1)[0]
    with torch.no_grad():
        f = model(x[3:]).numpy().mean(axis=1)[0]
    assert float(y @ f / np.linalg.norm(y) / np.linalg.norm(f)) > 0.7


@pytest.mark.parametrize("edit, reason", [
    (lambda m: m["graph"]["nodes"][2].__setitem__("inputs", ["nowhere"]), "are not earlier nodes"),
    (lambda m: m["graph"]["nodes"][2].__setitem__("op", "teleport"), "unknown or misplaced op 'teleport'"),
    (lambda m: m["graph"]["nodes"][2]["attrs"].__setitem__("start", 2), "the graph does not run"),
    (lambda m: m.__setitem__("version", 99), "write it again with python -m software compress"),
])
def test_an_inconsistent_graph_file_is_refused_in_one_line(tmp_path, edit, reason):
    from software.packfile import PackedModelError
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    save(export_graph(capture(model, (1, 8, 8)), CONFIG, _images(8)), tmp_path / "m.npz")
    from software.packfile import members_of
    with np.load(tmp_path / "m.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "sha256"}
    manifest = json.loads(arrays.pop("manifest").tobytes())
    assert [n["op"] for n in manifest["graph"]["nodes"]] == ["input", "matmul", "flatten", "matmul"]
    edit(manifest)
    np.savez(tmp_path / "bad.npz", **members_of(manifest, arrays))     # a consistent digest: the checks below fail
    with pytest.raises(PackedModelError) as info:
        load(tmp_path / "bad.npz")
    assert reason in str(info.value) and "\n" not in str(info.value) and str(info.value).startswith(str(tmp_path))
