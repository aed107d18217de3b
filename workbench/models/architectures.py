"""The built-in reference architectures for the digits data: a ReLU MLP, a LeNet-like CNN, a
parameter-efficient CNN with global average pooling, and a small ResNet with BatchNorm."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MLP", "SmallCNN", "GAPCNN", "BasicBlock", "SmallResNet", "ARCHITECTURES", "build"]


class MLP(nn.Module):
    """A plain ReLU multilayer perceptron: ``in -> hidden... -> out``."""

    def __init__(self, in_features: int = 64, hidden: Sequence[int] = (128, 128), num_classes: int = 10,
                 bias: bool = True):
        super().__init__()
        sizes = [in_features, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes, bias=bias)
        self.config = dict(in_features=in_features, hidden=list(hidden), num_classes=num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers:
            x = F.relu(layer(x))
        return self.head(x)


class SmallCNN(nn.Module):
    """A LeNet-like CNN for 8x8 single-channel images (two 3x3 convolutions, one pooling, two FC)."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32), hidden: int = 64,
                 num_classes: int = 10, image_size: int = 8):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        side = image_size // 2
        self.fc1 = nn.Linear(c2 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.config = dict(in_channels=in_channels, channels=list(channels), hidden=hidden,
                           num_classes=num_classes, image_size=image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flat digits
            side = int(round((x.shape[1] / self.conv1.in_channels) ** 0.5))
            x = x.view(x.shape[0], self.conv1.in_channels, side, side)
        x = F.relu(self.conv1(x))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class BasicBlock(nn.Module):
    """Residual block: conv-BN-ReLU-conv-BN plus identity (or 1x1 conv-BN when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A small ResNet with BatchNorm for 8x8 images: stem, two stages of basic blocks, linear head."""

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: Sequence[int] = (1, 1),
                 num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages: List[nn.Module] = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * (2 ** i)
            for j in range(n):
                stages.append(BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)
        self.config = dict(in_channels=in_channels, width=width, blocks=list(blocks), num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            side = int(round((x.shape[1] / self.conv1.in_channels) ** 0.5))
            x = x.view(x.shape[0], self.conv1.in_channels, side, side)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class GAPCNN(nn.Module):
    """A parameter-efficient CNN for 8x8 images: three 3x3 convolutions, global average pooling and a linear
    head, with no wide fully connected layer (about 14k parameters against the LeNet-like CNN's 38k, 86 % of
    which sit in its first fully connected layer)."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 32), num_classes: int = 10,
                 image_size: int = 8):
        super().__init__()
        sizes = [in_channels, *channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes)
        self.config = dict(in_channels=in_channels, channels=list(channels), num_classes=num_classes,
                           image_size=image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flat digits
            side = int(round((x.shape[1] / self.convs[0].in_channels) ** 0.5))
            x = x.view(x.shape[0], self.convs[0].in_channels, side, side)
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.head(x.mean(dim=(2, 3)))


ARCHITECTURES: Dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "cnn-gap": GAPCNN,
    "resnet": SmallResNet,
}


def build(name: str, *, seed: int = 0, **config: Any) -> nn.Module:
    """A freshly initialised reference model (``"mlp"``, ``"cnn"``, ``"cnn-gap"`` or ``"resnet"``), seeded."""
    key = name.lower()
    if key not in ARCHITECTURES:
        raise ValueError(f"model={name!r} is not a reference architecture; choose one of {sorted(ARCHITECTURES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ARCHITECTURES[key](**config)
    model.arch = key  # type: ignore[attr-defined]
    return model
