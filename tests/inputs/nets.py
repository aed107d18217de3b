"""Architectures defined outside the workbench, loaded by import path in the tests (``tests.inputs.nets:...``)."""
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ResidualCNN(nn.Module):
    """A residual CNN with BatchNorm for (N, 3, 12, 12) images and 4 classes."""

    def __init__(self, width: int = 8, classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block = Block(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = self.block(F.relu(self.bn(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


def small_mlp(width: int = 16):
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))
