"""Display of explanations, kept apart from the math in :mod:`gradcam.engine`.

The display choices, made once here so every stimulus and both models look alike:

* **Heatmaps** are normalized per image by min-max over the map (``normalize="minmax"``,
  the Grad-CAM authors' choice; ``"max"`` divides by the maximum only; ``None`` expects
  values already in [0, 1]) and coloured with a named matplotlib colormap (default
  ``"jet"``, as in the paper's figures) through a 256-entry lookup table.
* **Overlays** blend ``(1 - alpha) * photo + alpha * colour`` with ``alpha = 0.5``.
* **Guided images** (Guided Backprop, Guided Grad-CAM, Deconvnet) are normalized per
  image and per call: centred on their mean, divided by their standard deviation, scaled
  by 0.1 and shifted to 0.5 (mid-grey), then clipped to [0, 1]; the deprocessing of the
  Grad-CAM authors' code. Every image gets the same rule, so neither of two models looks
  sharper by accident. Guided Grad-CAM and Deconvnet Grad-CAM are displayed as the
  guided (deconv) gradients times the *min-max normalized* Grad-CAM, as pytorch-grad-cam
  does, so that regions where the map is at its minimum turn grey.
* **The CAM family** (Grad-CAM, counterfactual, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM,
  Eigen-CAM, Score-CAM) is drawn like Grad-CAM: the upsampled map, min-max normalized,
  as a heatmap overlay.
* **captum attributions** ``(N, 3, H, W)`` (``"captum:<Class>"``) are drawn as a heatmap
  overlay of their per-pixel magnitude, the sum of absolute values over the channels (the
  saliency that :func:`stimuli.metrics.saliency` scores), divided by its 98th percentile
  per image and clipped to [0, 1]: captum's own ``visualize_image_attr`` default
  (``sign="absolute_value"``, ``outlier_perc=2``), so a few extreme pixels do not turn the
  rest of the map to the colormap's floor. Signed per-channel attributions (Integrated
  Gradients, Saliency) would look like noise as a guided-style image, and Occlusion's,
  the same on every channel, like grey blocks.

All functions take and return torch tensors on any device; only :func:`to_pil` and
:func:`sheet` leave torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

DEFAULT_CMAP = "jet"
DEFAULT_ALPHA = 0.5
GUIDED_SCALE = 0.1
OVERLAID = ("gradcam", "counterfactual", "gradcam_pp", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam")
ATTRIBUTION_PERCENTILE = 0.98  # captum attributions: the level shown at the colormap's top
CAPTUM_PREFIX = "captum:"


def is_overlaid(method: str) -> bool:
    """Whether ``method`` is displayed as a heatmap over the photo (the CAM family and
    captum attributions) rather than as a gradient image."""
    return method in OVERLAID or method.startswith(CAPTUM_PREFIX)


def attribution_map(a: torch.Tensor, q: float = ATTRIBUTION_PERCENTILE, eps: float = 1e-12) -> torch.Tensor:
    """``(..., C, H, W)`` attributions to ``(..., H, W)`` display maps in [0, 1]: the sum of
    absolute values over the channels, divided by its ``q`` quantile per image (the maximum
    where that quantile is 0), clipped to [0, 1]. An all-zero attribution gives zeros."""
    s = a.abs().sum(dim=-3)
    flat = s.flatten(-2).float()
    level = torch.quantile(flat, q, dim=-1, keepdim=True)
    level = torch.where(level > 0, level, flat.amax(-1, keepdim=True)).clamp(min=eps)
    return (flat / level).clamp_(0, 1).view_as(s).to(s.dtype)


def overlay_source(ex, method: str) -> tuple[torch.Tensor, str | None]:
    """The map an overlaid method draws, ``(N, [K,] H, W)``, and the ``normalize`` mode
    that :func:`overlay` applies to it (also after resampling it to another size)."""
    if method.startswith(CAPTUM_PREFIX):
        return attribution_map(ex.get(method)), None
    return ex.get(method), "minmax"


@lru_cache(maxsize=16)
def _lut_cpu(name: str) -> torch.Tensor:
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}") from None
    rgba = cmap(range(256))  # the colormap's 256 entries, as an (256, 4) array
    return torch.from_numpy(rgba[:, :3].copy()).float()


def colormap(name: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(256, 3)`` RGB lookup table in [0, 1] for a matplotlib colormap name."""
    return _lut_cpu(name).to(device)


def normalize_map(m: torch.Tensor, mode: str | None = "minmax", eps: float = 1e-12) -> torch.Tensor:
    """Scale each ``(..., H, W)`` map to [0, 1]; a constant map becomes 0."""
    if mode is None:
        return m.clamp(0, 1)
    flat = m.flatten(-2)
    hi = flat.amax(-1, keepdim=True)
    if mode == "minmax":
        lo = flat.amin(-1, keepdim=True)
    elif mode == "max":
        lo = torch.zeros_like(hi)
    else:
        raise ValueError(f"unknown normalization {mode!r}; use 'minmax', 'max' or None")
    out = (flat - lo) / (hi - lo).clamp(min=eps)
    return out.view_as(m)


def heatmap(m: torch.Tensor, cmap: str = DEFAULT_CMAP, normalize: str | None = "minmax") -> torch.Tensor:
    """``(..., H, W)`` maps to ``(..., 3, H, W)`` colour images in [0, 1]."""
    lut = colormap(cmap, m.device)
    idx = (normalize_map(m, normalize) * 255).round_().long()
    return F.embedding(idx, lut).movedim(-1, -3)  # a table lookup; 2.5x faster than lut[idx] on the CPU


def overlay(
    image: torch.Tensor,
    m: torch.Tensor,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
    normalize: str | None = "minmax",
) -> torch.Tensor:
    """Blend a heatmap over a photo.

    Args:
        image: ``(..., 3, H, W)`` photo in [0, 1] (display pixels, not model-normalized).
        m: ``(..., H, W)`` map at the same size.
    Returns:
        ``(..., 3, H, W)`` in [0, 1].
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return ((1 - alpha) * image + alpha * heatmap(m, cmap, normalize)).clamp(0, 1)


def guided_image(g: torch.Tensor, scale: float = GUIDED_SCALE, eps: float = 1e-12) -> torch.Tensor:
    """Per-image display normalization of ``(..., 3, H, W)`` gradients (see module doc)."""
    flat = g.flatten(-3)
    centred = flat - flat.mean(-1, keepdim=True)
    # The sample standard deviation as the norm of the centred values: torch.std's CPU
    # kernel took 26 ms for 16 images of 3 x 260 x 260, the norm 1 ms.
    n = max(flat.shape[-1] - 1, 1)
    std = torch.linalg.vector_norm(centred, dim=-1, keepdim=True).div_(math.sqrt(n)).clamp_(min=eps)
    return centred.mul_(scale / std).add_(0.5).clamp_(0, 1).view_as(g)


def to_pil(img: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(H, W)`` tensor in [0, 1] to an 8-bit PIL image."""
    t = (img.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if t.dim() == 2:
        return Image.fromarray(t.numpy(), mode="L")
    return Image.fromarray(t.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def sheet(
    cells: Sequence[Sequence[Image.Image | None]],
    col_titles: Sequence[str] = (),
    row_titles: Sequence[str] = (),
    cell: int = 192,
    pad: int = 4,
) -> Image.Image:
    """A grid of images, side by side, with column and row titles.

    Args:
        cells: rows of PIL images (None leaves a cell blank); each is resized to
            ``cell`` x ``cell``.
    """
    font = ImageFont.load_default()
    head = 22 if col_titles else 0
    left = 150 if row_titles else 0
    ncols = max((len(r) for r in cells), default=0)
    w = left + ncols * (cell + pad) + pad
    h = head + len(cells) * (cell + pad) + pad
    out = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(out)
    for j, title in enumerate(col_titles):
        draw.text((left + pad + j * (cell + pad), 4), title, fill="black", font=font)
    for i, row in enumerate(cells):
        y = head + pad + i * (cell + pad)
        if i < len(row_titles):
            draw.multiline_text((4, y + 4), row_titles[i], fill="black", font=font)
        for j, im in enumerate(row):
            if im is not None:
                out.paste(im.convert("RGB").resize((cell, cell), Image.BILINEAR), (left + pad + j * (cell + pad), y))
    return out


def render_methods(
    ex,
    photos: torch.Tensor | None,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
    methods: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Display images for every method an :class:`~gradcam.engine.Explanation` holds.

    Args:
        ex: the explanation (a K axis, if any, is kept).
        photos: ``(N, 3, H, W)`` display pixels in [0, 1] at the input size (needed only
            for the overlays).
        methods: a subset of ``ex.methods`` to render; None for all.
    Returns:
        ``{method: (N, [K,] 3, H, W)}`` in [0, 1]: overlays for the CAM family and captum
        attributions, normalized gradient images for the guided and deconv methods.
    """
    methods = ex.methods if methods is None else tuple(methods)
    if not set(methods) <= set(ex.methods):
        raise ValueError(
            f"the explanation holds {', '.join(ex.methods)}, not {', '.join(sorted(set(methods) - set(ex.methods)))}"
        )
    out: dict[str, torch.Tensor] = {}
    for method in methods:
        if is_overlaid(method):
            value, mode = overlay_source(ex, method)
            photo = photos if value.dim() == 3 else photos.unsqueeze(1)
            out[method] = overlay(photo, value, cmap, alpha, normalize=mode)
        elif method == "guided_gradcam":
            out[method] = guided_image(ex.guided_backprop * normalize_map(ex.gradcam).unsqueeze(-3))
        elif method == "deconv_gradcam":
            out[method] = guided_image(ex.deconvnet * normalize_map(ex.gradcam).unsqueeze(-3))
        else:
            out[method] = guided_image(ex.get(method))
    return out
