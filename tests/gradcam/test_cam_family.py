"""The CAM family against pytorch-grad-cam 1.5.7, guided_rectifiers, and the captum adapter.

Each of Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Eigen-CAM and Score-CAM is compared
with pytorch-grad-cam's class of the same method on seeded random-weight VGG-16 and
ResNet-50, batch 2, at the *layer's resolution*: pytorch-grad-cam's public ``__call__``
runs (its targets, its backward pass, its hooks), and the map its ``get_cam_image``
returns is captured before it min-max normalizes and resizes it with cv2. That map, after
the ``np.maximum(cam, 0)`` that its ``compute_cam_per_layer`` applies, must equal the
engine's ``<method>_cam`` to a relative error of 1e-4 (observed: below 1e-6, Score-CAM
exactly). Eigen-CAM is compared before the ReLU and up to each image's sign, which an SVD
leaves open: the engine fixes it (docs/engine.md), pytorch-grad-cam takes whatever
``np.linalg.svd`` returns. The public output (min-max normalized, cv2-resized) is also
compared with the engine's upsampled map normalized the same way.

Score-CAM runs ``N * C`` masked forward passes, so it is compared at a 32 px input on
layers with few channels (VGG-16 ``features.8``, 128 channels; ResNet-50 ``maxpool``, 64
channels): the same code path as at the default layer, at a fraction of the cost.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import EigenCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from gradcam import PlainGradientWarning, explain
from gradcam.cams import eigen_projection
from tests.conftest import rel_err

TOL = 1e-4
PEERS = {
    "gradcam_pp": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
}
GRADIENT_FAMILY = ("gradcam_pp", "xgradcam", "hirescam", "layercam", "eigencam")
# (layer, input size) per network: the paper's layers (VGG-16 7x7, ResNet-50 4x4 at 112 px).
LAYERS = {"vgg16": ("features.29", 112), "resnet50": ("layer4", 112)}
SCORE_LAYERS = {"vgg16": ("features.8", 32), "resnet50": ("maxpool", 32)}
TARGETS = [3, 17]


@pytest.fixture(scope="module", params=["vgg16", "resnet50"])
def net(request):
    torch.manual_seed(0)
    model = getattr(torchvision.models, request.param)(weights=None).eval()
    return request.param, model


def peer_layer_map(method: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, targets):
    """pytorch-grad-cam's public call, and the layer map its ``get_cam_image`` returned
    (before its ReLU, normalization and resize)."""
    cam = PEERS[method](model, [layer])
    if method == "scorecam":
        cam.batch_size = 64
    seen = {}
    inner = cam.get_cam_image

    def capture(*args, **kwargs):
        seen["map"] = inner(*args, **kwargs)
        return seen["map"]

    cam.get_cam_image = capture
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = cam(x, [ClassifierOutputTarget(t) for t in targets])
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(np.asarray(seen["map"], dtype=np.float32)), out


def layer_output(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s output on ``x``, read from a forward hook."""
    seen = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.setdefault("a", out.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen["a"]


def _same_public_output(ours_upsampled: torch.Tensor, peer_out: np.ndarray) -> None:
    """pytorch-grad-cam's returned image, (N, H, W) in [0, 1], equals the engine's
    upsampled map min-max normalized as it normalizes (``scale_cam_image``): its cv2
    resize (half-pixel bilinear) is the engine's ``align_corners=False`` upsampling, and
    its second normalization, after the resize, is the one that counts."""
    ours = scale_cam_image(ours_upsampled.numpy())
    assert ours.shape == peer_out.shape
    assert np.abs(ours - peer_out).max() <= 1e-4


def test_gradient_family_matches_pytorch_grad_cam(net):
    name, model = net
    layer_name, size = LAYERS[name]
    x = torch.randn(2, 3, size, size)
    ex = explain(model, x, TARGETS, layer=layer_name, methods=GRADIENT_FAMILY)
    layer = dict(model.named_modules())[layer_name]
    for method in GRADIENT_FAMILY:
        ref, out = peer_layer_map(method, model, layer, x, TARGETS)
        ours = getattr(ex, f"{method}_cam")
        assert ours.shape == ref.shape == (2, *ex.layer_grid)
        assert ours.abs().max() > 0, method
        if method == "eigencam":
            p = eigen_projection(layer_output(model, layer, x))  # before ReLU
            for i in range(2):  # equal up to the SVD's sign, image by image
                assert min(rel_err(p[i], ref[i]), rel_err(-p[i], ref[i])) <= TOL
            # Where pytorch-grad-cam's sign agrees with ours the ReLU'd maps are equal.
            sign = torch.tensor([1.0 if rel_err(p[i], ref[i]) <= TOL else -1.0 for i in range(2)])
            ref = ref * sign[:, None, None]
        assert rel_err(ours, ref.clamp(min=0)) <= TOL, method
        if method != "eigencam" or bool((sign > 0).all()):
            _same_public_output(getattr(ex, method), out)


def test_scorecam_matches_pytorch_grad_cam(net):
    name, model = net
    layer_name, size = SCORE_LAYERS[name]
    x = torch.randn(2, 3, size, size)
    # batch_size 48 is not a multiple of the channel count: the last chunk is partial.
    ex = explain(
        model, x, TARGETS, layer=layer_name, methods="scorecam", method_options={"scorecam": {"batch_size": 48}}
    )
    ref, out = peer_layer_map("scorecam", model, dict(model.named_modules())[layer_name], x, TARGETS)
    assert ex.scorecam_cam.abs().max() > 0
    assert rel_err(ex.scorecam_cam, ref.clamp(min=0)) <= TOL
    _same_public_output(ex.scorecam, out)
    # Two classes per image: one set of masked passes, each column equal to its own call.
    two = explain(model, x, torch.tensor([[3, 5], [17, 2]]), layer=layer_name, methods="scorecam")
    assert rel_err(two.scorecam_cam[:, 0], ex.scorecam_cam) <= TOL


# --- guided_rectifiers and PlainGradientWarning --------------------------------------------


class SmoothNet(nn.Module):
    """No rectifier anywhere: GELU and SiLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.act1 = nn.GELU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.act2 = nn.SiLU()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean(dim=(2, 3)))


# Rectifier applications between input and score: VGG-16's 13 ReLUs in features and 2 in
# the classifier; ResNet-50's stem ReLU and 16 bottlenecks calling their ReLU 3 times each.
RECTIFIERS = {"vgg16": 13 + 2, "resnet50": 1 + 16 * 3}


def test_guided_rectifiers_counts(net):
    name, model = net
    x = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlainGradientWarning)
        ex = explain(model, x, 1, methods=("guided_backprop", "deconv_gradcam"))
    assert ex.guided_rectifiers == RECTIFIERS[name]
    assert explain(model, x, 1, methods=("gradcam",)).guided_rectifiers is None


def test_no_rectifier_gives_zero_and_warns_for_guided_only():
    torch.manual_seed(0)
    model = SmoothNet().eval()
    x = torch.randn(2, 3, 16, 16)
    with pytest.warns(PlainGradientWarning, match="plain input gradient"):
        ex = explain(model, x, [0, 1], methods=("guided_backprop", "gradcam"))
    assert ex.guided_rectifiers == 0
    # Without rectifiers the guided image is the plain input gradient.
    xg = x.clone().requires_grad_(True)
    model(xg).gather(1, torch.tensor([[0], [1]])).sum().backward()
    assert rel_err(ex.guided_backprop, xg.grad) <= 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = explain(model, x, [0, 1], methods=("gradcam",))
    assert plain.guided_rectifiers is None


# --- captum adapter -------------------------------------------------------------------------


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()
    return model, torch.randn(2, 3, 14, 14)


def test_captum_integrated_gradients_and_occlusion_equal_captum(tiny):
    from captum.attr import IntegratedGradients, Occlusion

    model, x = tiny
    targets = [1, 3]
    ex = explain(model, x, targets, methods=("gradcam", "captum:IntegratedGradients", "captum:Occlusion"))
    ig = ex.get("captum:IntegratedGradients")
    occ = ex.get("captum:Occlusion")
    assert ig.shape == occ.shape == (2, 3, 14, 14)
    ref_ig = IntegratedGradients(model).attribute(x, baselines=0.0, target=targets, n_steps=32, internal_batch_size=32)
    s = max(2, round(14 / 7))
    ref_occ = Occlusion(model).attribute(
        x,
        target=targets,
        sliding_window_shapes=(3, s, s),
        strides=(3, s // 2, s // 2),
        baselines=0.0,
        perturbations_per_eval=16,
    )
    assert rel_err(ig, ref_ig) <= 1e-5
    assert rel_err(occ, ref_occ) <= 1e-5
    # method_options replace the defaults key by key.
    ex8 = explain(
        model,
        x,
        targets,
        methods="captum:IntegratedGradients",
        method_options={"captum:IntegratedGradients": {"n_steps": 8}},
    )
    ref8 = IntegratedGradients(model).attribute(x, baselines=0.0, target=targets, n_steps=8)
    assert rel_err(ex8.get("captum:IntegratedGradients"), ref8) <= 1e-5
    # A callable target gives the same as the class indices it picks.
    call = explain(model, x, lambda lg: lg.gather(1, torch.tensor([[1], [3]]))[:, 0], methods="captum:Occlusion")
    assert rel_err(call.get("captum:Occlusion"), ref_occ) <= 1e-5


@pytest.mark.parametrize(
    "method, message",
    [
        ("captum:NoSuchMethod", "unknown captum method 'captum:NoSuchMethod'; captum.attr offers "),
        ("captum:LayerGradCam", "does not attribute to the input"),
        ("captum:Attribution", "does not attribute to the input"),
        ("captum:", "unknown method 'captum:'"),
        ("gradcan", "unknown method 'gradcan'"),
        ("score_cam", "unknown method 'score_cam'"),
    ],
)
def test_bad_method_names_are_one_value_error(tiny, method, message):
    model, x = tiny
    with pytest.raises(ValueError, match=message) as info:
        explain(model, x, 0, methods=("gradcam", method))
    assert "\n" not in str(info.value)
