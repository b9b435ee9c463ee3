"""Structure scores (stimuli.structure) on hand-made images whose answer is known: a
checkerboard, stripes, a checkerboard resampled as the display resampling does, blank and
faded images, and smooth images that follow their photo's edges."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stimuli import structure

S = 96


def _u8(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` floats in [0, 1] to a batch of one ``(1, H, W, 3)`` uint8 image."""
    return torch.from_numpy(np.clip(np.round(img * 255), 0, 255).astype(np.uint8))[None]


def _photo(seed: int = 0) -> np.ndarray:
    """A natural-ish photo: a smooth background, two soft-edged shapes, a little texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:S, 0:S] / S
    img = np.stack([0.3 + 0.3 * x, 0.4 + 0.2 * y, 0.5 - 0.2 * x * y], -1)
    disk = 1 / (1 + np.exp(-(0.18 - np.hypot(x - 0.35, y - 0.4)) * 60))
    box = 1 / (1 + np.exp(-(0.2 - np.maximum(abs(x - 0.7), abs(y - 0.7))) * 60))
    img = img * (1 - disk[..., None]) + np.array([0.9, 0.6, 0.2]) * disk[..., None]
    img = img * (1 - box[..., None]) + np.array([0.1, 0.2, 0.7]) * box[..., None]
    return np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1)


def _grey_pattern(pattern: np.ndarray, amplitude: float = 0.1) -> np.ndarray:
    return np.repeat((0.5 + amplitude * pattern)[..., None], 3, -1)


def _score(stimulus: np.ndarray, photo: np.ndarray | None = None) -> dict:
    return structure.score(_u8(stimulus), _u8(_photo() if photo is None else photo))[0]


def _checker(n: int) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n]
    return np.where((x + y) % 2 == 0, 1.0, -1.0)


def test_a_checkerboard_is_periodic_with_its_energy_at_the_highest_frequencies():
    s = _score(_grey_pattern(_checker(S)))
    assert s["hf_share"] > 0.9 and s["periodic"] > 0.9 and abs(s["edge_corr"]) < 0.2
    assert s["contrast"] < 0.008  # it low-passes to flat grey: blank as well
    assert s["degenerate"] and s["why"] == ["periodic", "blank"]


def test_stripes_and_a_resampled_checkerboard_are_periodic():
    y, x = np.mgrid[0:S, 0:S]
    stripes = _score(_grey_pattern(np.where(x % 2 == 0, 1.0, -1.0)))
    assert stripes["periodic"] > 0.9 and "periodic" in stripes["why"]
    # A checkerboard at 112 px shown at 96 (as EfficientNet-Lite2's 260 px input is shown at
    # 224): the display's antialiased resampling damps it and aliases it into a beat, still
    # a few spectral peaks.
    big = torch.from_numpy(_grey_pattern(_checker(112), 0.3)).permute(2, 0, 1)[None].float()
    small = F.interpolate(big, size=(S, S), mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0)
    beat = _score(small.numpy())
    assert beat["periodic"] > 0.5 and "periodic" in beat["why"]


def test_blank_and_faded_images_are_blank():
    grey = _score(np.full((S, S, 3), 0.5))
    assert grey["contrast"] == 0 and grey["faded"] == 1 and grey["why"] == ["blank"]
    dot = np.full((S, S, 3), 0.5)
    dot[40:43, 40:43] = 1.0  # all but a speck faded away
    speck = _score(dot)
    assert speck["faded"] >= 0.97 and speck["why"] == ["blank"]


def test_a_smooth_image_with_the_photos_edges_is_not_degenerate():
    photo = _photo()
    # A guided-backprop-like image: mid-grey, with the photo's edges drawn in colour.
    t = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    e = structure.edges(t)[0].numpy()
    stimulus = np.clip(0.5 + 2.0 * e[..., None] * np.array([1.0, -0.5, 0.8]), 0, 1)
    s = _score(stimulus, photo)
    assert s["edge_corr"] > 0.5 and s["periodic"] < 0.2 and s["contrast"] > 0.01
    assert not s["degenerate"] and s["why"] == []
    # A Grad-CAM-like overlay: the photo under a smooth colour blob.
    y, x = np.mgrid[0:S, 0:S] / S
    blob = np.exp(-((x - 0.35) ** 2 + (y - 0.4) ** 2) / 0.05)[..., None] * np.array([1.0, 0.2, 0.0])
    s = _score(0.5 * photo + 0.5 * blob, photo)
    assert s["edge_corr"] > 0.5 and not s["degenerate"]
    # An unrelated photo's edges do not correlate.
    assert _score(stimulus, _photo(1)[::-1].copy())["edge_corr"] < s["edge_corr"]


def test_an_overlay_on_a_striped_photo_is_kept():
    """Periodic, but it follows the photo's own edges: a photo of stripes, not an artefact."""
    y, x = np.mgrid[0:S, 0:S]
    photo = _grey_pattern(np.where((x // 2) % 2 == 0, 1.0, -1.0), 0.4)
    s = _score(0.5 * photo + 0.25, photo)
    assert s["periodic"] > 0.5 and s["edge_corr"] > 0.9 and not s["degenerate"]


def test_the_scores_come_from_the_photo_or_its_edges_alike():
    photo, stimulus = _u8(_photo()), _u8(_grey_pattern(_checker(S)))
    assert structure.score(stimulus, photo) == structure.score(stimulus, edges_of_photos=structure.photo_edges(photo))
    with pytest.raises(ValueError, match="shape"):
        structure.score(stimulus, photo[:, :50])


def test_a_pair_is_degenerate_when_half_its_stimuli_are():
    def row(method: str, bad: bool) -> dict:
        s = {k: 0.0 for k in structure.SCORES}
        return {
            "model_role": "weaker",
            "model": "m",
            "method": method,
            "structure": {**s, "degenerate": bad, "why": ["periodic"] if bad else []},
        }

    rows = [row("deconvnet", i < 3) for i in range(6)] + [row("gradcam", i < 2) for i in range(6)]
    rows.append({"model_role": "none", "model": "none", "method": "photo", "structure": None})
    pairs = {p["method"]: p for p in structure.pair_summary(rows)}
    assert set(pairs) == {"deconvnet", "gradcam"}
    assert pairs["deconvnet"]["degenerate"] and pairs["deconvnet"]["degenerate_stimuli"] == 3
    assert not pairs["gradcam"]["degenerate"] and pairs["gradcam"]["why"] == ["periodic"]
    line = structure.warning_line(pairs["deconvnet"])
    assert line.startswith("warning: deconvnet of the weaker model (m) is degenerate: 3 of 6") and "\n" not in line
