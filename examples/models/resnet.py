"""ResNet-style CNNs: a small one for 8x8 digits, and the standard ResNet-18 (He et al. 2016).

Each factory takes no required argument and returns an untrained nn.Module; weights come from
training (``--epochs``) or from ``--weights file.pt`` (a state_dict). ResNet-18 is written here
rather than taken from torchvision (whose registry wheel is a CUDA build that does not load
against the CPU torch of this project); its layer structure is torchvision's.
"""
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the input (through a 1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DigitsResNet(nn.Module):
    """8x8 digits (1 channel) -> 10 logits: a stem conv, two residual blocks (and `extra` blocks whose
    shortcut is the previous block's output), global average pool, linear."""

    def __init__(self, width=16, classes=10, extra=0):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = BasicBlock(width, width)
        self.block2 = BasicBlock(width, 2 * width, stride=2)
        if extra:
            self.extra = nn.Sequential(*(BasicBlock(2 * width, 2 * width) for _ in range(extra)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        if hasattr(self, "extra"):
            x = self.extra(x)
        return self.fc(self.pool(x).flatten(1))


class ResNet18(nn.Module):
    """torchvision's resnet18 layout; ``small_input`` (32x32) uses a 3x3 stem without max pooling (as for CIFAR)."""

    def __init__(self, classes=1000, small_input=False):
        super().__init__()
        if small_input:
            self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        layers, channels = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(channels, width, stride), BasicBlock(width, width)))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def digits_resnet():
    return DigitsResNet()


def digits_resnet_deep():
    """The digits ResNet with a third block whose shortcut is the second block's output (ResNet's identity blocks)."""
    return DigitsResNet(width=8, extra=1)


def resnet18():
    """ResNet-18 as published (7x7 stem, max pool), 1000 classes: takes 3 x 224 x 224, or 3 x 32 x 32."""
    return ResNet18()
