"""Models brought by the user through the generated array in Verilator, bit-exact to the golden integer graph.

- the digits ResNet (BatchNorm, two residual blocks) trained here, column-combined (alpha 8, gamma 0.5),
  50 test images through every one of its matrices on the RTL;
- one 3x3 convolution of a ResNet-18 (random weights, 32x32 input), column-combined in one shot.

An 8x8 array keeps the Verilator build short while still cutting every layer into many tiles.
"""
import numpy as np
import pytest
import torch

from examples.models.resnet import resnet18
from sim.model import build_array, run_model, RTLArray
from software.frontend.capture import capture
from software.frontend.compress import Options, compress
from software.frontend.intgraph import export_graph
from software.frontend.jointopt import ColumnCombiningSchedule
from software.golden.array import reference_layer
from software.models.digits import load_digits_split

ROWS = 8
IMAGES = 50


@pytest.fixture(scope="module")
def built():
    return build_array(Options(rows=ROWS, alpha=8).array_config())


@pytest.mark.slow
def test_digits_resnet_through_the_rtl(built):
    opts = Options(model="examples.models.resnet:digits_resnet", input_shape=(1, 8, 8), method="colcomb", alpha=8,
                   gamma=0.5, rows=ROWS, epochs=10, finetune_epochs=10, progress=False)
    result = compress(opts)
    model = result.int_model
    assert result.accuracy["integer"] > 0.85 and result.packed.tiles < result.dense.tiles / 2
    x = load_digits_split().x_test[:IMAGES].reshape(-1, 1, 8, 8)
    x_int = model.quantize_input(x)
    logits, runs = run_model(model, x_int, built, name="byom_resnet")
    assert np.array_equal(logits, model.run_golden(x_int))
    assert [r.name for r in runs] == [layer.name for layer in model.layers] and len(runs) == 7
    for r in runs:
        assert r.cycles == r.model_cycles, r


@pytest.mark.slow
def test_a_resnet18_convolution_through_the_rtl(built):
    torch.manual_seed(0)
    model = resnet18().eval()
    schedule = ColumnCombiningSchedule(epochs=1, alpha=8, gamma=0.5)
    schedule.prune_event("layer1.0.conv1", model.layer1[0].conv1, schedule.events)    # one shot, no training
    x = torch.rand(4, 3, 32, 32)
    int_model = export_graph(capture(model, (3, 32, 32)), built.config, x,
                             groups={"layer1.0.conv1": schedule.groups["layer1.0.conv1"]})
    env = {}
    int_model.run_with(int_model.golden_fn(), int_model.quantize_input(x[:1]), env=env)
    node = int_model.node("conv2d_1")
    assert node.attrs["kernel"] == [3, 3] and len(node.parts) == 1
    layer = node.parts[0]
    assert layer.groups < layer.in_features / 4         # 576 columns combined into far fewer groups
    trace = []
    int_model.run_with(int_model.golden_fn(), int_model.quantize_input(x[:1]), trace=trace)
    vectors = trace[int_model.layers.index(layer)]
    rtl = RTLArray(built, name="byom_resnet18_conv")
    acc = rtl(0, layer, vectors)
    assert np.array_equal(acc, reference_layer(layer.weight_matrix, vectors, built.config.acc_width))
    assert rtl.runs[0].cycles == rtl.runs[0].model_cycles and rtl.runs[0].tiles > 1
