"""Structure scores of explanation stimuli: does a stimulus show structure of its photo, a
fine periodic pattern, or next to nothing?

Deconvnet through strided and depthwise convolutions (MobileNetV2, EfficientNet-Lite)
gives checkerboards (Odena et al. 2016, "Deconvolution and checkerboard artifacts"): a
period-2 pattern at the model's input resolution, the same for every photo, which the
display resampling either keeps (224 px models shown at 224 px) or aliases into a finer
beat pattern (260 px shown at 224 px). Participants who see such stimuli see noise. The
build scores every explanation stimulus on its 1x display pixels, beside the photo the
model saw (resampled to the same size):

* ``hf_share``: the share of the spectral energy (mean removed, Hann window, all three
  channels) at the highest spatial frequencies, ``max(|fx|, |fy|) > 3/8`` cycles per
  pixel. A period-2 checkerboard at the display resolution puts most of its energy there.
* ``periodic``: the share of the spectral energy above ``1/8`` cycles per pixel that lies
  in isolated peaks: frequencies with at least 4 times the power of each of their four
  neighbours 3 frequency bins away (left, right, up, down; a Hann window's main lobe is 2
  bins wide). A periodic pattern (a checkerboard, or its aliased beat after resampling) is
  a few such peaks. A photo's or a gradient image's spectrum is broad, and a straight edge
  puts its energy on a line of frequencies, whose neighbours along the line are as strong,
  so neither counts (random speckle in a broad spectrum passes the test by chance in about
  1.4% of frequencies).
* ``edge_corr``: Pearson correlation between the Sobel edge magnitude of the stimulus and
  that of the photo, both low-passed first (:func:`low_pass`: Gaussian, sigma 1 display
  pixel, so that the edges of a period-2 pattern do not count as edges; every second
  pixel; the 3 px border left out).
* ``contrast``: RMS contrast of the low-passed stimulus (spatial standard deviation per
  channel, root mean square over channels, pixel values in [0, 1]): what is left when the
  finest pattern is removed. A grey checkerboard low-passes to flat grey.
* ``faded``: the share of low-passed pixels whose colour is within 2/255 of the
  stimulus's median colour in every channel (nothing to see there).

A stimulus is ``degenerate`` when it is *periodic* (``periodic >= 0.5`` and
``edge_corr < 0.5``: a periodic pattern that does not follow the photo's edges; an overlay
on a photo of stripes follows them) or *blank* (``contrast < 0.008`` or ``faded >= 0.97``).
A (model role, method) pair is degenerate when at least half of its stimuli are
(:func:`pair_summary`). The thresholds were set on the demo build's real stimuli;
docs/stimuli.md has the scores measured per model and method, and why these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import torch
import torch.nn.functional as F

SIGMA = 1.0  # display pixels: the low-pass before the edge maps, the contrast and the faded share
HF_CUT = 3 / 8  # cycles per pixel: hf_share's band
PERIODIC_CUT = 1 / 8  # cycles per pixel: the band in which periodic looks for peaks
PEAK_DISTANCE = 3  # frequency bins to the neighbours a peak is compared with
PEAK_RATIO = 4.0  # a peak has at least this many times the power of each of them
FADED_TOLERANCE = 2 / 255

PERIODIC_MIN = 0.5
EDGE_CORR_MAX = 0.5  # a periodic stimulus that follows the photo's edges this well is kept
CONTRAST_MIN = 0.008
FADED_MAX = 0.97
PAIR_SHARE = 0.5  # a pair is degenerate when at least this share of its stimuli are

DIGITS = 4  # the scores are rounded, so a re-rendered stimulus records the same numbers

THRESHOLDS = {
    "periodic_min": PERIODIC_MIN,
    "edge_corr_max": EDGE_CORR_MAX,
    "contrast_min": CONTRAST_MIN,
    "faded_max": FADED_MAX,
    "pair_share": PAIR_SHARE,
}


def _as_float(pixels: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 display pixels to ``(B, 3, H, W)`` floats in [0, 1], in the
    channels-last layout they have (the grouped convolutions of the blur are 10x faster on
    it, on one CPU thread, than on the contiguous layout)."""
    return pixels.permute(0, 3, 1, 2).float().div_(255)


def low_pass(x: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """``(B, C, H, W)`` blurred by a Gaussian of ``sigma`` pixels and kept at every second
    pixel, without the border the kernel does not cover (3 pixels at sigma 1). After the
    blur the finest frequencies are down to 1% of their amplitude (at sigma 1), so every
    second pixel keeps what is left, at a quarter of the cost; a padded border would add
    edges of its own."""
    r = min(math.ceil(3 * sigma), (x.shape[-1] - 1) // 2, (x.shape[-2] - 1) // 2)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, stride=(1, 2))
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, stride=(2, 1))


def edges(x: torch.Tensor) -> torch.Tensor:
    """Sobel edge magnitude ``(B, H, W)`` of ``(B, C, H, W)`` images, over all channels
    (borders replicated; written as shifted differences, which on one CPU thread took a
    tenth of the time of a grouped 3x3 convolution)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    dx = p[..., :, 2:] - p[..., :, :-2]  # (B, C, H + 2, W)
    dy = p[..., 2:, :] - p[..., :-2, :]  # (B, C, H, W + 2)
    gx = (dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]) / 8
    gy = (dy[..., :, :-2] + 2 * dy[..., :, 1:-1] + dy[..., :, 2:]) / 8
    return (gx.square_() + gy.square_()).sum(1).sqrt_()


@lru_cache(maxsize=8)
def _spectrum_setup(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2D Hann window, and the masks of hf_share's band and of periodic's band."""
    win = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None, :]
    fy = torch.fft.fftfreq(h).abs()[:, None].expand(h, w)
    fx = torch.fft.fftfreq(w).abs()[None, :].expand(h, w)
    f = torch.maximum(fy, fx)
    return win, f > HF_CUT, f > PERIODIC_CUT


def _power(x: torch.Tensor) -> torch.Tensor:
    """The power spectrum ``(B, H, W)`` of ``(B, C, H, W)`` images, mean removed, Hann
    window, channels summed."""
    h, w = x.shape[-2:]
    win = _spectrum_setup(h, w)[0]
    z = torch.fft.rfft2((x - x.mean((-2, -1), keepdim=True)).contiguous().mul_(win))  # contiguous: FFTs 5x faster
    half = (z.real.square() + z.imag.square()).sum(1)  # (B, H, W // 2 + 1): frequencies 0..W/2 across
    # The other half from the symmetry of a real image's spectrum, P(fy, fx) = P(-fy, -fx):
    # half the transform's work, and then the full spectrum as before.
    rest = half[:, (-torch.arange(h)) % h][..., 1 : (w + 1) // 2].flip(-1)
    return torch.cat([half, rest], -1)


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 1e-12, (a * b).sum(1) / den.clamp(min=1e-12), torch.zeros_like(den))


def verdict(s: dict) -> list[str]:
    """Why a stimulus with scores ``s`` is degenerate: ``[]``, ``["periodic"]``, ``["blank"]`` or both."""
    why = []
    if s["periodic"] >= PERIODIC_MIN and s["edge_corr"] < EDGE_CORR_MAX:
        why.append("periodic")
    if s["contrast"] < CONTRAST_MIN or s["faded"] >= FADED_MAX:
        why.append("blank")
    return why


@torch.no_grad()
def photo_edges(photos: torch.Tensor) -> torch.Tensor:
    """The edge maps that :func:`score` compares stimuli with, of ``(B, H, W, 3)`` uint8
    photos: worked out once per photo and model, not once per method."""
    return edges(low_pass(_as_float(photos)))


@torch.no_grad()
def score(
    stimuli: torch.Tensor,
    photos: torch.Tensor | None = None,
    edges_of_photos: torch.Tensor | None = None,
) -> list[dict]:
    """The structure scores of ``(B, H, W, 3)`` uint8 stimuli beside their ``(B, H, W, 3)``
    uint8 photos (the same size), or beside the photos' :func:`photo_edges`: one dict per
    stimulus, ``hf_share, periodic, edge_corr, contrast, faded, degenerate, why``."""
    if edges_of_photos is None:
        if photos is None or photos.shape != stimuli.shape:
            raise ValueError(f"need photos of the stimuli's shape {tuple(stimuli.shape)}")
        edges_of_photos = photo_edges(photos)
    x = _as_float(stimuli)
    p = _power(x)
    _, hf_band, band = _spectrum_setup(*x.shape[-2:])
    total = p.sum((-2, -1)).clamp(min=1e-20)
    hf = (p * hf_band).sum((-2, -1)) / total
    d = PEAK_DISTANCE
    neighbours = torch.maximum(
        torch.maximum(p.roll(d, -1), p.roll(-d, -1)), torch.maximum(p.roll(d, -2), p.roll(-d, -2))
    )
    in_band = p * band
    periodic = (in_band * (p >= PEAK_RATIO * neighbours)).sum((-2, -1)) / in_band.sum((-2, -1)).clamp(min=1e-20)
    xb = low_pass(x)
    edge_corr = _corr(edges(xb), edges_of_photos)
    mean = xb.mean((-2, -1))
    contrast = (xb.square().mean((-2, -1)) - mean.square()).clamp_(min=0).mean(1).sqrt()
    # The median colour from every second pixel each way: the same to a level, a quarter of the time.
    median = xb[..., ::2, ::2].flatten(2).median(-1).values[..., None, None]
    faded = ((xb - median).abs().amax(1) < FADED_TOLERANCE).flatten(1).float().mean(1)
    out = []
    for i in range(x.shape[0]):
        s = {
            "hf_share": round(float(hf[i]), DIGITS),
            "periodic": round(float(periodic[i]), DIGITS),
            "edge_corr": round(float(edge_corr[i]), DIGITS),
            "contrast": round(float(contrast[i]), DIGITS),
            "faded": round(float(faded[i]), DIGITS),
        }
        why = verdict(s)
        out.append({**s, "degenerate": bool(why), "why": why})
    return out


SCORES = ("hf_share", "periodic", "edge_corr", "contrast", "faded")


def pair_summary(rows: Iterable[dict]) -> list[dict]:
    """Per (model role, method) of the explanation rows: how many stimuli, how many
    degenerate, the median of each score, and whether the pair is degenerate (at least
    :data:`PAIR_SHARE` of its stimuli are). Rows without scores (photos) are skipped."""
    groups: dict[tuple[str, str], list[dict]] = {}
    models: dict[tuple[str, str], str] = {}
    for r in rows:
        s = r.get("structure")
        if not s:
            continue
        key = (r["model_role"], r["method"])
        groups.setdefault(key, []).append(s)
        models[key] = r["model"]
    out = []
    for (role, method), scores in sorted(groups.items()):
        n = len(scores)
        bad = sum(s["degenerate"] for s in scores)
        why = sorted({w for s in scores if s["degenerate"] for w in s["why"]})
        out.append(
            {
                "model_role": role,
                "model": models[(role, method)],
                "method": method,
                "stimuli": n,
                "degenerate_stimuli": bad,
                "degenerate": bad >= PAIR_SHARE * n,
                "why": why,
                "median": {k: round(_median([s[k] for s in scores]), DIGITS) for k in SCORES},
            }
        )
    return out


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def warning_line(pair: dict) -> str:
    """The build's one line about a degenerate pair."""
    m = pair["median"]
    return (
        f"warning: {pair['method']} of the {pair['model_role']} model ({pair['model']}) is degenerate: "
        f"{pair['degenerate_stimuli']} of {pair['stimuli']} stimuli {' or '.join(pair['why'])} "
        f"(median periodic {m['periodic']:.2f}, hf_share {m['hf_share']:.2f}, edge_corr {m['edge_corr']:.2f}, "
        f"contrast {m['contrast']:.3f}); `camstudy study create` refuses them unless allow_degenerate = true"
    )
