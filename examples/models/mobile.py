"""A depthwise-separable CNN (MobileNet's building block) for 8x8 digits."""
from torch import nn


def separable(in_channels, channels, stride=1):
    """3x3 depthwise conv (one 1 x 9 matrix per channel on the array) + BN + ReLU6, then 1x1 pointwise + BN + ReLU6."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels), nn.ReLU6(),
        nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU6())


def digits_separable(width=16, classes=10):
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        separable(width, 2 * width),
        separable(2 * width, 2 * width, stride=2),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * width * 2 * 2, classes))
