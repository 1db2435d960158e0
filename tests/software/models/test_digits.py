"""Digits MLP: fixed split, deterministic training, masks during training, integer inference."""
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from software.models.digits import LAYER_SIZES, build_model, evaluate, load_digits_split, train
from software.frontend.pruning import magnitude_prune, sparsity
from software.frontend.quant import compute_scale, export_layer, quantize, requant_shift, requant_shift_amount


@pytest.fixture(scope="module")
def trained():
    model = build_model(seed=0)
    history = train(model, epochs=30, progress=False)
    return model, history


def test_split_is_fixed_stratified_and_scaled():
    split = load_digits_split()
    assert split.x_train.shape == (1347, 64) and split.x_test.shape == (450, 64)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert float(split.x_train.min()) == 0.0 and float(split.x_train.max()) == 1.0
    # Exactly the documented split: stratified 75/25 with random_state=0.
    data = load_digits()
    _, x_test, _, y_test = train_test_split(
        data.data / 16, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    assert torch.equal(split.x_test, torch.tensor(x_test, dtype=torch.float32))
    assert torch.equal(split.y_test, torch.tensor(y_test))
    test_counts = torch.bincount(split.y_test, minlength=10)
    class_counts = test_counts + torch.bincount(split.y_train, minlength=10)
    assert bool(((test_counts - 0.25 * class_counts).abs() <= 1).all()), "stratified: 25% of every class"
    # The split is a pure function of the data: a fresh load gives the same tensors.
    load_digits_split.cache_clear()
    again = load_digits_split()
    assert torch.equal(again.x_test, split.x_test) and torch.equal(again.y_train, split.y_train)
    # Train + test is exactly the whole data set (every image once, with its label).
    whole = torch.cat([torch.tensor(data.data / 16, dtype=torch.float32), torch.tensor(data.target)[:, None]], 1)
    parts = torch.cat(
        [torch.cat([split.x_train, split.x_test]), torch.cat([split.y_train, split.y_test])[:, None].float()], 1
    )
    whole_rows, whole_counts = torch.unique(whole, dim=0, return_counts=True)
    part_rows, part_counts = torch.unique(parts, dim=0, return_counts=True)
    assert torch.equal(whole_rows, part_rows) and torch.equal(whole_counts, part_counts)


def test_build_model_layers_and_seeded_init():
    model = build_model()
    linear = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == list(zip(LAYER_SIZES[:-1], LAYER_SIZES[1:]))
    assert sum(isinstance(m, nn.ReLU) for m in model) == len(linear) - 1
    assert torch.equal(build_model(seed=3)[0].weight, build_model(seed=3)[0].weight)
    assert not torch.equal(build_model(seed=3)[0].weight, build_model(seed=4)[0].weight)
    state = torch.random.get_rng_state()
    build_model(seed=5)
    assert torch.equal(torch.random.get_rng_state(), state), "build_model must not consume the global RNG"
    with pytest.raises(ValueError, match="64 inputs and 10 outputs"):
        build_model((32, 10))


def test_training_reaches_high_accuracy(trained):
    model, history = trained
    assert len(history) == 30 and history[-1] < history[0] / 10
    assert evaluate(model) >= 0.95
    assert evaluate(model, train_set=True) >= 0.99


def test_training_is_deterministic():
    runs = []
    for _ in range(2):
        model = build_model(seed=1)
        runs.append((train(model, epochs=2, progress=False, seed=7), model[0].weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        train(build_model(), epochs=-1, progress=False)


def test_masks_hook_prunes_during_training():
    calls = []

    def hook(model, epoch):
        calls.append(epoch)
        if epoch in (2, 4, 6):  # gradual magnitude pruning events
            for layer in model:
                if isinstance(layer, nn.Linear):
                    magnitude_prune(layer, 0.25 * epoch / 2)

    model = build_model(seed=0)
    train(model, epochs=12, masks_hook=hook, progress=False)
    assert calls == list(range(13))
    assert evaluate(model) >= 0.93  # the forward pass also refreshes `weight` from weight_orig * mask
    report = sparsity(model)
    for name in ("0", "2", "4"):
        assert report.fraction(name) == pytest.approx(0.75, abs=1e-3)
    for layer in model:
        if isinstance(layer, nn.Linear):
            assert bool((layer.weight[layer.weight_mask == 0] == 0).all())
            assert torch.equal(layer.weight, layer.weight_orig * layer.weight_mask)


def test_integer_only_inference_matches_float_accuracy(trained):
    """8-bit weights and activations with power-of-two scales: integer matmuls and shifts only."""
    model, _ = trained
    split = load_digits_split()
    layers = [m for m in model if isinstance(m, nn.Linear)]
    # Calibrate activation scales (power of two) on the training set.
    scales, x = [compute_scale(split.x_train, 8, signed=False, power_of_two=True)], split.x_train
    with torch.no_grad():
        for layer in layers[:-1]:
            x = torch.relu(layer(x))
            scales.append(compute_scale(x, 8, signed=False, power_of_two=True))
    x_int = quantize(split.x_test, scales[0], 8, signed=False).to(torch.int64)
    for i, layer in enumerate(layers):
        exported = export_layer(layer, 8, per_channel=True, power_of_two=True, input_scale=float(scales[i]))
        acc = x_int @ exported.weight.values.to(torch.int64).T + exported.bias.to(torch.int64)
        if i == len(layers) - 1:
            # Per-channel weight scales differ, so align channels to the finest scale (a left
            # shift) before comparing logits.
            exponents = exported.weight.exponents
            logits = acc << (exponents - exponents.min())
        else:
            shift = requant_shift_amount(exported.weight.scale, scales[i], scales[i + 1])
            x_int = requant_shift(acc, shift, 8, signed=False).to(torch.int64)  # saturation at 0 is the ReLU
            assert int(x_int.min()) >= 0 and int(x_int.max()) <= 255
    accuracy = float((logits.argmax(dim=1) == split.y_test).float().mean())
    assert accuracy >= evaluate(model) - 0.01
