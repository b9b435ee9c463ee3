"""Every torchvision classification model, default layer, seeded random weights (issue 14).

For each model of ``torchvision.models.list_models(module=torchvision.models)`` (but the
very large ones in :data:`SKIPPED`), at its usual input size and batch 1, in eval mode,
``explain(model, x, top1, layer=None, methods="gradcam")`` must give a map that is finite,
not constant, at the grid of :data:`GRIDS` (a table written from the architectures, not
from the engine), and equal to captum's ``LayerGradCam(relu_attributions=True)`` on the
chosen layer where its output is channels-first; for a token layer (ViT), equal to a
reference computed by hand from hooks (pytorch-grad-cam's recipe with its
``reshape_transform``).

The target is each image's top-1 class, so the map of a random network is not the empty
map of a class it scores low. torchvision initialises ViT's head to zero, so every
gradient of a ViT without weights is zero: its head gets seeded random weights here.

A timing table is printed at the end (``-s`` not needed). Run alone with
``pytest -q tests/gradcam/test_torchvision_sweep.py``; about 3 minutes on 1-2 CPU threads.
"""

from __future__ import annotations

import time

import pytest
import torch
import torchvision
from captum.attr import LayerGradCam

from gradcam import explain
from tests.conftest import rel_err
from tests.gradcam.sweep_table import sweep_table

# Too large for a 2-core CPU in this test's budget (each would take 30 s or more alone,
# most of it building and initialising the weights, or need several GB of memory).
SKIPPED = {
    "regnet_y_128gf": "644M parameters (2.6 GB), 127 GFLOPs: minutes to build on a 2-core CPU",
    "vit_h_14": "632M parameters (2.5 GB), 167 GFLOPs at 224 px",
    "vit_l_16": "304M parameters, 61 GFLOPs, plus the trace's full backward pass: > 30 s",
    "vit_l_32": "306M parameters: building and initialising alone takes > 30 s",
    "regnet_y_32gf": "145M parameters, 32 GFLOPs: > 30 s on a 2-core CPU",
    "regnet_x_32gf": "108M parameters, 32 GFLOPs: > 30 s on a 2-core CPU",
    "convnext_large": "198M parameters, 34 GFLOPs: > 30 s on a 2-core CPU",
}

# The usual input size (torchvision's transforms for the default weights) where the
# architecture needs it; every other model runs at 224 px. ViTs are built for 224 px.
INPUT_SIZE = {"inception_v3": 299}

# The grid of the paper's layer at that size, from the architectures: stride 32 gives
# 7 x 7 at 224 px. VGG's and AlexNet's layer is the ReLU after the last conv, before the
# last max-pool; SqueezeNet's last conv is its classifier's 1 x 1 conv at stride 16ish
# (13 x 13); a ViT's grid is 224 / patch size; Inception-v3 at 299 px ends at 8 x 8.
GRIDS = {
    **{f"vgg{d}{bn}": (14, 14) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "alexnet": (13, 13),
    "squeezenet1_0": (13, 13),
    "squeezenet1_1": (13, 13),
    "vit_b_16": (14, 14),
    "vit_l_16": (14, 14),
    "vit_b_32": (7, 7),
    "vit_l_32": (7, 7),
    "vit_h_14": (16, 16),
    "inception_v3": (8, 8),
}
DEFAULT_GRID = (7, 7)

ALL = torchvision.models.list_models(module=torchvision.models)
TIMES: list[tuple] = []


def top1(logits: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, logits.argmax(1, keepdim=True))[:, 0]


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}  # aux heads kept
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    if name.startswith("vit_"):
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # zero by default
    return model


def _token_reference(model, layer, x, target, layout):
    """Grad-CAM at a token layer by hand: hook the output, take the gradient, drop the
    class tokens, reshape (pytorch-grad-cam's ``reshape_transform``)."""
    saved = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: saved.__setitem__("a", out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    a = saved["a"]
    (g,) = torch.autograd.grad(logits[0, target], a)
    h, w = layout

    def grid(t):  # (1, 1 + h*w, C) -> (1, C, h, w)
        return t[:, 1:].reshape(1, h, w, -1).permute(0, 3, 1, 2)

    weights = grid(g).mean(dim=(2, 3))
    return torch.einsum("nc,nchw->nhw", weights, grid(a.detach())).clamp(min=0)


@pytest.fixture(scope="module", autouse=True)
def _timing_table(request):
    yield from sweep_table(request, TIMES, "models", (22, 42), f"skipped: {', '.join(sorted(SKIPPED))}")


@pytest.mark.parametrize("name", ALL)
def test_default_layer_on_every_torchvision_model(name):
    if name in SKIPPED:
        pytest.skip(SKIPPED[name])
    t0 = time.perf_counter()
    model = _build(name)
    size = INPUT_SIZE.get(name, 224)
    x = torch.randn(1, 3, size, size)
    ex = explain(model, x, top1, methods="gradcam")
    target = int(ex.logits.argmax(1))
    grid = GRIDS.get(name, DEFAULT_GRID)

    assert ex.layer_grid == grid, (ex.layer, ex.layer_layout)
    assert ex.cam.shape == (1, *grid)
    assert torch.isfinite(ex.cam).all()
    assert ex.cam.max() > ex.cam.min(), f"constant map at {ex.layer}"
    layer = dict(model.named_modules())[ex.layer]
    if ex.layer_layout == "channels_first":
        ref = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)[:, 0]
    else:
        assert ex.layer_layout == "tokens", ex.layer_layout
        ref = _token_reference(model, layer, x, target, grid)
    err = rel_err(ex.cam, ref)
    TIMES.append((name, ex.layer, ex.layer_layout, f"{grid[0]}x{grid[1]}", f"{err:.1e}", time.perf_counter() - t0))
    assert err <= 1e-4
