"""Packed digits models for the model accelerator's tests, compressed once per test session worker."""

import pytest

from software.frontend.compress import main as software_main
from software.packfile import digest, load


def _compress(directory, *flags):
    assert software_main(["compress", "--model", "digits", "--quant", "int8", "--rows", "4", "--seed", "0",
                          *flags, "-o", str(directory)]) == 0
    path = directory / "model.npz"
    model, _ = load(path)
    return path, model, digest(path)


@pytest.fixture(scope="session")
def colcomb(tmp_path_factory):
    """The README's model: digits MLP, column combining alpha 8, gamma 0.5, int8."""
    return _compress(tmp_path_factory.mktemp("colcomb"), "--method", "colcomb", "--alpha", "8", "--gamma", "0.5")


@pytest.fixture(scope="session")
def dense(tmp_path_factory):
    return _compress(tmp_path_factory.mktemp("dense"), "--method", "dense")


@pytest.fixture(scope="session")
def digits_images():
    from software.models.digits import load_digits_split
    return load_digits_split().x_test


@pytest.fixture(scope="session")
def resnet(tmp_path_factory, digits_images):
    """The digits ResNet (stem, an identity block, a downsampling block, global average pool, linear),
    column combining alpha 8, gamma 0.5, trained briefly on 80 digits: (path, model, digest)."""
    import numpy as np
    directory = tmp_path_factory.mktemp("resnet")
    np.savez(directory / "d.npz", x=np.asarray(digits_images[:80]).reshape(80, 1, 8, 8), y=np.arange(80) % 10)
    assert software_main(["compress", "--model", "examples.models.resnet:digits_resnet", "--data",
                          str(directory / "d.npz"), "--rows", "4", "--epochs", "1", "--finetune-epochs", "1", "-q",
                          "--method", "colcomb", "--alpha", "8", "--gamma", "0.5", "-o", str(directory / "out")]) == 0
    path = directory / "out" / "model.npz"
    model, _ = load(path)
    return path, model, digest(path)
