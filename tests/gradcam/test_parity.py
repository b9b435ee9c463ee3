"""Parity with captum on torchvision networks with seeded random weights.

``cam`` must equal captum's ``LayerGradCam(relu_attributions=True)`` and
``guided_backprop`` captum's ``GuidedBackprop`` to a relative error of 1e-4, for several
targets and for square and non-square inputs. Small inputs keep the test fast; the
layers and code paths are the ones used at 224 px.
"""

import pytest
import torch
import torchvision
from captum.attr import GuidedBackprop, LayerGradCam

from gradcam import explain
from tests.conftest import rel_err


@pytest.fixture(scope="module", params=["vgg16", "alexnet", "resnet18"])
def net(request):
    torch.manual_seed(0)
    return request.param, getattr(torchvision.models, request.param)(weights=None).eval()


SIZES = {"vgg16": [(64, 64), (64, 96)], "alexnet": [(127, 127), (127, 160)], "resnet18": [(64, 64), (96, 64)]}
LAYERS = {"vgg16": "features.29", "alexnet": "features.11", "resnet18": "layer4"}


@pytest.mark.parametrize("size_index", [0, 1])
@pytest.mark.parametrize("targets", [[3, 17], [999, 0]])
def test_matches_captum(net, size_index, targets):
    name, model = net
    h, w = SIZES[name][size_index]
    x = torch.randn(2, 3, h, w)
    ex = explain(model, x, targets, methods=("gradcam", "guided_backprop"))
    assert ex.layer == LAYERS[name]
    layer = dict(model.named_modules())[ex.layer]
    ref_cam = LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)[:, 0]
    ref_gb = GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=targets)
    assert ex.cam.shape == ref_cam.shape
    assert ex.cam.abs().max() > 0
    assert rel_err(ex.cam, ref_cam) <= 1e-4
    assert rel_err(ex.guided_backprop, ref_gb) <= 1e-4


def test_conv_layer_before_inplace_relu_matches_captum():
    """The hooked activation is cloned, so the in-place ReLU after the conv cannot alter it."""
    torch.manual_seed(1)
    model = torchvision.models.vgg11(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    ex = explain(model, x, [1, 2], layer="features.18", methods="gradcam")
    ref = LayerGradCam(model, model.features[18]).attribute(x, target=[1, 2], relu_attributions=True)[:, 0]
    assert rel_err(ex.cam, ref) <= 1e-4
