"""Tiny models whose predictions are known: the class is the image's dominant colour.

Used as ``package.module:factory`` registry entries in the build tests: red -> "cat",
green -> "dog", blue -> "bird" (and class 3, "car", never wins on a bright image).
"""

import torch
from torch import nn

CLASSES = ["cat", "dog", "bird", "car"]


class ColorNet(nn.Module):
    camstudy_input_size = 32
    camstudy_class_names = CLASSES

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel, padding=kernel // 2)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(3, 4)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(3):
                self.conv.weight[c, c] = 1.0 / kernel**2
            self.conv.bias.fill_(2.0)  # ImageNet-normalized pixels are roughly in [-2, 2.6]
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def strong() -> ColorNet:
    return ColorNet(kernel=3)


def weak() -> ColorNet:
    return ColorNet(kernel=1)
