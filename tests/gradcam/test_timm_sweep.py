"""timm classifiers, default layer, seeded random weights (issue 14, part 2).

For each model of :data:`EXPECTED` (small variants of some forty timm families, built
with ``timm.create_model(name, pretrained=False)``), at its ``pretrained_cfg`` input size
and batch 1, in eval mode, ``explain(model, x, top1, layer=None, methods="gradcam")`` must
choose the layer written in :data:`EXPECTED` (from the architectures: the last spatial
map before global pooling; for class-token models the last map whose patch tokens reach
the score) and give a map that is finite, not constant, at that layer's grid, and equal
to captum's ``LayerGradCam(relu_attributions=True)`` on the chosen layer where its output
is channels-first; for a channels-last or token layer, equal to a reference computed by
hand from hooks (permute, or drop the class/distillation tokens and reshape row by row:
pytorch-grad-cam's ``reshape_transform``).

Random weights need two touches so that the map of the top-1 class is not empty:
MLP-Mixer, ResMLP, Sequencer and Hiera initialise their classifier to zero (every
gradient would be zero), so it gets seeded ``N(0, 0.02)`` weights, as the torchvision
sweep does for ViT; in LeViT at random init the signal dies out through its uncalibrated
BatchNorms (the last stage's 16 tokens are equal to 1e-8), so its BatchNorm statistics
are set from one training-mode pass over a seeded batch (:data:`CALIBRATE`).

Timm's version is pinned (pyproject.toml), so the layer names are too. A timing table
is printed at the end. About a minute on 2 CPU threads.
"""

from __future__ import annotations

import time

import pytest
import torch
from captum.attr import LayerGradCam
from torch import nn

from gradcam import explain
from tests.conftest import rel_err
from tests.gradcam.sweep_table import sweep_table
from tests.gradcam.test_torchvision_sweep import top1

timm = pytest.importorskip("timm")

CF, CL, TOK = "channels_first", "channels_last", "tokens"

# name -> (layer, grid, layout, leading class/distillation tokens). Input size: the
# model's pretrained_cfg (224 px unless said). Stride 32 gives 7 x 7 at 224 px, 8 x 8 at
# 256 px (MobileViT, EdgeNeXt, FastViT, CSPResNet), 6 x 6 at 192 px (EfficientNetV2-B0),
# 8 x 8 at 299 px for Inception-v3 (valid convolutions); a plain ViT's grid is 224 / patch
# (the hybrid R-S16 ViT's is 7 x 7); LeViT and EfficientViT-M end at stride 64 (4 x 4); ConvMixer keeps its 7 px patches
# (32 x 32); Sequencer2D ends at stride 14 (16 x 16), NesT at 14 x 14.
EXPECTED = {
    # plain CNNs, residual and not
    "resnet18": ("layer4", (7, 7), CF, 0),
    "resnest14d": ("layer4", (7, 7), CF, 0),
    "regnetx_002": ("s4.b7.act3", (7, 7), CF, 0),
    "regnety_002": ("s4.b7.act3", (7, 7), CF, 0),
    "botnet26t_256": ("stages.3.1.act", (8, 8), CF, 0),
    "densenet121": ("features.norm5.act", (7, 7), CF, 0),
    "dla34": ("level5.root.relu", (7, 7), CF, 0),
    "dpn68": ("features.conv5_bn_ac.bn.act", (7, 7), CF, 0),
    "inception_v3": ("Mixed_7c", (8, 8), CF, 0),
    "vovnet39a": ("stages.3.blocks.1.conv_concat.bn.act", (7, 7), CF, 0),
    "hrnet_w18_small": ("final_layer.2", (7, 7), CF, 0),
    "cspresnet50": ("stages.3.conv_transition.bn.act", (8, 8), CF, 0),
    "hgnetv2_b0": ("stages", (7, 7), CF, 0),
    # mobile CNNs: the head conv before global pooling (MobileNetV3/V4's conv_head runs
    # after the pooling, on a 1 x 1 map, and must not be chosen)
    "efficientnet_b0": ("bn2.act", (7, 7), CF, 0),
    "tf_efficientnetv2_b0": ("bn2.act", (6, 6), CF, 0),
    "mobilenetv3_small_100": ("blocks.5.0.bn1.act", (7, 7), CF, 0),
    "mobilenetv4_conv_small": ("blocks.4.0.bn1.act", (7, 7), CF, 0),
    "mixnet_s": ("bn2.act", (7, 7), CF, 0),
    "ghostnet_100": ("blocks.9.0.bn1.act", (7, 7), CF, 0),
    "ghostnetv2_100": ("blocks.9.0.bn1.act", (7, 7), CF, 0),
    "lcnet_050": ("blocks.5.1.bn2.act", (7, 7), CF, 0),
    "rexnet_100": ("features.16.bn.act", (7, 7), CF, 0),
    "repvit_m0_9": ("stages", (7, 7), CF, 0),
    "fasternet_t0": ("stages", (7, 7), CF, 0),
    "starnet_s050": ("norm", (7, 7), CF, 0),
    # ConvNeXt and MetaFormers: the last stage (its Identity norm_pre is not named)
    "convnext_atto": ("stages", (7, 7), CF, 0),
    "convnextv2_atto": ("stages", (7, 7), CF, 0),
    "inception_next_tiny": ("stages", (7, 7), CF, 0),
    "poolformerv2_s12": ("stages", (7, 7), CF, 0),
    "caformer_s18": ("stages", (7, 7), CF, 0),
    "edgenext_xx_small": ("stages", (8, 8), CF, 0),
    "convmixer_768_32": ("blocks", (32, 32), CF, 0),
    # hybrids with a conv-shaped last stage
    "mobilevit_xxs": ("final_conv.bn.act", (8, 8), CF, 0),
    "fastvit_t8": ("final_conv.act", (8, 8), CF, 0),
    "efficientformerv2_s0": ("norm", (7, 7), CF, 0),
    "efficientvit_b0": ("head.in_conv.act", (7, 7), CF, 0),
    "efficientvit_m0": ("stages", (4, 4), CF, 0),
    "visformer_tiny": ("norm", (7, 7), CF, 0),
    "coatnet_nano_rw_224": ("norm", (7, 7), CF, 0),
    "maxvit_tiny_tf_224": ("stages", (7, 7), CF, 0),
    "tiny_vit_5m_224": ("stages", (7, 7), CF, 0),
    "pvt_v2_b0": ("stages", (7, 7), CF, 0),
    "focalnet_tiny_srf": ("norm", (7, 7), CF, 0),
    "davit_tiny": ("stages", (7, 7), CF, 0),
    "gcvit_xxtiny": ("stages", (7, 7), CF, 0),
    # channels-last (N, h, w, C)
    "swin_tiny_patch4_window7_224": ("norm", (7, 7), CL, 0),
    "mambaout_femto": ("stages", (7, 7), CL, 0),
    "nest_tiny": ("norm", (14, 14), CL, 0),
    "sequencer2d_s": ("norm", (16, 16), CL, 0),
    # tokens (N, k + h*w, C): class-token models read the input of the last attention
    # that mixes patch tokens into the class token
    "vit_tiny_patch16_224": ("blocks.11.norm1", (14, 14), TOK, 1),
    "deit_tiny_distilled_patch16_224": ("blocks.11.norm1", (14, 14), TOK, 2),
    "vit_tiny_r_s16_p8_224": ("blocks.11.norm1", (7, 7), TOK, 1),
    "convit_tiny": ("blocks.11.norm1", (14, 14), TOK, 1),
    "pit_ti_224": ("transformers.2.blocks.3.norm1", (7, 7), TOK, 1),
    "cait_xxs24_224": ("blocks_token_only.1.norm1", (14, 14), TOK, 1),
    "xcit_nano_12_p16_224": ("cls_attn_blocks.1.norm1", (14, 14), TOK, 1),
    "eva02_tiny_patch14_224": ("blocks.11", (16, 16), TOK, 1),
    "levit_128s": ("stages", (4, 4), TOK, 0),
    "efficientformer_l1": ("norm", (7, 7), TOK, 0),
    "mvitv2_tiny": ("norm", (7, 7), TOK, 0),
    "twins_svt_small": ("norm", (7, 7), TOK, 0),
    "hiera_tiny_224": ("blocks.11", (7, 7), TOK, 0),
    "mixer_s16_224": ("norm", (14, 14), TOK, 0),
    "resmlp_12_224": ("norm", (14, 14), TOK, 0),
}

# BatchNorm statistics from one training-mode pass (see the module docstring).
CALIBRATE = {"levit_128s"}

TIMES: list[tuple] = []


def _build(name: str) -> tuple[nn.Module, tuple[int, int]]:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    size = tuple(model.pretrained_cfg["input_size"][1:])
    with torch.no_grad():
        heads = model.get_classifier()
        for head in heads if isinstance(heads, (tuple, list)) else (heads,):
            for fc in head.modules():
                if isinstance(fc, (nn.Linear, nn.Conv2d)) and not fc.weight.any():
                    nn.init.normal_(fc.weight, std=0.02)
        if name in CALIBRATE:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = 1.0
            model.train()(torch.randn(8, 3, *size, generator=torch.Generator().manual_seed(1)))
    return model.eval(), size


def _hand_reference(model, layer, x, target, layout, tokens, grid):
    """Grad-CAM at a channels-last or token layer from hooks, by hand."""
    saved = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: saved.__setitem__("a", out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    a = saved["a"]
    (g,) = torch.autograd.grad(logits[0, target], a)
    h, w = grid

    def to_map(t):
        if layout == CL:  # (1, h, w, C) -> (1, C, h, w)
            return t.permute(0, 3, 1, 2)
        return t[:, tokens:].reshape(1, h, w, -1).permute(0, 3, 1, 2)  # (1, k + h*w, C)

    weights = to_map(g).mean(dim=(2, 3))
    return torch.einsum("nc,nchw->nhw", weights, to_map(a.detach())).clamp(min=0)


@pytest.fixture(scope="module", autouse=True)
def _timing_table(request):
    yield from sweep_table(request, TIMES, "timm models", (32, 38))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_default_layer_on_timm_models(name):
    t0 = time.perf_counter()
    layer_name, grid, layout, tokens = EXPECTED[name]
    model, size = _build(name)
    x = torch.randn(1, 3, *size)
    ex = explain(model, x, top1, methods="gradcam")
    target = int(ex.logits.argmax(1))

    assert (ex.layer, ex.layer_grid, ex.layer_layout) == (layer_name, grid, layout)
    assert ex.cam.shape == (1, *grid)
    assert torch.isfinite(ex.cam).all()
    assert ex.cam.max() > ex.cam.min(), f"constant map at {ex.layer}"
    layer = dict(model.named_modules())[ex.layer]
    if layout == CF:
        ref = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)[:, 0]
    else:
        ref = _hand_reference(model, layer, x, target, layout, tokens, grid)
    err = rel_err(ex.cam, ref)
    TIMES.append((name, ex.layer, layout, f"{grid[0]}x{grid[1]}", f"{err:.1e}", time.perf_counter() - t0))
    assert err <= 1e-4


def test_register_tokens_need_reshape():
    """ViTs with register tokens (timm's ``*_reg4``, DINOv2 with registers) lead with more
    than two non-patch tokens: the grid is not read, the error says to pass ``reshape=``,
    and with it (drop the prefix tokens, reshape row by row) the map is the reference's."""
    model, size = _build("vit_little_patch16_reg4_gap_256")
    x = torch.randn(1, 3, *size)
    with pytest.raises(ValueError, match="reshape="):
        explain(model, x, top1, methods="gradcam")
    prefix, grid = model.num_prefix_tokens, (16, 16)  # 4 registers, no class token; 256 / 16

    def reshape(t):
        return t[:, prefix:].reshape(t.shape[0], *grid, t.shape[-1]).permute(0, 3, 1, 2)

    layer = f"blocks.{len(model.blocks) - 1}"  # mean-pooled patch tokens: the last block
    ex = explain(model, x, top1, layer=layer, reshape=reshape, methods="gradcam")
    assert (ex.layer_grid, ex.layer_layout, prefix) == (grid, "reshape", 4)
    assert torch.isfinite(ex.cam).all() and ex.cam.max() > ex.cam.min()
    ref = _hand_reference(model, dict(model.named_modules())[layer], x, int(ex.logits.argmax(1)), TOK, prefix, grid)
    assert rel_err(ex.cam, ref) <= 1e-4
