"""The metrics of ``stimuli evaluate`` against Quantus 0.6.0 on a small fixed case (issue 14, part 5).

A seeded 5-class CNN (two conv layers with BatchNorm, global pooling, a linear head),
four seeded 48 px inputs with fixed targets (classes 0, 1, 2, 4), their Grad-CAM maps from
the engine, seeded maps and boxes. Per metric, ours and Quantus's implementation of it:

* faithfulness: ours is the Spearman correlation, over the occlusion squares, of the map's
  mean over each square with the target logit's drop when that square alone is filled.
  That is Alvarez-Melis & Jaakkola's faithfulness estimate (``quantus.FaithfulnessEstimate``:
  the correlation of the attribution summed over a perturbed feature set with the
  prediction's drop, each set perturbed alone) with one feature per occlusion square:
  Quantus runs on a view of the model whose input is one keep/occlude switch per square,
  baseline 0 (occluded), ``features_in_step=1``, ``similarity_func=correlation_spearman``.
  The two agree to 1e-12, for overlapping and for disjoint squares. Quantus's
  pixel-space metrics (the estimate over rank-ordered pixel groups, FaithfulnessCorrelation's
  random subsets, both with Pearson by default) measure something else; their values are
  printed beside ours, not compared;
* pointing game: Quantus has no tolerance, so it gets the box's pixels dilated by a disc
  of the tolerance as its mask (0 px: the box's own pixels; 15 px: Zhang et al.'s). Hits
  agree on every map with one maximum; ties and constant maps differ by definition
  (asserted below);
* randomisation (Adebayo et al. 2018): ``quantus.MPRT`` with ``layer_order="top_down"``
  randomises the same layers in the same order as ours (asserted layer by layer); given
  the same randomised model, our Spearman equals Quantus's to 1e-12. The random weights
  differ (Quantus reseeds with ``seed + 1`` before every layer, we draw the layers from
  one seeded stream), so the similarity of the *independently* randomised models is
  printed, not compared. SSIM: Quantus's ``ssim`` on two maps min-max normalised to
  [0, 1] is ours exactly; inside MPRT it is given the maps flattened, i.e. a 1-D SSIM
  over the rows laid end to end, which differs (printed).

``docs/stimuli.md`` ("Metrics against Quantus") records the figures that ``FIGURES``
collects (run with ``-s`` to see them). Quantus warns a lot; its warnings are silenced.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from gradcam import explain
from stimuli import metrics as M

quantus = pytest.importorskip("quantus")
from quantus.functions.similarity_func import correlation_spearman, ssim  # noqa: E402
from quantus.helpers.model.pytorch_model import PyTorchModel  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")

SIZE, N, CLASSES = 48, 4, 5
LAYER = "relu2"  # the rectified output of the last conv, 24 x 24
FIGURES: dict[str, object] = {}


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def case():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TinyCNN()
        with torch.no_grad():  # trained-looking BatchNorms: randomisation must change them
            for bn in (model.bn1, model.bn2):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0, 0.2)
                bn.running_mean.normal_(0, 0.2)
                bn.running_var.uniform_(0.5, 2.0)
        model.eval()
        x = torch.randn(N, 3, SIZE, SIZE)
    return model, x, torch.tensor([0, 1, 2, 4])  # fixed targets (class 3's Grad-CAM is all zero here)


def _gradcam(model, x, y) -> torch.Tensor:
    return explain(model, x, y, layer=LAYER, methods="gradcam").gradcam.detach()


def _quantus_explain(model, inputs, targets, **_):
    """Quantus's ``explain_func``: our Grad-CAM at ``LAYER``, ``(N, H, W)`` numpy."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(targets)).long()
    return _gradcam(model, x, y).numpy()


# --------------------------------------------------------------------------- faithfulness


def _squares(patch: int, stride: int) -> list[tuple[int, int]]:
    gh, gw = M.occlusion_grid((SIZE, SIZE), patch, stride)
    return [(r * stride, c * stride) for r in range(gh) for c in range(gw)]


class SquareSwitches(nn.Module):
    """The model seen through one input per occlusion square: 1 keeps it, 0 fills it.

    ``forward(z)`` with ``z`` ``(N, 1, h', w')`` runs the model on ``x`` with every square
    whose switch is 0 replaced by ``fill`` (per image and channel), as
    :func:`stimuli.metrics.occlusion_map` does one square at a time.
    """

    def __init__(self, model, x, fill, patch, stride) -> None:
        super().__init__()
        self.model, self.x, self.fill = model, x, fill
        self.patch, self.squares = patch, _squares(patch, stride)

    def forward(self, z):
        assert z.shape[0] == self.x.shape[0]
        off = (z.reshape(z.shape[0], -1) < 0.5).float()  # (N, K)
        masks = torch.zeros(len(self.squares), SIZE, SIZE)
        for k, (y0, x0) in enumerate(self.squares):
            masks[k, y0 : y0 + self.patch, x0 : x0 + self.patch] = 1
        hidden = (torch.einsum("nk,khw->nhw", off, masks) > 0)[:, None]
        return self.model(torch.where(hidden, self.fill[:, :, None, None], self.x))


def _square_sums(maps: torch.Tensor, patch: int, stride: int) -> np.ndarray:
    """The map summed over each occlusion square, ``(N, 1, h', w')`` float64 (by hand)."""
    m = maps.double().numpy()
    gh, gw = M.occlusion_grid((SIZE, SIZE), patch, stride)
    sums = [m[:, y0 : y0 + patch, x0 : x0 + patch].sum(axis=(1, 2)) for y0, x0 in _squares(patch, stride)]
    return np.stack(sums, axis=1).reshape(len(m), 1, gh, gw)


@pytest.mark.parametrize(("patch", "stride", "fill"), [(12, 6, 0.0), (8, 8, 0.0), (16, 8, "mean")])
def test_faithfulness_is_quantus_faithfulness_estimate_over_occlusion_squares(case, patch, stride, fill):
    model, x, y = case
    maps = _gradcam(model, x, y)
    occ = M.occlusion_map(model, x, y, patch=patch, stride=stride, fill=fill)
    ours = M.faithfulness(maps, occ, patch=patch, stride=stride).numpy()

    fills = x.mean(dim=(2, 3)) if fill == "mean" else torch.full((N, 3), float(fill))
    view = SquareSwitches(model, x, fills, patch, stride).eval()
    gh, gw = occ.shape[-2:]
    metric = quantus.FaithfulnessEstimate(
        similarity_func=correlation_spearman,
        features_in_step=1,
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    theirs = np.asarray(
        metric(
            model=view,
            x_batch=np.ones((N, 1, gh, gw), dtype=np.float32),
            y_batch=y.numpy(),
            a_batch=_square_sums(maps, patch, stride),
            device="cpu",
            batch_size=N,
        )
    )
    FIGURES[f"faithfulness patch {patch} stride {stride} fill {fill}"] = (ours.round(4), np.abs(ours - theirs).max())
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_quantus_pixel_space_faithfulness_is_another_quantity(case):
    """Not compared: printed for the record (docs/stimuli.md)."""
    model, x, y = case
    maps = _gradcam(model, x, y)
    occ = M.occlusion_map(model, x, y, patch=12, stride=6)
    ours = M.faithfulness(maps, occ, patch=12, stride=6).numpy()
    a = maps.numpy()[:, None]
    kw = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "a_batch": a, "device": "cpu"}
    np.random.seed(0)
    corr = np.asarray(
        quantus.FaithfulnessCorrelation(
            nr_runs=100, subset_size=12 * 12, perturb_baseline=0.0, return_aggregate=False, disable_warnings=True
        )(**kw)
    )
    est = np.asarray(
        quantus.FaithfulnessEstimate(features_in_step=12 * 12, perturb_baseline=0.0, disable_warnings=True)(**kw)
    )
    FIGURES["pixel space: ours | FaithfulnessCorrelation | FaithfulnessEstimate"] = (
        ours.round(3),
        corr.round(3),
        est.round(3),
    )
    assert np.isfinite(corr).all() and np.isfinite(est).all()


# --------------------------------------------------------------------------- pointing game


def _dilated_mask(box, size: int, tolerance: float) -> np.ndarray:
    """Pixels whose centre lies within ``tolerance`` of ``box`` (numpy, by hand)."""
    c = np.arange(size) + 0.5
    dx = np.maximum(np.maximum(box[0] - c, c - box[2]), 0)
    dy = np.maximum(np.maximum(box[1] - c, c - box[3]), 0)
    return dy[:, None] ** 2 + dx[None, :] ** 2 <= tolerance**2


def _quantus_pointing(model, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    n, h, w = maps.shape
    x = np.zeros((n, 3, h, w), dtype=np.float32)
    metric = quantus.PointingGame(disable_warnings=True)
    return np.asarray(
        metric(
            model=model,
            x_batch=x,
            y_batch=np.zeros(n, dtype=int),
            a_batch=maps[:, None],
            s_batch=masks[:, None].astype(np.float32),
            device="cpu",
        ),
        dtype=float,
    )


@pytest.mark.parametrize("tolerance", [0, 15])
def test_pointing_game_matches_quantus_with_a_dilated_mask(case, tolerance):
    model = case[0]
    g = torch.Generator().manual_seed(3)
    size, n = 48, 40
    blobs = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 9, 1, 4)[:, 0]
    maps = blobs.double() + 1e-9 * torch.rand(n, size, size, generator=g, dtype=torch.float64)  # one maximum
    corners = torch.rand(n, 2, generator=g) * 30
    sides = 6 + torch.rand(n, 2, generator=g) * 12
    boxes = [
        (float(cx), float(cy), float(cx + sx), float(cy + sy))
        for (cx, cy), (sx, sy) in zip(corners, sides, strict=True)
    ]
    ours = M.pointing_game(maps, boxes, tolerance=tolerance).numpy()
    masks = np.stack([_dilated_mask(b, size, tolerance) for b in boxes])
    theirs = _quantus_pointing(model, maps.numpy(), masks)
    FIGURES[f"pointing game tolerance {tolerance}"] = (
        f"{ours.mean():.3f}",
        f"{theirs.mean():.3f}",
        int((ours != theirs).sum()),
    )
    assert 0 < ours.sum() < n  # hits and misses both
    np.testing.assert_array_equal(ours, theirs.astype(bool))


def test_pointing_game_ties_and_constant_maps_differ_from_quantus(case):
    model = case[0]
    box = (8.0, 8.0, 16.0, 16.0)
    tie = np.zeros((32, 32))
    tie[2, 2] = tie[10, 10] = 1.0  # first maximum (row-major) outside the box, second inside
    flat = np.ones((32, 32))
    maps = np.stack([tie, flat])
    ours = M.pointing_game(torch.from_numpy(maps), [box, box], tolerance=0).numpy()
    theirs = _quantus_pointing(model, maps, np.stack([_dilated_mask(box, 32, 0)] * 2))
    # ours: the first maximum, a constant map points nowhere; Quantus: any maximum
    assert ours.tolist() == [False, False] and theirs.tolist() == [1.0, 1.0]
    empty = _quantus_pointing(model, maps[:1], np.zeros((1, 32, 32), dtype=bool))
    # Quantus 0.6.0 means to give NaN where the mask is empty, but writes the NaN into a bool
    # array, where it becomes True: a hit. Ours: no box, a miss (and no box list is empty in use).
    assert empty.tolist() == [1.0]
    assert M.pointing_game(torch.from_numpy(maps[:1]), [[]]).tolist() == [False]


# --------------------------------------------------------------------------- randomisation


def _changed(original: nn.Module, other: nn.Module) -> set[str]:
    a, b = original.state_dict(), other.state_dict()
    return {k.rsplit(".", 1)[0] for k in a if k.endswith(("weight", "bias")) and not torch.equal(a[k], b[k])}


def test_mprt_layer_order_and_spearman_match_quantus(case):
    model, x, y = case
    layers = M.randomizable_layers(model)
    wrapped = PyTorchModel(model, channel_first=True, softmax=False, device="cpu")
    steps = [(name, copy.deepcopy(m)) for name, m in wrapped.get_random_layer_generator(order="top_down", seed=42)]
    assert [name for name, _ in steps] == layers[::-1] == ["fc", "bn2", "conv2", "bn1", "conv1"]
    ours_by_layer, own_rng = {}, {}
    for k, (name, randomized) in enumerate(steps):
        mine = M.randomized_copy(model, seed=42, cascade_upto=name)
        assert _changed(model, mine) == _changed(model, randomized) == set(layers[len(layers) - 1 - k :])
        ours_by_layer[name] = M.sanity_check(model, x, y, layer=LAYER, methods=("gradcam",), randomized=randomized)[
            "gradcam"
        ]
        own_rng[name] = M.sanity_check(model, x, y, layer=LAYER, methods=("gradcam",), randomized=mine)["gradcam"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {
            "model": model,
            "x_batch": x.numpy(),
            "y_batch": y.numpy(),
            "a_batch": None,
            "explain_func": _quantus_explain,
            "device": "cpu",
            "batch_size": N,
        }
        opts = {
            "similarity_func": correlation_spearman,
            "layer_order": "top_down",
            "seed": 42,
            "abs": True,
            "disable_warnings": True,
        }
        # Spearman does not see a scale; Quantus's default normalise_by_max divides in float32,
        # which can round two near-equal values of a map into a tie (measured below)
        scores = quantus.MPRT(normalise=False, **opts)(**kw)
        by_max = quantus.MPRT(**opts)(**kw)
    assert list(scores) == ["original", *layers[::-1]]
    np.testing.assert_allclose(scores["original"], 1.0, atol=1e-12)
    for name, _ in steps:
        np.testing.assert_allclose(ours_by_layer[name]["spearman"].numpy(), scores[name], rtol=0, atol=1e-12)
    FIGURES["MPRT spearman, ours vs Quantus (same models): largest difference"] = max(
        float(np.nanmax(np.abs(ours_by_layer[k]["spearman"].numpy() - np.asarray(scores[k])))) for k, _ in steps
    )
    FIGURES["MPRT spearman, Quantus normalise_by_max vs not: largest difference"] = max(
        float(np.nanmax(np.abs(np.subtract(by_max[k], scores[k])))) for k in scores
    )
    FIGURES["MPRT spearman per image, Quantus's randomised models (= ours on them)"] = {
        name: np.round(scores[name], 3) for name, _ in steps
    }
    FIGURES["MPRT spearman per image, ours with our own draws (seed 42)"] = {
        name: own_rng[name]["spearman"].numpy().round(3) for name, _ in steps
    }


def _minmax_per_map(a: np.ndarray, **_) -> np.ndarray:
    lo = a.min(axis=tuple(range(1, a.ndim)), keepdims=True)
    span = a.max(axis=tuple(range(1, a.ndim)), keepdims=True) - lo
    return np.where(span > 0, (a - lo) / np.where(span > 0, span, 1), 0.0)


def _ssim_array(a, b, batched=False, **kwargs):
    """Quantus's ``ssim`` returning an array, which MPRT needs."""
    return np.asarray(ssim(a, b, batched=batched, **kwargs))


def test_ssim_matches_quantus_on_2d_maps_but_mprt_flattens_them(case):
    model, x, y = case
    full = M.randomized_copy(model, seed=0)
    res = M.sanity_check(model, x, y, layer=LAYER, methods=("gradcam",), randomized=full)["gradcam"]
    a, b = _gradcam(model, x, y).abs(), _gradcam(full, x, y).abs()
    na, nb = _minmax_per_map(a.double().numpy()), _minmax_per_map(b.double().numpy())
    theirs_2d = np.array([ssim(p, q) for p, q in zip(na, nb, strict=True)])  # default 7 x 7 window, range 1
    np.testing.assert_allclose(res["ssim"].numpy(), theirs_2d, rtol=0, atol=1e-12)
    FIGURES["SSIM 2-D, ours vs Quantus's ssim: largest difference"] = float(
        np.abs(res["ssim"].numpy() - theirs_2d).max()
    )

    kw = {
        "model": model,
        "x_batch": x.numpy(),
        "y_batch": y.numpy(),
        "a_batch": None,
        "explain_func": _quantus_explain,
        "device": "cpu",
        "batch_size": N,
    }
    opts = {
        "layer_order": "top_down",
        "seed": 42,
        "abs": True,
        "normalise_func": _minmax_per_map,
        "return_last_correlation": True,
        "disable_warnings": True,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(AttributeError, match="tolist"):  # Quantus 0.6.0: its ssim returns a list
            quantus.MPRT(similarity_func=ssim, **opts)(**kw)
        flat = np.asarray(quantus.MPRT(similarity_func=_ssim_array, **opts)(**kw))
    wrapped = PyTorchModel(model, channel_first=True, softmax=False, device="cpu")
    *_, (_, last) = wrapped.get_random_layer_generator(order="top_down", seed=42)
    ours_same_model = M.sanity_check(model, x, y, layer=LAYER, methods=("gradcam",), randomized=last)["gradcam"]
    FIGURES["SSIM, fully randomised (Quantus's model): ours 2-D | Quantus MPRT (flattened)"] = (
        ours_same_model["ssim"].numpy().round(3),
        flat.round(3),
    )
    assert np.isfinite(flat).all()


def test_zz_print_figures():
    for k, v in FIGURES.items():
        print(f"{k}: {v}")
