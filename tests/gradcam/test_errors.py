"""Bad input fails early with a ValueError/TypeError whose message says what is wrong."""

import pytest
import torch
import torchvision

from gradcam import default_layer, explain
from tests.conftest import GapNet, OneConv


@pytest.fixture
def net():
    return GapNet().eval()


X = torch.randn(2, 3, 8, 8)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"methods": "gradcan"}, ValueError, "unknown method 'gradcan'"),
        ({"methods": ()}, ValueError, "no method requested"),
        ({"layer": "featurez"}, ValueError, "unknown layer 'featurez'.*did you mean features"),
        ({"layer": torch.nn.Conv2d(1, 1, 1)}, ValueError, "not a submodule"),
        ({"layer": 3}, TypeError, "layer must be"),
        ({"targets": [1, 2, 3]}, ValueError, "got 3 targets for a batch of 2"),
        ({"targets": [1]}, ValueError, "got 1 targets for a batch of 2"),
        ({"targets": 5}, ValueError, "target 5 is out of range for 5 classes"),
        ({"targets": [0, -1]}, ValueError, "out of range"),
        ({"targets": [0.5, 1.0]}, TypeError, "int class indices"),
        ({"targets": torch.tensor([0.0, 1.0])}, TypeError, "integer class indices"),
        ({"targets": True}, TypeError, "not a bool"),
        ({"targets": "cat"}, TypeError, "targets must be"),
        ({"targets": lambda logits: logits.sum()}, ValueError, r"\(N,\) or \(N, K\) scores"),
        ({"x": X[0]}, ValueError, r"\(N, C, H, W\)"),
        ({"x": X.long()}, TypeError, "floating-point"),
        ({"x": X[:0]}, ValueError, "empty batch"),
    ],
)
def test_bad_input(net, kwargs, error, message):
    args = {"x": X, "targets": 1, "layer": "features", **kwargs}
    with pytest.raises(error, match=message):
        explain(net, **args)


def test_layer_that_does_not_run(net):
    net.unused = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="did not run"):
        explain(net, X, 1, layer="unused")


def test_layer_with_non_image_output(net):
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        explain(net, X, 1, layer="fc")


@pytest.mark.parametrize(
    "arch, layer",
    [("vgg16", "features.29"), ("alexnet", "features.11"), ("resnet50", "layer4"), ("mobilenet_v2", "features")],
)
def test_default_layer_is_the_papers(arch, layer):
    assert default_layer(getattr(torchvision.models, arch)(weights=None)) == layer


def test_default_layer_for_efficientnet_lite_is_the_head_activation():
    from efficientnet_lite_pytorch import EfficientNet

    m = EfficientNet.from_name("efficientnet-lite0").eval()
    assert default_layer(m) == "_swish"
    ex = explain(m, torch.randn(1, 3, 224, 224), 3, methods="gradcam")
    assert ex.layer == "_swish"
    assert ex.cam.shape == (1, 7, 7)  # the head's resolution: the last of _swish's two calls


def test_default_layer_needs_a_conv():
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        default_layer(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_reported_layer_is_the_one_used():
    ex = explain(OneConv(), torch.rand(1, 1, 4, 4), 0)
    assert ex.layer == "relu1"
