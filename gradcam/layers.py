"""Which layer Grad-CAM reads: resolving a user's choice, and the paper's default.

The paper takes the rectified output of the last convolutional layer. For the common
architectures that is:

============================  =====================================================
architecture                  layer
============================  =====================================================
torchvision VGG-16            ``features.29`` (ReLU after the last conv)
torchvision AlexNet           ``features.11`` (ReLU after the last conv)
torchvision ResNet            ``layer4`` (the last block's rectified output)
torchvision MobileNetV2       ``features`` (ends in the last conv's ReLU6)
EfficientNet-Lite (lukemelas)  ``_swish`` (its last call: the head conv's ReLU6)
============================  =====================================================

For any other network the default is the first activation module registered after the
last ``nn.Conv2d`` (the conv itself when there is none), which reproduces the table above
for VGG, AlexNet and EfficientNet-Lite.

A module that runs more than once in a forward pass (EfficientNet-Lite's shared
``_swish``, the ``relu`` of a torchvision Bottleneck) is read at its **last** call.
"""

from __future__ import annotations

import difflib

from torch import nn

# Explicit choices where the generic rule would name a different module for the same
# tensor, or the paper names the block rather than its last activation.
_BY_CLASS = {
    "ResNet": "layer4",
    "MobileNetV2": "features",
}

_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Mish,
)


def default_layer(model: nn.Module) -> str:
    """Name of the paper's Grad-CAM layer for ``model`` (see the module docstring)."""
    name = _BY_CLASS.get(type(model).__name__)
    if name is not None and name in dict(model.named_modules()):
        return name
    modules = list(model.named_modules())
    last_conv = None
    for i, (_, m) in enumerate(modules):
        if isinstance(m, nn.Conv2d):
            last_conv = i
    if last_conv is None:
        raise ValueError(
            f"cannot choose a Grad-CAM layer for {type(model).__name__}: it has no nn.Conv2d; "
            "pass layer= explicitly"
        )
    for name, m in modules[last_conv + 1 :]:
        if isinstance(m, _ACTIVATIONS):
            return name
    return modules[last_conv][0]


def resolve_layer(model: nn.Module, layer: str | nn.Module | None) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for a dotted name, a module of ``model``, or None.

    Raises:
        ValueError: the name is not a module of ``model`` (the message suggests close
            names), or the module object does not belong to ``model``.
        TypeError: ``layer`` is neither a string, a module nor None.
    """
    named = dict(model.named_modules())
    if layer is None:
        name = default_layer(model)
        return name, named[name]
    if isinstance(layer, str):
        if layer not in named or layer == "":
            close = difflib.get_close_matches(layer, [n for n in named if n], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown layer {layer!r} for {type(model).__name__}{hint}")
        return layer, named[layer]
    if isinstance(layer, nn.Module):
        for name, m in named.items():
            if m is layer:
                return name, m
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
    raise TypeError(f"layer must be a module name, an nn.Module or None, not {type(layer).__name__}")
