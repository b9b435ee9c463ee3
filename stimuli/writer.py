"""The build's writer: decode a batch's photos, explain it in one engine call per model,
render each (model, method) at 1x and 2x, score its structure, PNG-encode, hash and write
it, and the manifest row of every file.

See :mod:`stimuli.build` for the whole run.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from camstudy.version import code_version
from gradcam import PlainGradientWarning, explain
from gradcam.render import is_overlaid, overlay, overlay_source, render_methods
from stimuli import manifest as mf
from stimuli import png, structure
from stimuli.config import ROLES
from stimuli.models import Preprocess
from stimuli.plan import PHOTO, Prediction, explanation_id, photo_id
from stimuli.records import CategoryMap, ImageRecord

if TYPE_CHECKING:  # annotations only: stimuli.build imports this module
    from stimuli.build import Stage


@dataclass
class Inputs:
    """One batch's pixels, every image decoded once.

    ``pixels``: each model's input crop, ``(N, 3, s, s)`` uint8. ``photos_2x``: the same
    crop taken from the source photo at twice the display size (only where the batch is
    rendered and a method draws over the photo), and ``how_2x`` per image: ``"source"``
    when the source has at least that many pixels across the crop, else
    ``"source_upsampled"``.
    """

    pixels: dict[str, torch.Tensor]
    photos_2x: dict[str, torch.Tensor] = field(default_factory=dict)
    how_2x: dict[str, list[str]] = field(default_factory=dict)
    photo_edges: dict[str, torch.Tensor] = field(default_factory=dict)  # for the structure scores


def load_inputs(stage: Stage, batch: list[str], need: set[str] | None = None) -> Inputs:
    """The batch's :class:`Inputs`; the 2x photos and the photos' edge maps (for the
    structure scores, at the display size) only when ``need`` (the batch is rendered)."""
    images = [stage.records[i].load() for i in batch]
    got = Inputs({role: torch.stack([stage.models[role].preprocess.pixels(im) for im in images]) for role in ROLES})
    if need is None:
        return got
    for role in ROLES:
        got.photo_edges[role] = structure.photo_edges(
            to_display(got.pixels[role].float().div_(255), stage.cfg.display_size)
        )
    if any(is_overlaid(m) for m in stage.cfg.methods):
        size = 2 * stage.cfg.display_size
        for role in ROLES:
            pre = stage.models[role].preprocess
            got.photos_2x[role] = torch.stack([_crop_at(pre, im, size) for im in images])
            got.how_2x[role] = [_how(min(im.size) * pre.crop / pre.resize, size) for im in images]
    return got


def _crop_at(pre: Preprocess, image: Image.Image, size: int) -> torch.Tensor:
    """``(3, size, size)`` uint8: the crop the model sees (``pre``), resampled from the
    source photo to ``size`` instead of the model's input size."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import center_crop, resize

    scaled = resize(
        image.convert("RGB"),
        round(pre.resize * size / pre.crop),
        interpolation=InterpolationMode(pre.interpolation),
        antialias=True,
    )
    return pil_to_tensor(center_crop(scaled, size))


def _how(source_px: float, size: int) -> str:
    """How a 2x photo of ``size`` pixels was made from a source crop of ``source_px``."""
    return "source" if source_px >= size else "source_upsampled"


def forward_only(stage: Stage, batch: list[str], inputs: Inputs, preds: dict, stats: dict) -> None:
    """Predictions for another shard's batch: the engine call's forward pass, without gradients."""
    recs = [stage.records[i] for i in batch]
    t = time.perf_counter()
    for role in ROLES:
        model = stage.models[role]
        with torch.inference_mode():
            logits = model.module(model.preprocess.normalize(inputs.pixels[role]).to(stage.device)).float().cpu()
        preds[role].update(predictions_of(logits, recs, stage.maps[role]))
    stats["forward_seconds"] += time.perf_counter() - t


def encode_and_write(out: Path, row: dict, pixels: torch.Tensor, pixels_2x: torch.Tensor) -> dict:
    """PNG-encode ``(H, W, 3)`` uint8 pixels and their 2x rendering, hash them, write them
    atomically; fill the row's sha256s."""
    for key, px in (("file", pixels), ("file_2x", pixels_2x)):
        data = png.encode_rgb(px.numpy())
        row["sha256" if key == "file" else "sha256_2x"] = mf.sha256_bytes(data)
        path = out / row[key]
        path.parent.mkdir(parents=True, exist_ok=True)  # folder sources keep "/" in image ids
        mf.write_atomic(path, data, sync=False)  # flushed by the build's syncer (see render_all)
    return row


def to_display(img: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 3, h, w)`` in [0, 1] to ``(B, size, size, 3)`` uint8 on the CPU, one rule for all:
    quantized to 8 bits at the rendered size, then resampled to ``size`` (bilinear,
    antialiased) in 8 bits on the CPU. Resampling the 8-bit pixels rather than the floats
    took a third of the time (16 images of 260 px: 17 ms against 44 ms) and changes a
    pixel by at most one level."""
    q = img.mul(255).round_().clamp_(0, 255).permute(0, 2, 3, 1)
    px = torch.empty(q.shape, dtype=torch.uint8, device=img.device).copy_(q).cpu()  # one pass: cast and layout
    if px.shape[1:3] != (size, size):
        px = (
            F.interpolate(
                px.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
            .permute(0, 2, 3, 1)
            .contiguous()
        )
    return px


def _base_row(stage: Stage, stimulus_id: str, image_id: str) -> dict:
    rec = stage.records[image_id]
    stem = stimulus_id.replace(":", "-")  # "captum:<Class>" methods: no colon in file names
    return {
        "stimulus_id": stimulus_id,
        "file": f"{mf.STIMULI_DIR}/{stem}.png",
        "sha256": "",
        "file_2x": f"{mf.STIMULI_DIR}/{stem}@2x.png",
        "sha256_2x": "",
        "how_2x": "upsampled",
        "image_id": image_id,
        "image_source": rec.source or (str(rec.path) if rec.path else ""),
        "display_size": stage.cfg.display_size,
        "colormap": stage.cfg.render.colormap,
        "alpha": stage.cfg.render.alpha,
        "config_sha256": stage.cfg.sha256,
        "code_version": code_version(),
        "structure": None,
    }


def batch_jobs(stage: Stage, out: Path, batch: list[str], inputs: Inputs, need: set[str], preds: dict, stats: dict):
    """Run the engine for one batch (both models); yield jobs that render and write the
    files, one per model and method.

    The explained class of each category is the model's best class of that category in the
    call's own logits: the target callable reads them (detached) at its first call, before
    the backward passes, and keeps those classes for its later calls (Score-CAM and captum
    methods score perturbed copies of the batch with it).
    """
    cfg = stage.cfg
    recs = [stage.records[i] for i in batch]
    cats = [stage.candidates[i] for i in batch]
    for role in ROLES:
        model = stage.models[role]
        seen: dict[str, Prediction] = {}
        fixed: dict[str, torch.Tensor] = {}

        def scores(logits: torch.Tensor, role: str = role, seen: dict = seen, fixed: dict = fixed) -> torch.Tensor:
            if "index" not in fixed:  # the first call: the batch's own logits
                seen.update(predictions_of(logits.detach().float().cpu(), recs, stage.maps[role]))
                index = [[seen[i].class_for(c) for c in cs] for i, cs in zip(batch, cats, strict=True)]
                fixed["index"] = torch.tensor(index, device=logits.device)
            return logits.gather(1, fixed["index"])

        x = model.preprocess.normalize(inputs.pixels[role]).to(stage.device)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlainGradientWarning)  # one line at the end of the build instead
            ex = explain(model.module, x, scores, layer=model.layer, methods=cfg.methods)
        if stage.device.type == "cuda":
            torch.cuda.synchronize(stage.device)
        stats["engine_seconds"] += time.perf_counter() - t
        if ex.guided_rectifiers is not None:
            got = stats["guided_rectifiers"]
            got[role] = min(got.get(role, ex.guided_rectifiers), ex.guided_rectifiers)
        preds[role].update(seen)
        targets = [[seen[i].class_for(c) for c in cs] for i, cs in zip(batch, cats, strict=True)]
        for method in cfg.methods:
            yield lambda role=role, method=method, ex=ex, seen=seen, targets=targets: _write_explanations(
                stage, out, role, method, batch, cats, ex, inputs, targets, seen, need
            )


def _write_explanations(
    stage: Stage, out: Path, role: str, method: str, batch, cats, ex, inputs: Inputs, targets, preds, need
) -> list[dict]:
    """Render one model's explanations of a batch by one method at the display size and at
    twice it, score their structure beside the photo, and write the PNGs of the stimuli in
    ``need``.

    The 2x of a gradient image is the model-resolution rendering resampled to 2x: the model
    input has no more detail to give. The 2x of a Grad-CAM overlay draws the map, upsampled
    the same way, over the photo taken from the source at 2x (:class:`Inputs`)."""
    cfg = stage.cfg
    model = stage.models[role]
    pixels = inputs.pixels[role]
    wanted = [
        (n, k)
        for n, image_id in enumerate(batch)
        for k, cat in enumerate(cats[n])
        if explanation_id(image_id, role, method, cat) in need
    ]
    if not wanted:
        return []
    size = cfg.display_size
    dev = ex.logits.device
    photos = pixels.to(dev).float().div_(255)
    overlaid = is_overlaid(method)
    imgs = render_methods(ex, photos if overlaid else None, cfg.render.colormap, cfg.render.alpha, methods=[method])[
        method
    ]  # (N, K, 3, h, w)
    ns = torch.tensor([n for n, _ in wanted], device=dev)
    ks = torch.tensor([k for _, k in wanted], device=dev)
    shown = to_display(imgs[ns, ks], size)  # (B, size, size, 3)
    if overlaid:
        maps, mode = overlay_source(ex, method)
        maps = maps[ns, ks]  # (B, h, w)
        maps = F.interpolate(maps[:, None], size=(2 * size, 2 * size), mode="bilinear", align_corners=False)[:, 0]
        photos_2x = inputs.photos_2x[role].to(dev)[ns].float().div_(255)
        shown_2x = to_display(overlay(photos_2x, maps, cfg.render.colormap, cfg.render.alpha, normalize=mode), 2 * size)
        how = [inputs.how_2x[role][n] for n, _ in wanted]
    else:
        shown_2x = to_display(imgs[ns, ks], 2 * size)
        how = ["upsampled"] * len(wanted)
    scores = structure.score(shown, edges_of_photos=inputs.photo_edges[role][ns.cpu()])  # on the CPU, as shown is
    rows = []
    for j, (n, k) in enumerate(wanted):
        image_id, cat = batch[n], cats[n][k]
        top5 = [{"index": c, "name": model.class_names[c], "probability": p} for c, p in preds[image_id].top5]
        target = targets[n][k]
        row = _base_row(stage, explanation_id(image_id, role, method, cat), image_id)
        row.update(
            model_role=role,
            model=model.name,
            weights_sha256=model.weights_sha256,
            layer=ex.layer,
            layer_grid=mf.grid_text(ex.layer_grid),
            layer_layout=ex.layer_layout or "",
            method=method,
            category=cat,
            target_class=target,
            target_name=model.class_names[target],
            top5=top5,
            how_2x=how[j],
            structure=scores[j],
        )
        rows.append(encode_and_write(out, row, shown[j], shown_2x[j]))
    return rows


def write_photos(stage: Stage, out: Path, ids: list[str]) -> list[dict]:
    size = stage.cfg.display_size
    images = [stage.records[i].load() for i in ids]
    shown = to_display(torch.stack([photo_pixels(im, size) for im in images]), size)
    shown_2x = to_display(torch.stack([photo_pixels(im, 2 * size) for im in images]), 2 * size)
    rows = []
    for j, (i, im) in enumerate(zip(ids, images, strict=True)):
        row = _base_row(stage, photo_id(i), i)
        row.update(
            model_role="none",
            model="none",
            weights_sha256="",
            layer="",
            layer_grid="",
            layer_layout="",
            method=PHOTO,
            category="",
            target_class=-1,
            target_name="",
            top5=[],
            how_2x=_how(min(im.size) * PHOTO_CROP, 2 * size),
        )
        rows.append(encode_and_write(out, row, shown[j], shown_2x[j]))
    return rows


PHOTO_CROP = 0.875  # the photo stimuli show the central 87.5% of the shorter side, as the models see it


def photo_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """The photo as shown in trials: the same central 87.5% crop the models see."""
    from torchvision.transforms.functional import center_crop, resize

    im = center_crop(resize(image.convert("RGB"), round(size / PHOTO_CROP), antialias=True), size)
    return pil_to_tensor(im).float().div_(255)


def predictions_of(logits: torch.Tensor, chunk: list[ImageRecord], cmap: CategoryMap) -> dict[str, Prediction]:
    probs = logits.softmax(1)
    p5, i5 = probs.topk(min(5, probs.shape[1]), dim=1)
    out = {}
    for r, lg, pr, ir in zip(chunk, logits, p5, i5, strict=True):
        best = {}
        for c in r.categories:
            classes = cmap.classes(c)
            if classes is not None:
                best[c] = classes[int(lg[list(classes)].argmax())]
        top5 = tuple((int(i), round(float(p), 6)) for p, i in zip(pr, ir, strict=True))
        out[r.id] = Prediction(top5=top5, best_class=best)
    return out
