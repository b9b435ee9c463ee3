"""``camstudy stimuli build``: predictions, plan, and rendering of every stimulus.

The run, for shard ``I`` of ``N``:

1. load both models and the image source; refuse an output folder that holds stimuli of a
   different config;
2. predict every image with both models (one forward pass per batch, no gradients): the
   trust task keeps only images both models get right, and each category's target class
   is the model's best-scoring class among that category's classes;
3. plan both tasks (:mod:`stimuli.plan`), the same in every shard;
4. cut the images to explain into batches of ``batch_size`` (images with the same number
   of categories to explain together, in id order), give batch ``j`` to shard ``j % N``,
   and per batch and model make one engine call for all methods and classes; PNGs are
   encoded, hashed and written by worker threads while the next batch computes;
5. write the manifest (CSV and JSON), the plan and the plan report.

Resumable: a batch whose stimuli all exist with their recorded sha256 is skipped. Because
batches do not depend on ``N``, a shard computes exactly what a single run computes for
those images, so merged shards give the same manifest rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from camstudy.errors import UserError
from camstudy.version import code_version
from gradcam import explain
from gradcam.render import render_methods
from stimuli import manifest as mf
from stimuli.config import ROLES, StimulusConfig
from stimuli.images import resolve_device
from stimuli.models import LoadedModel, load_model
from stimuli.plan import PHOTO, Plan, Prediction, explanation_id, photo_id, plan_trials
from stimuli.records import CategoryMap, ImageRecord
from stimuli.sources import load_source

# zlib level 1: a third of level 6's encoding time for 15% larger files (measured here:
# 5.5 vs 15 ms for a 224 px stimulus); any fixed level gives deterministic bytes, so the
# sha256 of a re-render matches.
PNG_LEVEL = 1


@dataclass
class Stage:
    """Everything a build needs, loaded once: models, category maps, images, plan."""

    cfg: StimulusConfig
    device: torch.device
    models: dict[str, LoadedModel]
    maps: dict[str, CategoryMap]
    records: dict[str, ImageRecord]
    predictions: dict[str, dict[str, Prediction]]
    plan: Plan
    pixels: PixelCache


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` with ``0 <= I < N`` (job-array indices start at 0); None means ``0/1``."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {text}: need 0 <= I < N")
    return i, n


def prepare(cfg: StimulusConfig) -> Stage:
    """Load models and images, predict, and plan (every shard does this alike)."""
    device = resolve_device(cfg.device)
    models = {}
    for role in ROLES:
        mc = cfg.models[role]
        m = load_model(mc.name, mc.weights, device)
        if mc.layer:
            m.layer = mc.layer
        models[role] = m
    maps = {role: CategoryMap(models[role].class_names, cfg.categories_for(role)) for role in ROLES}
    records = load_source(cfg.source, cfg.path.parent)
    if not records:
        raise UserError("source: no images")
    cache = PixelCache()
    predictions = predict(models, maps, records, cfg.batch_size, device, cache)
    plan = plan_trials(cfg, records, predictions, maps)
    return Stage(cfg, device, models, maps, {r.id: r for r in records}, predictions, plan, cache)


class PixelCache:
    """uint8 model-input pixels per (role, image id), kept from the prediction pass.

    The render pass then skips decoding and resizing again. Bounded by ``budget`` bytes
    (about 200 kB per image and model at 260 px), so a large source falls back to reloading.
    """

    def __init__(self, budget: int = 1 << 30) -> None:
        self.budget = budget
        self.used = 0
        self.store: dict[tuple[str, str], torch.Tensor] = {}

    def put(self, key: tuple[str, str], pixels: torch.Tensor) -> None:
        size = pixels.numel() * pixels.element_size()
        if self.used + size <= self.budget:
            self.store[key] = pixels
            self.used += size

    def get(self, key: tuple[str, str], load) -> torch.Tensor:
        hit = self.store.get(key)
        return hit if hit is not None else load()


@torch.no_grad()
def predict(
    models: dict[str, LoadedModel],
    maps: dict[str, CategoryMap],
    records: list[ImageRecord],
    batch: int,
    device,
    cache: PixelCache | None = None,
) -> dict[str, dict[str, Prediction]]:
    """Per model and image: top-5 and, per labelled category, that category's best class.

    Each image is decoded once for all models; its input pixels go to ``cache``.
    """
    out: dict[str, dict[str, Prediction]] = {role: {} for role in models}
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        images = [r.load() for r in chunk]
        for role, model in models.items():
            pixels = [model.preprocess.pixels(im) for im in images]
            if cache is not None:
                for r, px in zip(chunk, pixels, strict=True):
                    cache.put((role, r.id), px)
            x = model.preprocess.normalize(torch.stack(pixels)).to(device)
            logits = model.module(x).float().cpu()
            out[role].update(_predictions(logits, chunk, maps[role]))
    return out


def _predictions(logits: torch.Tensor, chunk: list[ImageRecord], cmap: CategoryMap) -> dict[str, Prediction]:
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


def batches(plan: Plan, size: int) -> list[list[str]]:
    """Image ids to explain, grouped by how many categories each needs, in id order."""
    by_k: dict[int, list[str]] = {}
    for image_id, cats in plan.explanations.items():
        by_k.setdefault(len(cats), []).append(image_id)
    out = []
    for k in sorted(by_k):
        ids = sorted(by_k[k])
        out += [ids[i : i + size] for i in range(0, len(ids), size)]
    photos = sorted(plan.photos)
    out += [[f"{PHOTO}:{i}" for i in photos[j : j + size]] for j in range(0, len(photos), size)]
    return out


def check_out_dir(out: Path, cfg: StimulusConfig, shard: tuple[int, int]) -> None:
    """Refuse a folder that holds stimuli of another config or another sharding."""
    path = out / mf.BUILD
    if not path.exists():
        return
    try:
        prior = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise UserError(f"{path}: unreadable; delete the folder or use another --out") from None
    if prior.get("config_sha256") != cfg.sha256:
        raise UserError(
            f"{out} holds stimuli from a different config (sha256 {str(prior.get('config_sha256'))[:12]}…, "
            f"this one {cfg.sha256[:12]}…); use another --out or delete it"
        )
    if tuple(prior.get("shard", (0, 1))) != shard and not prior.get("merged"):
        raise UserError(f"{out} holds shard {prior.get('shard')} of this config, not {list(shard)}; use another --out")


def build(cfg: StimulusConfig, out: Path, shard: tuple[int, int] = (0, 1), progress: bool = True) -> dict:
    """Render this shard's stimuli into ``out``; return the run's summary (``build.json``)."""
    check_out_dir(out, cfg, shard)
    started = time.perf_counter()
    stage = prepare(cfg)
    prepared = time.perf_counter() - started
    (out / mf.STIMULI_DIR).mkdir(parents=True, exist_ok=True)
    mf.write_json(out / mf.PLAN, {"config_sha256": cfg.sha256, "seed": cfg.seed, **stage.plan.to_json()})
    _write_plan_report(out, stage.plan)
    summary = {
        "config_sha256": cfg.sha256,
        "config": str(cfg.path),
        "shard": list(shard),
        "code_version": code_version(),
        "device": str(stage.device),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    mf.write_json(out / mf.BUILD, {**summary, "complete": False})
    mine = [b for j, b in enumerate(batches(stage.plan, cfg.batch_size)) if j % shard[1] == shard[0]]
    valid = {r["stimulus_id"]: r for r in mf.read_partial(out) + _final_rows(out) if mf.file_matches(out, r)}
    rows, stats = _render_batches(stage, out, mine, valid, progress)
    mf.write_manifest(out, rows, {"config_sha256": cfg.sha256, "shard": list(shard)})
    (out / mf.PARTIAL).unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    summary.update(
        complete=True,
        finished_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        stimuli=len(rows),
        rendered=stats["rendered"],
        reused=len(rows) - stats["rendered"],
        seconds=round(elapsed, 3),
        prepare_seconds=round(prepared, 3),
        render_seconds=round(stats["render_seconds"], 3),
        engine_seconds=round(stats["engine_seconds"], 3),
        items=len(stage.plan.items),
    )
    mf.write_json(out / mf.BUILD, summary)
    return summary


def _final_rows(out: Path) -> list[dict]:
    try:
        return mf.read_manifest(out)["rows"]
    except (OSError, KeyError, json.JSONDecodeError):
        return []


def _write_plan_report(out: Path, plan: Plan) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["image_id", "categories", "class_discrimination", "trust"], lineterminator="\n")
    w.writeheader()
    w.writerows(plan.decisions)
    mf.write_atomic(out / mf.PLAN_REPORT, buf.getvalue().encode())


# Rendering, PNG encoding and writing run on this many threads (zlib and hashing release
# the GIL); finished engine calls waiting for them are bounded to keep memory flat.
WORKERS = max(2, min(8, os.cpu_count() or 2))
MAX_IN_FLIGHT = 2 * WORKERS


def _render_batches(stage: Stage, out: Path, mine: list[list[str]], valid: dict, progress: bool):
    """Engine calls on the main thread; rendering, PNG encoding and writing on two workers.

    The workers turn one (batch, model) explanation into files while the main thread runs
    the next engine call, so decoding and writing overlap with the model work.
    """
    from tqdm import tqdm

    rows: list[dict] = []
    stats = {"rendered": 0, "engine_seconds": 0.0, "render_seconds": 0.0}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool, open(out / mf.PARTIAL, "a") as partial:
        pending: list[Future] = []
        for batch in tqdm(mine, desc="stimuli", unit="batch", disable=not progress):
            wanted = _batch_ids(stage, batch)
            if all(i in valid for i in wanted):
                rows += [valid[i] for i in wanted]
                continue
            for job in _batch_jobs(stage, out, batch, stats):
                pending.append(pool.submit(job))
                pending = _drain(pending, rows, partial, keep=MAX_IN_FLIGHT)
        _drain(pending, rows, partial, keep=0)
    stats["render_seconds"] = time.perf_counter() - t0
    stats["rendered"] = sum(1 for r in rows if r["stimulus_id"] not in valid)
    return rows, stats


def _drain(pending: list[Future], rows: list[dict], partial, keep: int) -> list[Future]:
    """Collect finished jobs (oldest first, waiting while more than ``keep`` are left);
    append their rows to the partial manifest, so an interrupted run can resume."""
    left = []
    for i, fut in enumerate(pending):
        if fut.done() or len(pending) - i > keep:
            for row in fut.result():  # re-raises a rendering or write error here
                rows.append(row)
                partial.write(json.dumps(row) + "\n")
        else:
            left.append(fut)
    partial.flush()
    return left


def _batch_ids(stage: Stage, batch: list[str]) -> list[str]:
    if batch[0].startswith(f"{PHOTO}:"):
        return [photo_id(b.split(":", 1)[1]) for b in batch]
    return [
        explanation_id(i, role, m, c)
        for i in batch
        for role in ROLES
        for m in stage.cfg.methods
        for c in stage.plan.explanations[i]
    ]


def _encode_and_write(out: Path, pixels: torch.Tensor, row: dict) -> dict:
    """PNG-encode ``(H, W, 3)`` uint8 pixels, hash them, write atomically; fill the row."""
    buf = io.BytesIO()
    Image.fromarray(pixels.numpy(), mode="RGB").save(buf, format="PNG", compress_level=PNG_LEVEL)
    data = buf.getvalue()
    row["sha256"] = mf.sha256_bytes(data)
    path = out / row["file"]
    path.parent.mkdir(parents=True, exist_ok=True)  # folder sources keep "/" in image ids
    mf.write_atomic(path, data)
    return row


def _to_display(img: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 3, h, w)`` in [0, 1] to ``(B, size, size, 3)`` uint8 on the CPU, one resampling rule for all."""
    if img.shape[-2:] != (size, size):
        img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()


def _base_row(stage: Stage, stimulus_id: str, image_id: str) -> dict:
    rec = stage.records[image_id]
    return {
        "stimulus_id": stimulus_id,
        "file": f"{mf.STIMULI_DIR}/{stimulus_id}.png",
        "sha256": "",
        "image_id": image_id,
        "image_source": rec.source or (str(rec.path) if rec.path else ""),
        "display_size": stage.cfg.display_size,
        "colormap": stage.cfg.render.colormap,
        "alpha": stage.cfg.render.alpha,
        "config_sha256": stage.cfg.sha256,
        "code_version": code_version(),
    }


def _batch_jobs(stage: Stage, out: Path, batch: list[str], stats: dict):
    """Run the engine for one batch (both models); yield jobs that render and write the files."""
    cfg = stage.cfg
    if batch[0].startswith(f"{PHOTO}:"):
        yield lambda: _write_photos(stage, out, [b.split(":", 1)[1] for b in batch])
        return
    loaded: dict[str, Image.Image] = {}

    def load(role: str, image_id: str) -> torch.Tensor:
        if image_id not in loaded:
            loaded[image_id] = stage.records[image_id].load()
        return stage.models[role].preprocess.pixels(loaded[image_id])

    cats = [stage.plan.explanations[i] for i in batch]
    for role in ROLES:
        model = stage.models[role]
        preds = stage.predictions[role]
        pixels = torch.stack([stage.pixels.get((role, i), lambda i=i, role=role: load(role, i)) for i in batch])
        x = model.preprocess.normalize(pixels).to(stage.device)
        targets = torch.tensor([[preds[i].best_class[c] for c in cs] for i, cs in zip(batch, cats, strict=True)], device=stage.device)
        t = time.perf_counter()
        ex = explain(model.module, x, targets, layer=model.layer, methods=cfg.methods)
        if stage.device.type == "cuda":
            torch.cuda.synchronize(stage.device)
        stats["engine_seconds"] += time.perf_counter() - t
        yield lambda role=role, ex=ex, pixels=pixels, targets=targets: _write_explanations(
            stage, out, role, batch, cats, ex, pixels, targets
        )


def _write_explanations(stage: Stage, out: Path, role: str, batch, cats, ex, pixels, targets) -> list[dict]:
    """Render one model's explanations of a batch at the display size and write the PNGs."""
    cfg = stage.cfg
    model = stage.models[role]
    preds = stage.predictions[role]
    photos = pixels.to(ex.logits.device).float().div_(255)
    rendered = render_methods(ex, photos, cfg.render.colormap, cfg.render.alpha)
    rows = []
    for method in cfg.methods:
        imgs = rendered[method]  # (N, K, 3, h, w)
        shown = _to_display(imgs.flatten(0, 1), cfg.display_size).view(*imgs.shape[:2], cfg.display_size, cfg.display_size, 3)
        for n, image_id in enumerate(batch):
            top5 = [{"index": c, "name": model.class_names[c], "probability": p} for c, p in preds[image_id].top5]
            for k, cat in enumerate(cats[n]):
                target = int(targets[n, k])
                row = _base_row(stage, explanation_id(image_id, role, method, cat), image_id)
                row.update(model_role=role, model=model.name, weights_sha256=model.weights_sha256,
                           layer=ex.layer, method=method, category=cat, target_class=target,
                           target_name=model.class_names[target], top5=top5)
                rows.append(_encode_and_write(out, shown[n, k], row))
    return rows


def _write_photos(stage: Stage, out: Path, ids: list[str]) -> list[dict]:
    size = stage.cfg.display_size
    photos = torch.stack([_photo_pixels(stage.records[i].load(), size) for i in ids])
    rows = []
    for i, px in zip(ids, _to_display(photos, size), strict=True):
        row = _base_row(stage, photo_id(i), i)
        row.update(model_role="none", model="none", weights_sha256="", layer="", method=PHOTO,
                   category="", target_class=-1, target_name="", top5=[])
        rows.append(_encode_and_write(out, px, row))
    return rows


def _photo_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """The photo as shown in trials: the same central 87.5% crop the models see."""
    from torchvision.transforms.functional import center_crop, resize

    im = center_crop(resize(image.convert("RGB"), round(size / 0.875), antialias=True), size)
    return pil_to_tensor(im).float().div_(255)


def merge(dirs: list[Path], out: Path) -> dict:
    """Merge the shard folders of one config into ``out`` (which may be one of them).

    Checks that every shard ``0..N-1`` is there once, complete, of the same config and
    plan; the merged manifest holds the same rows as a single run would.
    """
    import shutil

    builds = []
    for d in dirs:
        try:
            b = json.loads((d / mf.BUILD).read_text())
            rows = mf.read_manifest(d)["rows"]
            plan = (d / mf.PLAN).read_text()
        except (OSError, KeyError, json.JSONDecodeError):
            raise UserError(f"{d}: not a finished stimuli build (no build.json, manifest.json or plan.json)") from None
        if not b.get("complete"):
            raise UserError(f"{d}: the build did not finish; rerun it (it resumes) before merging")
        builds.append((d, b, rows, plan))
    shas = {b["config_sha256"] for _, b, _, _ in builds}
    if len(shas) != 1:
        raise UserError("the folders hold stimuli of different configs; merge shards of one config only")
    n = {b["shard"][1] for _, b, _, _ in builds}
    shards = sorted(b["shard"][0] for _, b, _, _ in builds)
    if len(n) != 1 or shards != list(range(n.pop())):
        raise UserError(f"need each shard 0..N-1 exactly once, got shards {shards}")
    if len({p for *_, p in builds}) != 1:
        raise UserError("the shards planned different trials (different images or predictions); rebuild on one kind of device")
    rows, seen = [], set()
    out.mkdir(parents=True, exist_ok=True)
    for d, _, shard_rows, _ in builds:
        for r in shard_rows:
            if r["stimulus_id"] in seen:
                raise UserError(f"stimulus {r['stimulus_id']} appears in two shards")
            seen.add(r["stimulus_id"])
            if d.resolve() != out.resolve() and not mf.file_matches(out, r):
                (out / r["file"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(d / r["file"], out / r["file"])
            rows.append(r)
    first = builds[0][0]
    if first.resolve() != out.resolve():
        for name in (mf.PLAN, mf.PLAN_REPORT):
            shutil.copy2(first / name, out / name)
    sha = shas.pop()
    mf.write_manifest(out, rows, {"config_sha256": sha, "shard": [0, 1]})
    summary = {"config_sha256": sha, "shard": [0, 1], "merged": True, "merged_from": [str(d) for d in dirs],
               "complete": True, "stimuli": len(rows), "code_version": code_version()}
    mf.write_json(out / mf.BUILD, summary)
    return summary
