"""Display helpers: documented normalizations, colour maps, the sheet."""

import pytest
import torch

from gradcam import explain
from gradcam.render import (
    colormap,
    guided_image,
    heatmap,
    normalize_map,
    overlay,
    render_methods,
    sheet,
    to_pil,
)
from tests.conftest import GapNet


def test_minmax_and_max_normalization():
    m = torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])
    torch.testing.assert_close(normalize_map(m), torch.tensor([[[0.0, 0.5], [0.25, 1.0]]]))
    torch.testing.assert_close(normalize_map(m, "max"), m / 5)
    assert normalize_map(torch.ones(1, 2, 2)).eq(0).all()  # constant map: no division by zero
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_map(m, "zscore")


def test_heatmap_uses_the_named_colormap():
    lut = colormap("jet")
    assert lut.shape == (256, 3)
    h = heatmap(torch.tensor([[0.0, 1.0]]).view(1, 1, 2))
    torch.testing.assert_close(h[0, :, 0, 0], lut[0])
    torch.testing.assert_close(h[0, :, 0, 1], lut[255])
    with pytest.raises(ValueError, match="unknown colormap"):
        colormap("no-such-map")


def test_overlay_blends_with_alpha():
    photo = torch.full((1, 3, 2, 2), 0.2)
    m = torch.rand(1, 2, 2)
    out = overlay(photo, m, alpha=0.5)
    torch.testing.assert_close(out, 0.5 * photo + 0.5 * heatmap(m))
    with pytest.raises(ValueError, match="alpha"):
        overlay(photo, m, alpha=1.5)


def test_guided_image_is_scale_free_and_centred():
    g = torch.randn(2, 3, 16, 16) * 0.01
    a, b = guided_image(g), guided_image(g * 1000)
    torch.testing.assert_close(a, b)
    assert abs(float(a.mean()) - 0.5) < 0.01 and a.min() >= 0 and a.max() <= 1


def test_render_methods_and_sheet():
    net = GapNet().eval()
    x = torch.randn(2, 3, 16, 16)
    ex = explain(
        net,
        x,
        torch.tensor([[0, 1], [2, 3]]),
        layer="features",
        methods=("gradcam", "guided_backprop", "guided_gradcam", "deconv_gradcam"),
    )
    out = render_methods(ex, torch.rand(2, 3, 16, 16))
    assert set(out) == {"gradcam", "guided_backprop", "guided_gradcam", "deconv_gradcam"}
    for img in out.values():
        assert img.shape == (2, 2, 3, 16, 16) and img.min() >= 0 and img.max() <= 1
    some = render_methods(ex, None, methods=["guided_gradcam"])  # no overlay: no photo needed
    assert list(some) == ["guided_gradcam"]
    torch.testing.assert_close(some["guided_gradcam"], out["guided_gradcam"])
    with pytest.raises(ValueError, match="not deconvnet"):
        render_methods(ex, None, methods=["deconvnet"])
    cells = [[to_pil(out["gradcam"][0, 0]), None], [to_pil(out["guided_gradcam"][1, 1]), to_pil(torch.rand(16, 16))]]
    s = sheet(cells, ["a", "b"], ["row 1", "row 2"], cell=32)
    assert s.size == (150 + 2 * 36 + 4, 22 + 2 * 36 + 4)
