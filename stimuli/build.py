"""``camstudy stimuli build``: explanations, predictions, plan, and every stimulus.

The run, for shard ``I`` of ``N``:

1. load both models and the image source; refuse an output folder that holds stimuli of a
   different config;
2. list the candidates (:func:`stimuli.plan.candidates`): every image and category the
   plan can ask to explain, known before any prediction (the class-discrimination images
   with both categories, the trust-eligible images with all of theirs);
3. cut the candidates into batches of ``batch_size`` (images with the same number of
   categories together, in id order), give batch ``j`` to shard ``j % N``, and per batch
   and model make one engine call for all methods and categories. That call's forward pass
   is also the prediction: a target callable takes each image's top-5 and, per category,
   its best-scoring class (the class explained) from the very logits it differentiates,
   so no separate prediction pass runs. Worker threads render (at the display size and at
   twice it), score the structure of (:mod:`stimuli.structure`), PNG-encode, hash and write
   the stimuli, one job per model and method, and decode the next batch's images. On a
   GPU they do so while the next call computes. On the CPU they run between the engine
   calls, on every core: the engine's threads already fill the cores, and a worker that
   runs beside them stalls the engine's whole thread team at each of its barriers
   (measured on 2 cores: the engine slowed by about twice the workers' own CPU time).
   Every shard needs every prediction to plan: batches of other shards get a plain
   forward pass on the same batch, which gives the same logits;
4. plan both tasks (:mod:`stimuli.plan`) from those predictions, the same in every shard;
   render the photos the plan shows; drop candidates the plan does not use (an image whose
   models disagree, for trust): their files are deleted, their rows never reach the
   manifest;
5. write the manifest (CSV and JSON, with the structure summary per model and method),
   the plan, the plan report and ``predictions.json``; print one warning line per
   degenerate (model role, method) pair, and one per model whose guided or deconv methods
   are the plain input gradient (no rectifier between input and score, e.g. a GELU or
   SiLU network: ``Explanation.guided_rectifiers == 0``), recorded as ``guided_rectifiers``
   and ``plain_gradient`` in ``build.json`` and the manifest.

When ``[tasks.trust] max_images`` is below the number of trust-eligible images, explaining
every candidate would spend engine calls on images the cap drops: then a prediction pass
over the trust-eligible images plans first, and only planned images are explained.

Resumable: a batch is skipped when its stimuli all exist, 1x and 2x, with their recorded
sha256 and every manifest field of this version (the predictions come back from their
rows, or from ``predictions.json`` of a finished run).
Because batches do not depend on ``N``, a shard computes exactly what a single run computes
for those images, so merged shards give the same manifest rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from camstudy.errors import UserError
from camstudy.version import code_version
from gradcam import GUIDED_METHODS, PlainGradientWarning, explain
from gradcam.render import is_overlaid, overlay, overlay_source, render_methods
from stimuli import manifest as mf
from stimuli import png, structure
from stimuli.config import ROLES, StimulusConfig
from stimuli.images import resolve_device
from stimuli.models import LoadedModel, Preprocess, load_model
from stimuli.plan import PHOTO, Plan, Prediction, candidates, explanation_id, photo_id, plan_trials
from stimuli.records import CategoryMap, ImageRecord
from stimuli.sources import load_source

PREDICTIONS = "predictions.json"


@dataclass
class Stage:
    """Everything a build needs, loaded once: models, category maps, images, candidates.

    ``plan`` and ``predictions`` are filled before rendering only where a prediction pass
    ran (see the module doc); otherwise the predictions come from the engine calls.
    """

    cfg: StimulusConfig
    device: torch.device
    models: dict[str, LoadedModel]
    maps: dict[str, CategoryMap]
    records: dict[str, ImageRecord]
    candidates: dict[str, list[str]]  # image id -> categories explained
    plan: Plan | None = None
    predictions: dict[str, dict[str, Prediction]] = field(default_factory=dict)


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
    """Load models and images and list the candidates (every shard does this alike)."""
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
    by_id = {r.id: r for r in records}
    stage = Stage(cfg, device, models, maps, by_id, candidates(cfg, records, maps))
    if cfg.trust is not None and cfg.trust.max_images:
        eligible = [by_id[i] for i in stage.candidates]  # with trust planned, every candidate is eligible
        if len(eligible) > cfg.trust.max_images:  # the cap drops images: predict, plan, then explain
            stage.predictions = predict(models, maps, eligible, cfg.batch_size, device)
            stage.plan = plan_trials(cfg, records, stage.predictions, maps)
            stage.candidates = stage.plan.explanations
    return stage


@torch.inference_mode()
def predict(
    models: dict[str, LoadedModel],
    maps: dict[str, CategoryMap],
    records: list[ImageRecord],
    batch: int,
    device,
) -> dict[str, dict[str, Prediction]]:
    """Per model and image: top-5 and, per labelled category, that category's best class.

    Each image is decoded once for all models.
    """
    out: dict[str, dict[str, Prediction]] = {role: {} for role in models}
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        images = [r.load() for r in chunk]
        for role, model in models.items():
            x = torch.stack([model.preprocess(im) for im in images]).to(device)
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


def batches(explanations: dict[str, list[str]], size: int) -> list[list[str]]:
    """Image ids to explain, grouped by how many categories each needs, in id order."""
    by_k: dict[int, list[str]] = {}
    for image_id, cats in explanations.items():
        by_k.setdefault(len(cats), []).append(image_id)
    out = []
    for k in sorted(by_k):
        ids = sorted(by_k[k])
        out += [ids[i : i + size] for i in range(0, len(ids), size)]
    return out


def photo_batches(plan: Plan, size: int) -> list[list[str]]:
    photos = sorted(plan.photos)
    return [photos[j : j + size] for j in range(0, len(photos), size)]


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


def build(
    cfg: StimulusConfig,
    out: Path,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    overlap: bool | None = None,
) -> dict:
    """Render this shard's stimuli into ``out``; return the run's summary (``build.json``).

    ``overlap``: render and write beside the engine calls (True) or between them (False);
    None chooses by device, beside them on a GPU and between them on the CPU (module doc).
    The files are the same either way.
    """
    check_out_dir(out, cfg, shard)
    started = time.perf_counter()
    stage = prepare(cfg)
    prepared = time.perf_counter() - started
    (out / mf.STIMULI_DIR).mkdir(parents=True, exist_ok=True)
    summary = {
        "config_sha256": cfg.sha256,
        "config": str(cfg.path),
        "shard": list(shard),
        "code_version": code_version(),
        "device": str(stage.device),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    mf.write_json(out / mf.BUILD, {**summary, "complete": False})
    valid = {r["stimulus_id"]: r for r in mf.read_partial(out) + _final_rows(out) if mf.file_matches(out, r)}
    known = _known_predictions(stage, out, valid)
    if overlap is None:
        overlap = stage.device.type != "cpu"
    prior_guided = _prior_guided(out, cfg)
    rows, stats, plan, preds = _render(stage, out, shard, valid, known, progress, overlap)
    guided = _guided_rectifiers(stage, stats["guided_rectifiers"], prior_guided)
    mf.write_json(out / mf.PLAN, {"config_sha256": cfg.sha256, "seed": cfg.seed, **plan.to_json()})
    _write_plan_report(out, plan)
    mf.write_json(out / PREDICTIONS, _predictions_json(stage, preds))
    pairs = structure.pair_summary(rows)
    plain = _plain_gradient(stage, guided)
    mf.write_manifest(out, rows, {"config_sha256": cfg.sha256, "shard": list(shard), **_structure_meta(pairs),
                                  "guided_rectifiers": guided, "plain_gradient": plain})
    (out / mf.PARTIAL).unlink(missing_ok=True)
    _warn(pairs, plain)
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
        forward_seconds=round(stats["forward_seconds"], 3),
        explained_unused=stats["unused"],
        items=len(plan.items),
        degenerate_pairs=_degenerate(pairs),
        guided_rectifiers=guided,
        plain_gradient=plain,
    )
    mf.write_json(out / mf.BUILD, summary)
    return summary


def _structure_meta(pairs: list[dict]) -> dict:
    """The manifest's ``structure`` entry: the thresholds and the summary of every (model
    role, method) pair; ``camstudy study create`` reads the degenerate pairs from it."""
    return {"structure": {"thresholds": structure.THRESHOLDS, "pairs": pairs}}


def _degenerate(pairs: list[dict]) -> list[dict]:
    return [{k: p[k] for k in ("model_role", "model", "method", "stimuli", "degenerate_stimuli", "why")}
            for p in pairs if p["degenerate"]]


def _warn(pairs: list[dict], plain: list[dict]) -> None:
    """One line on stderr per degenerate (model role, method) pair and per model whose
    guided methods are the plain gradient, whatever ``progress``."""
    for p in pairs:
        if p["degenerate"]:
            print(structure.warning_line(p), file=sys.stderr, flush=True)
    for p in plain:
        print(plain_gradient_line(p), file=sys.stderr, flush=True)


def plain_gradient_line(entry: dict) -> str:
    """The build's one line about a model whose guided or deconv methods are the plain gradient."""
    return (
        f"warning: {', '.join(entry['methods'])} of the {entry['model_role']} model ({entry['model']}) "
        f"{'shows' if len(entry['methods']) == 1 else 'show'} the plain input gradient, not a guided or "
        "deconv one: no rectifier (ReLU, ReLU6) lies "
        "between its input and score (guided_rectifiers = 0), as in GELU, SiLU or Hardswish networks"
    )


def _guided_methods(cfg: StimulusConfig) -> list[str]:
    return [m for m in cfg.methods if m in GUIDED_METHODS]


def _prior_guided(out: Path, cfg: StimulusConfig) -> dict:
    """``guided_rectifiers`` of a finished earlier build of this config in ``out``, if any."""
    try:
        prior = mf.read_manifest(out)
    except (OSError, json.JSONDecodeError):
        return {}
    if prior.get("config_sha256") != cfg.sha256 or not isinstance(prior.get("guided_rectifiers"), dict):
        return {}
    return {k: v for k, v in prior["guided_rectifiers"].items() if isinstance(v, int)}


def _guided_rectifiers(stage: Stage, seen: dict[str, int], prior: dict) -> dict[str, int | None]:
    """Per model role, ``Explanation.guided_rectifiers`` (the fewest over this run's engine
    calls), None when the config has no guided or deconv method. A role without an engine
    call in this run (every stimulus reused, or all its batches in other shards) takes the
    count of the previous build, else one engine call on the first candidate image."""
    guided = _guided_methods(stage.cfg)
    out: dict[str, int | None] = {}
    for role in ROLES:
        if not guided:
            out[role] = None
        elif role in seen:
            out[role] = seen[role]
        elif role in prior:
            out[role] = prior[role]
        else:
            model = stage.models[role]
            first = stage.records[min(stage.candidates) if stage.candidates else min(stage.records)]
            x = model.preprocess(first.load())[None].to(stage.device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PlainGradientWarning)
                out[role] = explain(model.module, x, 0, layer=model.layer, methods=guided[:1]).guided_rectifiers
    return out


def _plain_gradient(stage: Stage, guided: dict[str, int | None]) -> list[dict]:
    return [{"model_role": role, "model": stage.models[role].name, "methods": _guided_methods(stage.cfg),
             "guided_rectifiers": 0} for role in ROLES if guided.get(role) == 0]


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


def _provenance(stage: Stage) -> dict:
    return {
        "config_sha256": stage.cfg.sha256,
        "code_version": code_version(),
        "weights_sha256": {role: stage.models[role].weights_sha256 for role in ROLES},
    }


def _predictions_json(stage: Stage, preds: dict[str, dict[str, Prediction]]) -> dict:
    """Every candidate's prediction by both models (what planning used), with provenance."""
    return {
        **_provenance(stage),
        "predictions": {
            role: {i: {"top5": [list(t) for t in p.top5], "best_class": p.best_class} for i, p in sorted(preds[role].items())}
            for role in ROLES
        },
    }


def _known_predictions(stage: Stage, out: Path, valid: dict) -> dict[str, dict[str, Prediction]]:
    """Predictions a resumed run need not recompute: from ``predictions.json`` of an earlier
    run of the same config, code and weights, and from the rows of valid stimuli."""
    known: dict[str, dict[str, Prediction]] = {role: dict(stage.predictions.get(role, {})) for role in ROLES}
    try:
        saved = json.loads((out / PREDICTIONS).read_text())
    except (OSError, json.JSONDecodeError):
        saved = {}
    if saved and all(saved.get(k) == v for k, v in _provenance(stage).items()):
        for role in ROLES:
            for i, p in saved.get("predictions", {}).get(role, {}).items():
                known[role].setdefault(i, Prediction(tuple((int(c), float(q)) for c, q in p["top5"]), dict(p["best_class"])))
    from_rows: dict[tuple[str, str], tuple[tuple, dict]] = {}
    for r in valid.values():
        if r["method"] == PHOTO or r.get("model_role") not in ROLES:
            continue
        top5 = tuple((int(t["index"]), float(t["probability"])) for t in r["top5"])
        from_rows.setdefault((r["model_role"], r["image_id"]), (top5, {}))[1][r["category"]] = int(r["target_class"])
    for (role, i), (top5, best) in from_rows.items():
        cats = stage.candidates.get(i)
        if cats is not None and all(c in best for c in cats):
            known[role].setdefault(i, Prediction(top5, best))
    return known


# Rendering, PNG encoding and writing run on this many threads, each with one torch
# thread (zlib, ISA-L, hashing and file writes release the GIL); on a GPU, finished engine
# calls waiting for them are bounded to keep memory flat.
WORKERS = max(2, min(8, os.cpu_count() or 2))
MAX_IN_FLIGHT = 2 * WORKERS


def _one_torch_thread() -> None:
    """Run this worker's torch ops on its own thread only (the setting is per thread), so
    that the workers together use the cores once rather than each starting a full team."""
    torch.set_num_threads(1)


def _render(stage: Stage, out: Path, shard: tuple[int, int], valid: dict, known: dict, progress: bool, overlap: bool):
    """Engine calls (or, for other shards' batches, forward passes) on the main thread,
    rendering, writing and the next batch's decoding on workers (beside the engine on a
    GPU, between its calls on the CPU: see the module doc); then the plan, the photos, and
    the rows the plan uses."""
    from tqdm import tqdm

    cfg = stage.cfg
    preds = {role: dict(known[role]) for role in ROLES}
    records = list(stage.records.values())
    plan = stage.plan
    if plan is None and all(i in preds[role] for role in ROLES for i in stage.candidates):
        plan = plan_trials(cfg, records, preds, stage.maps)  # a resumed run: all predictions known
    wanted = None if plan is None else set(plan.stimulus_ids(cfg.methods))
    expl = batches(stage.candidates, cfg.batch_size)
    mine_ids: set[str] = set()
    todo: list[tuple[list[str], set[str] | None]] = []
    rows: list[dict] = []
    for j, batch in enumerate(expl):
        have = all(i in preds[role] for role in ROLES for i in batch)
        if j % shard[1] == shard[0]:
            ids = _explanation_ids(stage, batch)
            mine_ids.update(ids)
            need = {s for s in ids if wanted is None or s in wanted}
            if have and need <= valid.keys():
                rows += [valid[s] for s in sorted(need)]
            else:
                todo.append((batch, need))
        elif not have:
            todo.append((batch, None))

    stats = {"rendered": 0, "engine_seconds": 0.0, "forward_seconds": 0.0, "render_seconds": 0.0, "unused": 0,
             "guided_rectifiers": {}}
    t0 = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=WORKERS, initializer=_one_torch_thread) as pool,
        ThreadPoolExecutor(max_workers=1, initializer=_one_torch_thread) as loader,  # not queued behind renders
        ThreadPoolExecutor(max_workers=1) as syncer,
        open(out / mf.PARTIAL, "a") as partial,
    ):
        # The PNGs are fsynced here, one by one, while the engine computes: the thread
        # waits on the disk, not the CPU, where 481 fsyncs inside the workers held them
        # 0.2-0.5 s per demo build.
        synced: list[Future] = []

        def sync(file: str) -> None:
            synced.append(syncer.submit(mf.fsync_path, out / file))

        pending: list[Future] = []
        ahead = loader.submit(_inputs, stage, *todo[0]) if todo else None
        for k, (batch, need) in enumerate(tqdm(todo, desc="stimuli", unit="batch", disable=not progress)):
            inputs = ahead.result()
            nxt = todo[k + 1] if k + 1 < len(todo) else None
            ahead = loader.submit(_inputs, stage, *nxt) if overlap and nxt else None
            if need is None:
                _forward(stage, batch, inputs, preds, stats)
            elif overlap:
                for job in _batch_jobs(stage, out, batch, inputs, need, preds, stats):
                    pending.append(pool.submit(job))
                    pending = _drain(pending, rows, partial, MAX_IN_FLIGHT, sync)
            else:
                jobs = list(_batch_jobs(stage, out, batch, inputs, need, preds, stats))  # both engine calls
                pending += [pool.submit(job) for job in jobs]
            if not overlap:
                ahead = loader.submit(_inputs, stage, *nxt) if nxt else None
                pending = _drain(pending, rows, partial, 0, sync)
        if stage.plan is None:
            plan = plan_trials(cfg, records, preds, stage.maps)
        for j, chunk in enumerate(photo_batches(plan, cfg.batch_size), start=len(expl)):
            if j % shard[1] != shard[0]:
                continue
            ids = [photo_id(i) for i in chunk]
            mine_ids.update(ids)
            if all(s in valid for s in ids):
                rows += [valid[s] for s in ids]
            else:
                pending.append(pool.submit(_write_photos, stage, out, chunk))
        _drain(pending, rows, partial, 0, sync)
        for fut in synced:
            fut.result()  # every file is on the disk before the manifest names it
    stats["render_seconds"] = time.perf_counter() - t0

    needed = set(plan.stimulus_ids(cfg.methods)) & mine_ids
    kept = {r["stimulus_id"]: r for r in rows if r["stimulus_id"] in needed}
    for r in rows:
        if r["stimulus_id"] not in needed:  # explained before the plan dropped it
            (out / r["file"]).unlink(missing_ok=True)
            (out / r["file_2x"]).unlink(missing_ok=True)
            stats["unused"] += 1
    missing = needed - kept.keys()
    if missing:
        raise RuntimeError(
            f"{len(missing)} planned stimuli were not rendered (e.g. {min(missing)}): the predictions "
            f"changed between runs into {out}; delete the folder and build again"
        )
    stats["rendered"] = sum(1 for s in kept if s not in valid)
    return list(kept.values()), stats, plan, preds


def _drain(pending: list[Future], rows: list[dict], partial, keep: int, sync: Callable[[str], None]) -> list[Future]:
    """Collect finished jobs (oldest first, waiting while more than ``keep`` are left);
    append their rows to the partial manifest, so an interrupted run can resume, and hand
    each row's files (1x and 2x) to ``sync``."""
    left = []
    for i, fut in enumerate(pending):
        if fut.done() or len(pending) - i > keep:
            for row in fut.result():  # re-raises a rendering or write error here
                rows.append(row)
                partial.write(json.dumps(row) + "\n")
                sync(row["file"])
                sync(row["file_2x"])
        else:
            left.append(fut)
    partial.flush()
    return left


def _explanation_ids(stage: Stage, batch: list[str]) -> list[str]:
    return [
        explanation_id(i, role, m, c)
        for i in batch
        for role in ROLES
        for m in stage.cfg.methods
        for c in stage.candidates[i]
    ]


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


def _inputs(stage: Stage, batch: list[str], need: set[str] | None = None) -> Inputs:
    """The batch's :class:`Inputs`; the 2x photos and the photos' edge maps (for the
    structure scores, at the display size) only when ``need`` (the batch is rendered)."""
    images = [stage.records[i].load() for i in batch]
    got = Inputs({role: torch.stack([stage.models[role].preprocess.pixels(im) for im in images]) for role in ROLES})
    if need is None:
        return got
    for role in ROLES:
        got.photo_edges[role] = structure.photo_edges(_to_display(got.pixels[role].float().div_(255),
                                                                  stage.cfg.display_size))
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

    scaled = resize(image.convert("RGB"), round(pre.resize * size / pre.crop),
                    interpolation=InterpolationMode(pre.interpolation), antialias=True)
    return pil_to_tensor(center_crop(scaled, size))


def _how(source_px: float, size: int) -> str:
    """How a 2x photo of ``size`` pixels was made from a source crop of ``source_px``."""
    return "source" if source_px >= size else "source_upsampled"


def _forward(stage: Stage, batch: list[str], inputs: Inputs, preds: dict, stats: dict) -> None:
    """Predictions for another shard's batch: the engine call's forward pass, without gradients."""
    recs = [stage.records[i] for i in batch]
    t = time.perf_counter()
    for role in ROLES:
        model = stage.models[role]
        with torch.inference_mode():
            logits = model.module(model.preprocess.normalize(inputs.pixels[role]).to(stage.device)).float().cpu()
        preds[role].update(_predictions(logits, recs, stage.maps[role]))
    stats["forward_seconds"] += time.perf_counter() - t


def _encode_and_write(out: Path, row: dict, pixels: torch.Tensor, pixels_2x: torch.Tensor) -> dict:
    """PNG-encode ``(H, W, 3)`` uint8 pixels and their 2x rendering, hash them, write them
    atomically; fill the row's sha256s."""
    for key, px in (("file", pixels), ("file_2x", pixels_2x)):
        data = png.encode_rgb(px.numpy())
        row["sha256" if key == "file" else "sha256_2x"] = mf.sha256_bytes(data)
        path = out / row[key]
        path.parent.mkdir(parents=True, exist_ok=True)  # folder sources keep "/" in image ids
        mf.write_atomic(path, data, sync=False)  # flushed by the build's syncer (see _render)
    return row


def _to_display(img: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 3, h, w)`` in [0, 1] to ``(B, size, size, 3)`` uint8 on the CPU, one rule for all:
    quantized to 8 bits at the rendered size, then resampled to ``size`` (bilinear,
    antialiased) in 8 bits on the CPU. Resampling the 8-bit pixels rather than the floats
    took a third of the time (16 images of 260 px: 17 ms against 44 ms) and changes a
    pixel by at most one level."""
    q = img.mul(255).round_().clamp_(0, 255).permute(0, 2, 3, 1)
    px = torch.empty(q.shape, dtype=torch.uint8, device=img.device).copy_(q).cpu()  # one pass: cast and layout
    if px.shape[1:3] != (size, size):
        px = F.interpolate(px.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True,
                           align_corners=False).permute(0, 2, 3, 1).contiguous()
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


def _batch_jobs(stage: Stage, out: Path, batch: list[str], inputs: Inputs, need: set[str], preds: dict, stats: dict):
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
                seen.update(_predictions(logits.detach().float().cpu(), recs, stage.maps[role]))
                index = [[seen[i].best_class[c] for c in cs] for i, cs in zip(batch, cats, strict=True)]
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
        targets = [[seen[i].best_class[c] for c in cs] for i, cs in zip(batch, cats, strict=True)]
        for method in cfg.methods:
            yield lambda role=role, method=method, ex=ex, seen=seen, targets=targets: _write_explanations(
                stage, out, role, method, batch, cats, ex, inputs, targets, seen, need
            )


def _write_explanations(stage: Stage, out: Path, role: str, method: str, batch, cats, ex, inputs: Inputs, targets,
                        preds, need) -> list[dict]:
    """Render one model's explanations of a batch by one method at the display size and at
    twice it, score their structure beside the photo, and write the PNGs of the stimuli in
    ``need``.

    The 2x of a gradient image is the model-resolution rendering resampled to 2x: the model
    input has no more detail to give. The 2x of a Grad-CAM overlay draws the map, upsampled
    the same way, over the photo taken from the source at 2x (:class:`Inputs`)."""
    cfg = stage.cfg
    model = stage.models[role]
    pixels = inputs.pixels[role]
    wanted = [(n, k) for n, image_id in enumerate(batch) for k, cat in enumerate(cats[n])
              if explanation_id(image_id, role, method, cat) in need]
    if not wanted:
        return []
    size = cfg.display_size
    dev = ex.logits.device
    photos = pixels.to(dev).float().div_(255)
    overlaid = is_overlaid(method)
    imgs = render_methods(ex, photos if overlaid else None, cfg.render.colormap, cfg.render.alpha,
                          methods=[method])[method]  # (N, K, 3, h, w)
    ns = torch.tensor([n for n, _ in wanted], device=dev)
    ks = torch.tensor([k for _, k in wanted], device=dev)
    shown = _to_display(imgs[ns, ks], size)  # (B, size, size, 3)
    if overlaid:
        maps, mode = overlay_source(ex, method)
        maps = maps[ns, ks]  # (B, h, w)
        maps = F.interpolate(maps[:, None], size=(2 * size, 2 * size), mode="bilinear", align_corners=False)[:, 0]
        photos_2x = inputs.photos_2x[role].to(dev)[ns].float().div_(255)
        shown_2x = _to_display(overlay(photos_2x, maps, cfg.render.colormap, cfg.render.alpha, normalize=mode),
                               2 * size)
        how = [inputs.how_2x[role][n] for n, _ in wanted]
    else:
        shown_2x = _to_display(imgs[ns, ks], 2 * size)
        how = ["upsampled"] * len(wanted)
    scores = structure.score(shown, edges_of_photos=inputs.photo_edges[role][ns.cpu()])  # on the CPU, as shown is
    rows = []
    for j, (n, k) in enumerate(wanted):
        image_id, cat = batch[n], cats[n][k]
        top5 = [{"index": c, "name": model.class_names[c], "probability": p} for c, p in preds[image_id].top5]
        target = targets[n][k]
        row = _base_row(stage, explanation_id(image_id, role, method, cat), image_id)
        row.update(model_role=role, model=model.name, weights_sha256=model.weights_sha256,
                   layer=ex.layer, layer_grid=mf.grid_text(ex.layer_grid),
                   layer_layout=ex.layer_layout or "", method=method, category=cat, target_class=target,
                   target_name=model.class_names[target], top5=top5, how_2x=how[j], structure=scores[j])
        rows.append(_encode_and_write(out, row, shown[j], shown_2x[j]))
    return rows


def _write_photos(stage: Stage, out: Path, ids: list[str]) -> list[dict]:
    size = stage.cfg.display_size
    images = [stage.records[i].load() for i in ids]
    shown = _to_display(torch.stack([_photo_pixels(im, size) for im in images]), size)
    shown_2x = _to_display(torch.stack([_photo_pixels(im, 2 * size) for im in images]), 2 * size)
    rows = []
    for j, (i, im) in enumerate(zip(ids, images, strict=True)):
        row = _base_row(stage, photo_id(i), i)
        row.update(model_role="none", model="none", weights_sha256="", layer="", layer_grid="",
                   layer_layout="", method=PHOTO,
                   category="", target_class=-1, target_name="", top5=[],
                   how_2x=_how(min(im.size) * PHOTO_CROP, 2 * size))
        rows.append(_encode_and_write(out, row, shown[j], shown_2x[j]))
    return rows


def _merged_guided(builds: list[dict]) -> tuple[dict, list[dict]]:
    """The shards' ``guided_rectifiers`` (the fewest per role) and ``plain_gradient`` entries."""
    guided: dict[str, int | None] = {}
    for b in builds:
        for role, n in (b.get("guided_rectifiers") or {}).items():
            guided[role] = n if guided.get(role) is None else (guided[role] if n is None else min(guided[role], n))
    plain = {p["model_role"]: p for b in builds for p in b.get("plain_gradient") or []}
    return guided, [plain[r] for r in ROLES if r in plain]


PHOTO_CROP = 0.875  # the photo stimuli show the central 87.5% of the shorter side, as the models see it


def _photo_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """The photo as shown in trials: the same central 87.5% crop the models see."""
    from torchvision.transforms.functional import center_crop, resize

    im = center_crop(resize(image.convert("RGB"), round(size / PHOTO_CROP), antialias=True), size)
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
                for key in ("file", "file_2x"):
                    (out / r[key]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(d / r[key], out / r[key])
            rows.append(r)
    first = builds[0][0]
    if first.resolve() != out.resolve():
        for name in (mf.PLAN, mf.PLAN_REPORT, PREDICTIONS):
            if (first / name).exists():
                shutil.copy2(first / name, out / name)
    sha = shas.pop()
    pairs = structure.pair_summary(rows)  # over all shards' rows: a shard saw only its own
    guided, plain = _merged_guided([b for _, b, _, _ in builds])
    mf.write_manifest(out, rows, {"config_sha256": sha, "shard": [0, 1], **_structure_meta(pairs),
                                  "guided_rectifiers": guided, "plain_gradient": plain})
    summary = {"config_sha256": sha, "shard": [0, 1], "merged": True, "merged_from": [str(d) for d in dirs],
               "complete": True, "stimuli": len(rows), "code_version": code_version(),
               "degenerate_pairs": _degenerate(pairs), "guided_rectifiers": guided, "plain_gradient": plain}
    mf.write_json(out / mf.BUILD, summary)
    _warn(pairs, plain)
    return summary
