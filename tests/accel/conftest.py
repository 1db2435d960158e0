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
