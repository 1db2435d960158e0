"""A plain MLP for 64-value inputs (8x8 digits flattened): the simplest model to bring."""
from torch import nn


def digits_mlp(hidden=(128, 64), inputs=64, classes=10):
    layers, width = [], inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, classes))
