"""Explanation-quality metrics of the stimulus stage: faithfulness, localization, sanity.

Pure functions on torch tensors plus a few helpers that run a model; no file I/O. The
metrics are those the Grad-CAM paper (Selvaraju et al., IJCV 2019) and later work use:

* **faithfulness**: Spearman rank correlation between an explanation and an occlusion map
  (the drop of the target logit when a patch of the input is blanked out);
* **pointing game** (Zhang et al. 2016): does the map's maximum fall on (within a
  tolerance of) an object of the target class?
* **box localization** (the paper's weakly supervised localization): threshold the map at
  15% of its maximum, box the largest connected segment, count a hit at IoU >= 0.5;
* **model-randomization sanity check** (Adebayo et al. 2018): how much do the maps change
  when the model's weights are re-initialized? (Spearman rank correlation and SSIM between
  the trained and the randomized model's maps.)

Conventions:

* maps are ``(..., H, W)``; Guided Backprop-style images are ``(..., 3, H, W)`` and are
  turned into a per-pixel importance by :func:`saliency`;
* boxes are ``(x0, y0, x1, y1)`` in continuous pixel coordinates of the map (or image)
  they refer to, ``x1``/``y1`` exclusive: ``(0, 0, 256, 512)`` covers pixel columns
  0..255. Pixel ``(row r, column c)`` has its centre at ``(c + 0.5, r + 0.5)``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Box = tuple[float, float, float, float]

# The engine's methods whose output is an image (N, 3, H, W) rather than a map (N, H, W);
# every "captum:<Class>" attribution is one too (see method_saliency). The CAM family
# (gradcam, counterfactual, gradcam_pp, xgradcam, hirescam, layercam, eigencam, scorecam)
# gives maps.
IMAGE_METHODS = frozenset({"guided_backprop", "guided_gradcam", "deconvnet", "deconv_gradcam"})


# --------------------------------------------------------------------------- saliency


def saliency(map_or_image: torch.Tensor, channels: bool | None = None) -> torch.Tensor:
    """Per-pixel importance ``(..., H, W)`` of a map or a gradient image.

    For an image ``(..., 3, H, W)`` (Guided Backprop, Guided Grad-CAM, Deconvnet...) it is
    the sum of absolute values over the channels: a pixel matters when the score is
    sensitive to it, whatever the sign and colour of the gradient (the choice of Adebayo
    et al. 2018, who compare absolute-valued maps; the maximum over channels, as in
    Simonyan et al. 2014, ranks pixels almost the same way). For a map ``(..., H, W)``
    (Grad-CAM, the counterfactual map, an occlusion map) it is the map itself, unchanged
    (Grad-CAM maps are already non-negative).

    Args:
        map_or_image: a map or an image.
        channels: True for an image, False for a map; None infers it from the shape: an
            image when ``dim() >= 4`` and the third-last size is 3. Pass it explicitly for
            an unbatched image ``(3, H, W)`` or for a stack of three maps per image, e.g.
            Grad-CAM of ``K = 3`` classes ``(N, 3, H, W)``; :func:`method_saliency` does.

    Returns:
        ``(..., H, W)``.
    """
    if channels is None:
        channels = map_or_image.dim() >= 4 and map_or_image.shape[-3] == 3
    if channels:
        if map_or_image.dim() < 3:
            raise ValueError(f"an image needs (..., C, H, W), got shape {tuple(map_or_image.shape)}")
        return map_or_image.abs().sum(dim=-3)
    if map_or_image.dim() < 2:
        raise ValueError(f"a map needs (..., H, W), got shape {tuple(map_or_image.shape)}")
    return map_or_image


def method_saliency(explanation, method: str) -> torch.Tensor:
    """:func:`saliency` of one method's result in a :class:`gradcam.engine.Explanation`.

    Any method of the engine: the CAM family's maps as they are, the guided images and
    captum attributions (``"captum:<Class>"``, ``(N, 3, H, W)``) as the sum of absolute
    values over the channels.

    Returns:
        ``(N, H, W)`` (or ``(N, K, H, W)`` for ``K`` targets per image).
    """
    image = method in IMAGE_METHODS or method.startswith("captum:")
    getter = getattr(explanation, "get", None)
    try:
        value = getter(method) if callable(getter) else getattr(explanation, method, None)
    except ValueError:
        value = None
    if value is None:
        raise ValueError(f"the explanation holds no {method!r} maps")
    return saliency(value, channels=image)


# --------------------------------------------------------------------------- ranks


def rank(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..L along the last dimension, ties sharing their mean rank (float64).

    ``[10, 20, 20, 5]`` ranks as ``[2, 3.5, 3.5, 1]``, as ``scipy.stats.rankdata``.
    """
    v = values.detach().to(torch.float64)
    lead, length = v.shape[:-1], v.shape[-1]
    v = v.reshape(-1, length)
    sorted_v, order = v.sort(dim=-1, stable=True)
    starts = torch.ones_like(sorted_v, dtype=torch.bool)
    starts[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    group = starts.cumsum(dim=-1) - 1  # tie-group id of each sorted position
    positions = torch.arange(1, length + 1, dtype=torch.float64, device=v.device).expand_as(v)
    sums = torch.zeros_like(v).scatter_add_(1, group, positions)
    counts = torch.zeros_like(v).scatter_add_(1, group, torch.ones_like(v))
    mean_rank = (sums / counts.clamp(min=1)).gather(1, group)
    ranks = torch.empty_like(v).scatter_(1, order, mean_rank)
    return ranks.reshape(*lead, length)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of ``a`` and ``b`` over their last two dimensions.

    Args:
        a, b: ``(..., H, W)`` of the same shape (any two trailing dims are flattened).

    Returns:
        ``(...)`` float64: the Pearson correlation of the (tie-averaged) ranks, as
        ``scipy.stats.spearmanr``. NaN where either input is constant or holds a NaN.
    """
    if a.shape != b.shape:
        raise ValueError(f"spearman needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"spearman needs (..., H, W) inputs, got shape {tuple(a.shape)}")
    lead = a.shape[:-2]
    fa, fb = a.reshape(*lead, -1), b.reshape(*lead, -1).to(a.device)
    ra, rb = rank(fa), rank(fb)
    ra = ra - ra.mean(dim=-1, keepdim=True)
    rb = rb - rb.mean(dim=-1, keepdim=True)
    denom = (ra.square().sum(-1) * rb.square().sum(-1)).sqrt()
    rho = (ra * rb).sum(-1) / denom
    rho = torch.where(denom > 0, rho, torch.full_like(rho, math.nan)).clamp(-1.0, 1.0)
    has_nan = fa.isnan().any(-1) | fb.isnan().any(-1)
    return torch.where(has_nan, torch.full_like(rho, math.nan), rho)


# --------------------------------------------------------------------------- faithfulness


def _as_targets(targets: int | Sequence[int] | torch.Tensor, n: int, device) -> torch.Tensor:
    if isinstance(targets, int) and not isinstance(targets, bool):
        return torch.full((n,), targets, dtype=torch.long, device=device)
    t = torch.as_tensor(targets, device=device)
    if t.dtype in (torch.bool,) or t.is_floating_point() or t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"targets must be an int or {n} integer class indices, got {targets!r}")
    return t.long()


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode; restore every submodule's training flag on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def occlusion_grid(size: tuple[int, int], patch: int, stride: int) -> tuple[int, int]:
    """``(h', w')``: patch positions per column and row, ``(H - patch) // stride + 1``.

    Patches start at ``0, stride, 2 * stride, ...`` and lie wholly inside the input; when
    ``(H - patch)`` is not a multiple of ``stride`` the last few rows/columns are never
    occluded.
    """
    h, w = size
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be >= 1, got {patch} and {stride}")
    if patch > h or patch > w:
        raise ValueError(f"patch {patch} is larger than the input {h}x{w}")
    return (h - patch) // stride + 1, (w - patch) // stride + 1


@torch.no_grad()
def occlusion_map(
    model: nn.Module,
    x: torch.Tensor,
    targets: int | Sequence[int] | torch.Tensor,
    patch: int = 32,
    stride: int | None = None,
    fill: float | str = 0.0,
    batch: int = 16,
) -> torch.Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014): the target logit's drop per patch.

    Every ``patch x patch`` square at the positions of :func:`occlusion_grid` is replaced
    by ``fill`` in a copy of the input; the copies run through ``model`` ``batch`` at a
    time (copies of different images share a batch), in eval mode (the training flags are
    restored afterwards), under ``torch.no_grad``.

    Args:
        model: returns ``(N, C)`` logits.
        x: ``(N, C, H, W)`` preprocessed (normalized) input.
        targets: an int, or ``N`` class indices.
        patch: side of the square, in input pixels.
        stride: step between patch positions; None for ``patch // 2`` (at least 1).
        fill: a float in the model's normalized input space (0.0, the default, is the
            dataset's mean colour for mean/std-normalized inputs), or ``"mean"``: each
            image's own mean colour (per channel).
        batch: occluded copies per forward pass.

    Returns:
        ``(N, h', w')`` float: ``logit(x) - logit(occluded x)``; positive where hiding
        the patch lowers the target's score.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    stride = max(patch // 2, 1) if stride is None else stride
    n, c, h, w = x.shape
    gh, gw = occlusion_grid((h, w), patch, stride)
    t = _as_targets(targets, n, x.device)
    if isinstance(fill, str):
        if fill != "mean":
            raise ValueError(f"fill must be a float or 'mean', not {fill!r}")
        fills = x.mean(dim=(2, 3))  # (N, C)
    else:
        fills = torch.full((n, c), float(fill), dtype=x.dtype, device=x.device)

    ys = torch.arange(gh, device=x.device) * stride
    xs = torch.arange(gw, device=x.device) * stride
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    per_image = gh * gw
    drops = torch.empty(n * per_image, dtype=torch.float32, device=x.device)
    with _eval_mode(model):
        base = _logits(model, x).gather(1, t[:, None])[:, 0].float()
        for start in range(0, n * per_image, batch):
            job = torch.arange(start, min(start + batch, n * per_image), device=x.device)
            img, pos = job // per_image, job % per_image
            y0, x0 = ys[pos // gw], xs[pos % gw]
            in_rows = (rows >= y0[:, None]) & (rows < y0[:, None] + patch)  # (B, H)
            in_cols = (cols >= x0[:, None]) & (cols < x0[:, None] + patch)  # (B, W)
            mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
            copies = torch.where(mask, fills[img][:, :, None, None], x[img])
            scores = _logits(model, copies).gather(1, t[img][:, None])[:, 0].float()
            drops[start : start + len(job)] = base[img] - scores
    return drops.reshape(n, gh, gw)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise TypeError("the model must return (N, C) logits as one tensor")
    return out


def faithfulness(
    maps: torch.Tensor,
    occlusion: torch.Tensor,
    patch: int | None = None,
    stride: int | None = None,
) -> torch.Tensor:
    """Spearman rank correlation between each explanation and its occlusion map.

    The explanation is first reduced to the occlusion grid by area averaging. Without
    ``patch``/``stride`` that is ``adaptive_avg_pool2d`` to ``(h', w')`` (each grid cell
    averages its share of the map); with the ``patch`` and ``stride`` the occlusion map was
    made with, each cell averages exactly the square that was occluded
    (``avg_pool2d(kernel=patch, stride=stride)``), which is the better match when patches
    overlap. The averages are taken in float64.

    With ``patch`` and ``stride`` this is Alvarez-Melis & Jaakkola's faithfulness estimate
    with one feature per occlusion square and Spearman's correlation: Quantus's
    ``FaithfulnessEstimate`` on that feature space gives the same values
    (``tests/stimuli/test_quantus_parity.py``).

    Args:
        maps: ``(N, H, W)`` maps, or ``(N, 3, H, W)`` images (reduced by :func:`saliency`).
        occlusion: ``(N, h', w')`` from :func:`occlusion_map`.
        patch, stride: optional, see above (stride None means ``patch // 2``, as there).

    Returns:
        ``(N,)`` float64, NaN where a map or occlusion map is constant.
    """
    if maps.dim() == occlusion.dim() + 1 and maps.shape[-3] == 3:
        maps = saliency(maps, channels=True)
    if maps.shape[:-2] != occlusion.shape[:-2]:
        raise ValueError(f"maps {tuple(maps.shape)} and occlusion {tuple(occlusion.shape)} do not pair up")
    lead = maps.shape[:-2]
    # float64: squares holding the same part of the map tie exactly (in float32 their means
    # could come out 1 ulp apart, a rank order that scipy's and Quantus's sums do not have)
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).double()
    if patch is not None:
        stride = max(patch // 2, 1) if stride is None else stride
        pooled = F.avg_pool2d(flat, kernel_size=patch, stride=stride)
        if pooled.shape[-2:] != occlusion.shape[-2:]:
            raise ValueError(
                f"patch {patch} / stride {stride} give a {tuple(pooled.shape[-2:])} grid on "
                f"{tuple(maps.shape[-2:])} maps, but the occlusion grid is {tuple(occlusion.shape[-2:])}"
            )
    else:
        pooled = F.adaptive_avg_pool2d(flat, occlusion.shape[-2:])
    return spearman(pooled.reshape(*lead, *occlusion.shape[-2:]), occlusion.to(pooled.device))


class MeanCI(NamedTuple):
    """A mean with a two-sided t confidence interval."""

    mean: float
    low: float
    high: float
    n: int


def mean_ci(values: torch.Tensor | Sequence[float], level: float = 0.95) -> MeanCI:
    """Mean and t-based confidence interval over images (NaNs dropped; ``n`` counts the rest).

    ``mean +- t_{(1 + level) / 2, n - 1} * sd / sqrt(n)`` with the sample sd (ddof 1);
    the bounds are NaN for fewer than two values, everything NaN for none.
    """
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    v = torch.as_tensor(values, dtype=torch.float64).flatten().cpu()
    v = v[~v.isnan()]
    n = int(v.numel())
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if n < 2:
        return MeanCI(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * float(v.std(unbiased=True)) / math.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, n)


# --------------------------------------------------------------------------- localization


def iou(a: Box | Sequence[float], b: Box | Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0.0 for empty ones)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def _box_lists(boxes: Sequence, n: int) -> list[list[Box]]:
    """One list of boxes per map; a lone 4-number box stands for a list of one."""
    if len(boxes) != n:
        raise ValueError(f"got {len(boxes)} box lists for {n} maps")
    out = []
    for entry in boxes:
        entry = list(entry)
        if len(entry) == 4 and all(isinstance(v, (int, float)) for v in entry):
            entry = [entry]
        out.append([tuple(float(v) for v in b) for b in entry])
    return out


def _check_maps(maps: torch.Tensor) -> None:
    if maps.dim() != 3:
        raise ValueError(
            f"maps must be (N, H, W), got shape {tuple(maps.shape)}: reduce images with "
            "saliency() and flatten a K axis first"
        )


def peak_points(maps: torch.Tensor) -> torch.Tensor:
    """Each map's maximum as ``(x, y)`` pixel-centre coordinates, ``(N, 2)`` float.

    The first maximum in row-major order wins ties. A constant map (or one holding a NaN)
    has no peak: its row is NaN.
    """
    _check_maps(maps)
    n, _, w = maps.shape
    flat = maps.reshape(n, -1)
    idx = flat.argmax(dim=1)
    pts = torch.stack([(idx % w).double() + 0.5, (idx // w).double() + 0.5], dim=1)
    flat_or_nan = (flat.amax(1) == flat.amin(1)) | flat.isnan().any(1)
    return torch.where(flat_or_nan[:, None], torch.full_like(pts, math.nan), pts)


def _distance_to_box(px: float, py: float, box: Box) -> float:
    dx = max(box[0] - px, 0.0, px - box[2])
    dy = max(box[1] - py, 0.0, py - box[3])
    return math.hypot(dx, dy)


def pointing_game(maps: torch.Tensor, boxes: Sequence[Sequence[Box] | Box], tolerance: float = 15) -> torch.Tensor:
    """Pointing game (Zhang et al. 2016): does each map's maximum hit its class's object?

    A hit when the centre of the maximum's pixel lies within ``tolerance`` pixels
    (Euclidean) of any of the boxes, i.e. inside a box dilated by a disc of radius
    ``tolerance`` (Zhang et al. use 15 px). A constant map points nowhere: a miss.

    Args:
        maps: ``(N, H, W)``; use :func:`saliency` for images.
        boxes: per map, the boxes of its target class in the map's pixel coordinates
            (a single box may stand for a list of one).
        tolerance: in map pixels.

    Returns:
        ``(N,)`` bool.
    """
    _check_maps(maps)
    lists = _box_lists(boxes, maps.shape[0])
    pts = peak_points(maps).tolist()
    hits = []
    for (px, py), bs in zip(pts, lists, strict=True):
        ok = not math.isnan(px) and any(_distance_to_box(px, py, b) <= tolerance for b in bs)
        hits.append(ok)
    return torch.tensor(hits, dtype=torch.bool)


def pointing_chance(boxes: Sequence[Box] | Box, size: tuple[int, int], tolerance: float = 15) -> float:
    """Fraction of an ``(H, W)`` map's pixels that count as hits for ``boxes``.

    The hit rate of a peak placed uniformly at random: the pointing game's chance level.
    """
    h, w = size
    lists = _box_lists([boxes], 1)[0]
    cx = torch.arange(w, dtype=torch.float64) + 0.5
    cy = torch.arange(h, dtype=torch.float64) + 0.5
    hit = torch.zeros(h, w, dtype=torch.bool)
    for b in lists:
        dx = torch.clamp(torch.maximum(b[0] - cx, cx - b[2]), min=0)
        dy = torch.clamp(torch.maximum(b[1] - cy, cy - b[3]), min=0)
        hit |= dy[:, None] ** 2 + dx[None, :] ** 2 <= tolerance**2
    return float(hit.double().mean())


class Localization(NamedTuple):
    """What :func:`box_localization` returns."""

    hits: torch.Tensor  # (N,) bool
    boxes: torch.Tensor  # (N, 4) float64 predicted (x0, y0, x1, y1), NaN where none


def largest_segment_box(map_: torch.Tensor, threshold: float = 0.15, connectivity: int = 8) -> Box | None:
    """Bounding box of the largest connected segment of ``map_ > threshold * max``.

    Args:
        map_: ``(H, W)``.
        threshold: fraction of the map's maximum.
        connectivity: 8 (diagonal neighbours connect) or 4.

    Returns:
        ``(x0, y0, x1, y1)`` in pixels (``x1``, ``y1`` exclusive), or None when the
        maximum is not positive (or NaN). Equal-sized segments: the first in row-major order
        (the lowest label of ``scipy.ndimage.label``).
    """
    from scipy import ndimage

    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    m = map_.detach().double().cpu().numpy()
    top = float(np.max(m)) if m.size else math.nan
    if not top > 0:
        return None
    structure = np.ones((3, 3), dtype=bool) if connectivity == 8 else None
    labels, count = ndimage.label(m > threshold * top, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    biggest = int(np.argmax(sizes)) + 1
    ys, xs = np.nonzero(labels == biggest)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def box_localization(
    maps: torch.Tensor,
    boxes: Sequence[Sequence[Box] | Box],
    threshold: float = 0.15,
    iou: float = 0.5,
    connectivity: int = 8,
) -> Localization:
    """Weakly supervised localization as in the Grad-CAM paper (and CAM, Zhou et al. 2016).

    Threshold each map at ``threshold`` (15%) of its maximum, take the largest connected
    segment (8-connectivity by default: diagonal neighbours belong to one segment; the
    paper does not say which, its code is ambiguous), box it, and count a hit when the
    box's IoU with any ground-truth box of the class is at least ``iou``.

    Args:
        maps: ``(N, H, W)``, non-negative (Grad-CAM); use :func:`saliency` for images.
        boxes: per map, the ground-truth boxes of its class in map pixels.
        threshold: fraction of the maximum.
        iou: the IoU a hit needs.
        connectivity: 8 or 4.

    Returns:
        :class:`Localization`: ``hits`` ``(N,)`` bool and the predicted ``boxes``
        ``(N, 4)`` (NaN rows, and a miss, for maps without a positive maximum).
    """
    _check_maps(maps)
    lists = _box_lists(boxes, maps.shape[0])
    hits, predicted = [], []
    for m, truth in zip(maps, lists, strict=True):
        box = largest_segment_box(m, threshold, connectivity)
        if box is None:
            hits.append(False)
            predicted.append((math.nan,) * 4)
            continue
        hits.append(any(_box_iou(box, t) >= iou for t in truth))
        predicted.append(box)
    return Localization(
        torch.tensor(hits, dtype=torch.bool), torch.tensor(predicted, dtype=torch.float64).reshape(-1, 4)
    )


_box_iou = iou  # box_localization's ``iou`` argument shadows the function there


def _resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """torchvision's ``resize(img, size)`` output ``(width, height)``: shorter side to ``size``."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _crop_offset(length: int, crop: int) -> int:
    """torchvision ``center_crop``'s first kept pixel (negative: that much padding)."""
    if crop > length:
        return -((crop - length) // 2)
    return int(round((length - crop) / 2.0))


def boxes_to_input_space(box: Box | Sequence[float], original_size: tuple[int, int], preprocess) -> Box:
    """Map a box from original image pixels to the model-input pixel grid.

    Follows :class:`stimuli.models.Preprocess` exactly: torchvision's resize of the shorter
    side to ``preprocess.resize`` (the longer side truncated to an int), then a centre crop
    of ``preprocess.crop`` (offset ``round((side - crop) / 2)``). The result is clipped to
    the crop; a box wholly outside it comes back empty (zero width or height).

    Args:
        box: ``(x0, y0, x1, y1)`` in the original image.
        original_size: ``(width, height)`` of the original image (PIL's ``image.size``).
        preprocess: anything with ``resize`` and ``crop`` int attributes.

    Returns:
        ``(x0, y0, x1, y1)`` floats in ``[0, crop]``.
    """
    width, height = original_size
    new_w, new_h = _resized_size(width, height, int(preprocess.resize))
    crop = int(preprocess.crop)
    left, top = _crop_offset(new_w, crop), _crop_offset(new_h, crop)
    sx, sy = new_w / width, new_h / height

    def clip(v: float) -> float:
        return float(min(max(v, 0.0), crop))

    x0, y0, x1, y1 = box
    return clip(x0 * sx - left), clip(y0 * sy - top), clip(x1 * sx - left), clip(y1 * sy - top)


# --------------------------------------------------------------------------- sanity check


def randomizable_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, in registration order.

    Registration order is forward order for the usual CNNs (torchvision's, EfficientNet-
    Lite); the last entry is the classifier. :func:`randomized_copy` cascades over this list
    from the end.
    """
    return [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def randomized_copy(
    model: nn.Module, seed: int = 0, cascade_upto: str | None = None, init: str = "default"
) -> nn.Module:
    """A deep copy of ``model`` with its weights re-initialized (Adebayo et al. 2018).

    Each module that owns parameters is reset with its own ``reset_parameters()`` where it
    has one: PyTorch's default initialization (Kaiming-uniform with ``a = sqrt(5)`` for
    convolutions and linear layers, i.e. weight variance ``1 / (3 fan_in)``, and uniform
    biases; BatchNorm's scale 1 and shift 0 *and* its running statistics reset to mean 0,
    variance 1, so in eval mode a re-initialized BatchNorm is the identity rather than a
    normalization with statistics of the trained network). Any other parameter gets a
    normal initialization: ``N(0, 1 / fan_in)`` for weights of two or more dimensions,
    ``N(0, 1)`` for vectors and scalars. Buffers of other modules are left alone.

    With ``init="default"`` and identity BatchNorms the signal shrinks layer after layer:
    a fully randomized MobileNetV2 or EfficientNet-Lite2 outputs its classifier bias plus
    an input-dependent part some 1e-4 of it, and Grad-CAM maps of order 1e-10 (some all
    zero). That is still a random model, the one the paper's test asks for, but a
    degenerate one; ``init="kaiming"`` draws convolution and linear weights from
    ``N(0, 2 / fan_in)`` (He et al. 2015) instead, which keeps activations of order one
    through ReLU networks.

    The original model is not touched, nor the global RNG: the draws come from a forked RNG
    seeded with ``seed``, so the same seed gives the same copy.

    Args:
        model: the trained model.
        seed: the random seed.
        cascade_upto: None randomizes every layer ("full randomization"). A module name
            randomizes, as in Adebayo's cascading randomization from the top, the layers of
            :func:`randomizable_layers` from the last (the logits) back to and including
            the first one that is, or lies inside, that module; e.g. ``"_blocks.15"``
            leaves everything before block 15 trained.
        init: ``"default"`` or ``"kaiming"``, see above.

    Returns:
        The randomized copy, on the model's device, with its training flags.
    """
    if init not in ("default", "kaiming"):
        raise ValueError(f"init must be 'default' or 'kaiming', not {init!r}")
    layers = randomizable_layers(model)
    if cascade_upto is not None:
        inside = [i for i, n in enumerate(layers) if n == cascade_upto or n.startswith(cascade_upto + ".")]
        if not inside:
            raise ValueError(f"{cascade_upto!r} names no parameterized module of {type(model).__name__}")
        layers = layers[inside[0] :]
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    devices = sorted({p.device.index or 0 for p in clone.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for name in layers:
            _reinit(modules[name], init)
    return clone


def _reinit(module: nn.Module, init: str) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        if init == "kaiming" and isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        return
    for p in module.parameters(recurse=False):
        if p.dim() >= 2:
            fan_in = p[0].numel()
            nn.init.normal_(p, 0.0, 1.0 / math.sqrt(fan_in))
        else:
            nn.init.normal_(p, 0.0, 1.0)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM between min-max normalized maps, over the last two dimensions.

    Each map is scaled to ``[0, 1]`` by its own min and max (a constant map becomes all
    zeros), then compared with ``skimage.metrics.structural_similarity(data_range=1)`` and
    its defaults: a 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance.

    Args:
        a, b: ``(..., H, W)`` of the same shape (H, W >= 7).

    Returns:
        ``(...)`` float64.
    """
    from skimage.metrics import structural_similarity

    if a.shape != b.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    lead = a.shape[:-2]
    fa = _minmax(a.reshape(-1, *a.shape[-2:])).cpu().numpy()
    fb = _minmax(b.reshape(-1, *b.shape[-2:])).cpu().numpy()
    values = [structural_similarity(x, y, data_range=1.0) for x, y in zip(fa, fb, strict=True)]
    return torch.tensor(values, dtype=torch.float64).reshape(lead)


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    m = maps.detach().double()
    lo = m.amin(dim=(-2, -1), keepdim=True)
    span = m.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (m - lo) / span.clamp(min=torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def sanity_check(
    model: nn.Module,
    x: torch.Tensor,
    targets,
    layer: str | nn.Module | None = None,
    methods: Iterable[str] = ("gradcam", "guided_backprop", "guided_gradcam"),
    seed: int = 0,
    cascade_upto: str | None = None,
    randomized: nn.Module | None = None,
    init: str = "default",
) -> dict[str, dict[str, torch.Tensor]]:
    """Model-randomization test (Adebayo et al. 2018): trained vs randomized maps.

    Explains ``x`` with ``model`` and with :func:`randomized_copy` (or ``randomized``, a
    copy made earlier) at the same layer name, then compares, per method, the absolute
    :func:`saliency` of the two (Spearman rank correlation, as Adebayo's "absolute value"
    variant) and the SSIM of the min-max normalized saliency maps (:func:`ssim`). A method
    whose maps barely change when the weights are random does not explain the model.

    Args:
        model: the trained model.
        x: ``(N, 3, H, W)`` preprocessed input.
        targets: as for :func:`gradcam.explain` (int, ``(N,)``, ``(N, K)``, callable).
        layer: Grad-CAM layer: a name, a module of ``model``, or None for the default;
            the randomized copy is read at the same name.
        methods: engine method names.
        seed, cascade_upto, init: for :func:`randomized_copy`.
        randomized: use this copy instead of making one.

    Returns:
        ``{method: {"spearman": (N,), "ssim": (N,)}}`` float64 (``(N, K)`` for ``K``
        targets per image).
    """
    from gradcam import explain
    from gradcam.layers import resolve_layer

    methods = tuple(methods)
    name, _ = resolve_layer(model, layer)
    if randomized is None:
        randomized = randomized_copy(model, seed=seed, cascade_upto=cascade_upto, init=init)
    trained = explain(model, x, targets, layer=name, methods=methods)
    random = explain(randomized, x, targets, layer=name, methods=methods)
    out = {}
    for method in methods:
        a = method_saliency(trained, method).abs()
        b = method_saliency(random, method).abs()
        out[method] = {"spearman": spearman(a, b), "ssim": ssim(a, b)}
    return out
