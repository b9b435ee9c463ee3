"""Golden values on captum's one-conv toy net (values from captum's own tests)."""

import pytest
import torch

from gradcam import explain
from tests.conftest import OneConv

INP = torch.arange(16, dtype=torch.float).view(1, 1, 4, 4)

GRADCAM_AT_CONV = [[[11.25, 13.5], [20.25, 22.5]]]
GRADCAM_AT_RELU = [[[0.0, 4.0], [28.0, 32.5]]]
GUIDED_BACKPROP = [[[[0.0, 1.0, 1.0, 1.0], [1.0, 3.0, 3.0, 2.0], [1.0, 3.0, 3.0, 2.0], [1.0, 2.0, 2.0, 1.0]]]]
DECONVNET = [[[[2.0, 3.0, 3.0, 1.0], [3.0, 5.0, 5.0, 2.0], [3.0, 5.0, 5.0, 2.0], [1.0, 2.0, 2.0, 1.0]]]]


@pytest.mark.parametrize("inplace", [False, True])
def test_gradcam_at_conv(inplace):
    ex = explain(OneConv(inplace), INP, 0, layer="conv1", methods="gradcam")
    torch.testing.assert_close(ex.cam, torch.tensor(GRADCAM_AT_CONV), atol=1e-4, rtol=0)
    assert ex.layer == "conv1"


@pytest.mark.parametrize("inplace", [False, True])
def test_gradcam_at_relu(inplace):
    ex = explain(OneConv(inplace), INP, 0, layer="relu1", methods="gradcam")
    torch.testing.assert_close(ex.cam, torch.tensor(GRADCAM_AT_RELU), atol=1e-4, rtol=0)


def test_gradcam_with_frozen_parameters():
    net = OneConv()
    for p in net.parameters():
        p.requires_grad_(False)
    ex = explain(net, INP, 0, layer="conv1", methods="gradcam")
    torch.testing.assert_close(ex.cam, torch.tensor(GRADCAM_AT_CONV), atol=1e-4, rtol=0)


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_backprop(inplace):
    ex = explain(OneConv(inplace), INP, 0, layer="conv1", methods="guided_backprop")
    torch.testing.assert_close(ex.guided_backprop, torch.tensor(GUIDED_BACKPROP), atol=1e-4, rtol=0)


@pytest.mark.parametrize("inplace", [False, True])
def test_deconvnet(inplace):
    ex = explain(OneConv(inplace), INP, 0, layer="conv1", methods="deconvnet")
    torch.testing.assert_close(ex.deconvnet, torch.tensor(DECONVNET), atol=1e-4, rtol=0)


def test_combined_maps_are_products():
    ex = explain(OneConv(), INP, 0, layer="relu1", methods=("guided_gradcam", "deconv_gradcam"))
    torch.testing.assert_close(ex.guided_gradcam, ex.guided_backprop * ex.gradcam[:, None])
    torch.testing.assert_close(ex.deconv_gradcam, ex.deconvnet * ex.gradcam[:, None])
    torch.testing.assert_close(ex.guided_backprop, torch.tensor(GUIDED_BACKPROP), atol=1e-4, rtol=0)
