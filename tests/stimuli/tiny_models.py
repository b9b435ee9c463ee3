"""Tiny models whose predictions are known: the class is the image's dominant colour.

Used as ``package.module:factory`` registry entries in the build tests: red -> "cat",
green -> "dog", blue -> "bird" (and class 3, "car", never wins on a bright image).

:class:`ColorNet` squares its rectified colour maps before pooling, so its gradients, and
with them Guided Backprop and Deconvnet, depend on the photo (the coloured squares show
with their edges): a plain conv-ReLU-mean net has the same gradient image for every
photo, a uniform field that the build rightly scores as blank (``stimuli.structure``).
:class:`CheckerNet` is the opposite on purpose: a stride-2 convolution whose Deconvnet is
the same period-2 checkerboard for every photo, as MobileNetV2's and EfficientNet-Lite's
are (docs/stimuli.md).
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
            # No bias: a channel is active only where its colour is bright (ImageNet-normalized
            # pixels are roughly in [-2, 2.6]; the dark background is about -1.8).
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]]))
            self.fc.bias.zero_()

    def forward(self, x):
        a = self.relu(self.conv(x))
        return self.fc((a * a).mean(dim=(2, 3)))


class CheckerNet(nn.Module):
    """A colour classifier through one stride-2, 2x2 convolution with unequal taps: its
    Deconvnet (and, with the ReLU active everywhere, its Guided Backprop) is the kernel
    tiled over the image, a checkerboard that does not depend on the photo."""

    camstudy_input_size = 32
    camstudy_class_names = CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 2, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(3, 4)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(3):
                self.conv.weight[c, c] = torch.tensor([[1.0, -0.5], [-0.5, 1.0]])
            self.conv.bias.fill_(4.0)  # active everywhere
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


class SmoothColorNet(ColorNet):
    """:class:`ColorNet` with SiLU for its ReLU: no rectifier between input and score, so
    its Guided Backprop and Deconvnet are the plain input gradient (guided_rectifiers 0)."""

    def __init__(self, kernel: int = 3) -> None:
        super().__init__(kernel)
        self.relu = nn.SiLU()


def strong() -> ColorNet:
    return ColorNet(kernel=3)


def weak() -> ColorNet:
    return ColorNet(kernel=1)


def checker() -> CheckerNet:
    return CheckerNet()


def smooth() -> SmoothColorNet:
    return SmoothColorNet()
