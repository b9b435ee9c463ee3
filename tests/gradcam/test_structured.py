"""Structured outputs and several inputs: a callable target reads the model's raw output
(any tensor shape, a tuple or a dict) and returns ``(N,)`` or ``(N, K)`` scores; ``x`` may
be a tuple of inputs of which ``x[input_index]`` is explained.

Each case is checked against captum's ``LayerGradCam`` (and ``GuidedBackprop``) on the
same callable: torchvision FCN and DeepLabV3 (ResNet-50 backbones, random weights, 64 px)
scored by the sum of one class's pixel logits, and a tiny image+text model written here.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from captum.attr import GuidedBackprop, LayerGradCam
from torch import nn

from gradcam import explain
from tests.conftest import rel_err

TOL = 1e-4


@pytest.fixture(scope="module", params=["fcn_resnet50", "deeplabv3_resnet50"])
def segmenter(request):
    torch.manual_seed(0)
    model = getattr(torchvision.models.segmentation, request.param)(weights=None, weights_backbone=None).eval()
    return request.param, model


def pixel_sum(*classes):
    """Scores: each image's summed pixel logits of ``classes`` (``(N,)`` for one class)."""

    def score(out):
        s = out["out"][:, list(classes)].sum(dim=(-2, -1))
        return s[:, 0] if len(classes) == 1 else s

    return score


def test_segmentation_pixel_sum_matches_captum(segmenter):
    _, model = segmenter
    x = torch.randn(2, 3, 64, 64)
    layer = model.backbone.layer4
    ex = explain(model, x, pixel_sum(7), layer="backbone.layer4", methods=("gradcam", "hirescam", "guided_backprop"))
    assert ex.logits is None and ex.targets is None and ex.layer_grid == (8, 8)
    ref = LayerGradCam(lambda inp: pixel_sum(7)(model(inp)), layer).attribute(x, relu_attributions=True)[:, 0]
    assert ex.cam.abs().max() > 0
    assert rel_err(ex.cam, ref) <= TOL
    assert ex.hirescam.shape == ex.gradcam.shape == (2, 64, 64)
    # Two classes per image: one K axis, each column captum's target=k.
    two = explain(model, x, pixel_sum(7, 12), layer="backbone.layer4", methods="gradcam")
    assert two.cam.shape == (2, 2, 8, 8)
    for k in range(2):
        ref_k = LayerGradCam(lambda inp: pixel_sum(7, 12)(model(inp)), layer).attribute(
            x, target=k, relu_attributions=True
        )[:, 0]
        assert rel_err(two.cam[:, k], ref_k) <= TOL


def test_structured_output_needs_a_callable_and_one_pass_methods(segmenter):
    _, model = segmenter
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(TypeError, match=r"class indices need the model to return \(N, C\) logits"):
        explain(model, x, 3, layer="backbone.layer4", methods="gradcam")
    with pytest.raises(ValueError, match="scorecam cannot be computed with a model output other than"):
        explain(model, x, pixel_sum(3), layer="backbone.layer4", methods=("gradcam", "scorecam"))
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, K\) scores for N=1"):
        explain(model, x, lambda out: out["out"].sum(), layer="backbone.layer4", methods="gradcam")


class ImageText(nn.Module):
    """An image branch (two conv-ReLU layers) gated by a bag-of-words text embedding;
    returns a dict."""

    def __init__(self, vocab: int = 20, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.embed = nn.Embedding(vocab, 8)
        self.fc = nn.Linear(8, classes)

    def forward(self, image, tokens):
        a = self.relu2(self.conv2(self.relu1(self.conv1(image))))
        text = self.embed(tokens).mean(dim=1)
        return {"logits": self.fc(a.mean(dim=(2, 3)) * torch.sigmoid(text)), "text": text}


class Scored(nn.Module):
    """``model`` followed by a score, for captum (``GuidedBackprop`` wants a module)."""

    def __init__(self, model, score, order=(0, 1)) -> None:
        super().__init__()
        self.model, self.score, self.order = model, score, order

    def forward(self, *args):
        return self.score(self.model(*(args[i] for i in self.order)))


def logit(c):
    return lambda out: out["logits"][:, c]


@pytest.fixture
def image_text():
    torch.manual_seed(0)
    return ImageText().eval(), torch.randn(2, 3, 16, 16), torch.randint(0, 20, (2, 7))


def test_image_text_model_matches_captum(image_text):
    model, image, tokens = image_text
    ex = explain(model, (image, tokens), logit(2), layer="relu2", methods=("gradcam", "layercam", "guided_backprop"))
    assert ex.layer_grid == (16, 16) and ex.logits is None and ex.guided_rectifiers == 2
    scored = Scored(model, logit(2))
    ref = LayerGradCam(scored, model.relu2).attribute(image, additional_forward_args=(tokens,), relu_attributions=True)[
        :, 0
    ]
    assert ex.cam.abs().max() > 0
    assert rel_err(ex.cam, ref) <= TOL
    ref_gb = GuidedBackprop(scored).attribute(image.clone().requires_grad_(True), additional_forward_args=(tokens,))
    assert rel_err(ex.guided_backprop, ref_gb) <= TOL
    # The text changes the map's scale through its gate, and so the map.
    other = explain(model, (image, (tokens + 1) % 20), logit(2), layer="relu2", methods="gradcam")
    assert not torch.allclose(other.cam, ex.cam)


def test_explained_input_at_another_position(image_text):
    model, image, tokens = image_text
    swapped = Scored(model, lambda out: out, order=(1, 0))  # forward(tokens, image)
    ex = explain(swapped, (tokens, image), logit(1), layer="model.relu2", methods="gradcam", input_index=1)
    ref = explain(model, (image, tokens), logit(1), layer="relu2", methods="gradcam")
    assert torch.equal(ex.cam, ref.cam)
    neg = explain(swapped, [tokens, image], logit(1), layer="model.relu2", methods="gradcam", input_index=-1)
    assert torch.equal(neg.cam, ref.cam)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"layer": None}, ValueError, "a tuple of inputs needs an explicit layer="),
        ({"input_index": 2}, ValueError, "input_index 2 is out of range for 2 inputs"),
        ({"input_index": 1}, ValueError, r"x must be a \(N, C, H, W\) batch"),
        ({"methods": ("gradcam", "captum:Saliency")}, ValueError, "captum:Saliency cannot be computed with a tuple"),
        ({"methods": "scorecam"}, ValueError, "scorecam cannot be computed with a tuple of inputs"),
    ],
)
def test_tuple_input_errors(image_text, kwargs, error, message):
    model, image, tokens = image_text
    args = {"layer": "relu2", "methods": "gradcam", **kwargs}
    with pytest.raises(error, match=message):
        explain(model, (image, tokens), logit(0), **args)
