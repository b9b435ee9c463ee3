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

When a kind caps its images once the predictions are known (trust's ``max_images``:
:meth:`camstudy.kinds.StudyKind.cap_after_predictions`) below the number of candidates,
explaining every candidate would spend engine calls on images the cap drops: then a
prediction pass over the candidates plans first, and only planned images are explained.

Resumable: a batch is skipped when its stimuli all exist, 1x and 2x, with their recorded
sha256 and every manifest field of this version (the predictions come back from their
rows, or from ``predictions.json`` of a finished run).
Because batches do not depend on ``N``, a shard computes exactly what a single run computes
for those images, so merged shards give the same manifest rows.

This module is the pipeline (steps 1, 2, 4, 5); :mod:`stimuli.schedule` runs step 3's
engine calls and worker threads, :mod:`stimuli.writer` renders, scores and writes each
file with its manifest row, and :mod:`stimuli.merge` joins the shards of one config.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from camstudy.errors import UserError
from camstudy.kinds import KINDS
from camstudy.version import code_version
from gradcam import GUIDED_METHODS, PlainGradientWarning, explain
from stimuli import manifest as mf
from stimuli import structure
from stimuli.config import ROLES, StimulusConfig
from stimuli.images import resolve_device
from stimuli.models import LoadedModel, load_model
from stimuli.plan import PHOTO, Plan, Prediction, candidates, plan_trials
from stimuli.records import CategoryMap, ImageRecord
from stimuli.schedule import render_all
from stimuli.sources import load_source
from stimuli.writer import predictions_of

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
    caps = [KINDS[name].cap_after_predictions(task) for name, task in cfg.tasks.items()]
    if any(0 < cap < len(stage.candidates) for cap in caps):  # a cap drops images: predict, plan, then explain
        eligible = [by_id[i] for i in stage.candidates]
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
            out[role].update(predictions_of(logits, chunk, maps[role]))
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
    valid = {r["stimulus_id"]: r for r in mf.read_partial(out) + final_rows(out) if mf.file_matches(out, r)}
    known = _known_predictions(stage, out, valid)
    if overlap is None:
        overlap = stage.device.type != "cpu"
    prior_guided = _prior_guided(out, cfg)
    rows, stats, plan, preds = render_all(stage, out, shard, valid, known, progress, overlap)
    guided = _guided_rectifiers(stage, stats["guided_rectifiers"], prior_guided)
    mf.write_json(out / mf.PLAN, {"config_sha256": cfg.sha256, "seed": cfg.seed, **plan.to_json()})
    _write_plan_report(out, plan)
    mf.write_json(out / PREDICTIONS, _predictions_json(stage, preds))
    pairs = structure.pair_summary(rows)
    plain = _plain_gradient(stage, guided)
    mf.write_manifest(
        out,
        rows,
        {
            "config_sha256": cfg.sha256,
            "shard": list(shard),
            **structure_meta(pairs),
            "guided_rectifiers": guided,
            "plain_gradient": plain,
        },
    )
    (out / mf.PARTIAL).unlink(missing_ok=True)
    warn_lines(pairs, plain)
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
        degenerate_pairs=degenerate_pairs(pairs),
        guided_rectifiers=guided,
        plain_gradient=plain,
    )
    mf.write_json(out / mf.BUILD, summary)
    return summary


def structure_meta(pairs: list[dict]) -> dict:
    """The manifest's ``structure`` entry: the thresholds and the summary of every (model
    role, method) pair; ``camstudy study create`` reads the degenerate pairs from it."""
    return {"structure": {"thresholds": structure.THRESHOLDS, "pairs": pairs}}


def degenerate_pairs(pairs: list[dict]) -> list[dict]:
    return [
        {k: p[k] for k in ("model_role", "model", "method", "stimuli", "degenerate_stimuli", "why")}
        for p in pairs
        if p["degenerate"]
    ]


def warn_lines(pairs: list[dict], plain: list[dict]) -> None:
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
    return [
        {
            "model_role": role,
            "model": stage.models[role].name,
            "methods": _guided_methods(stage.cfg),
            "guided_rectifiers": 0,
        }
        for role in ROLES
        if guided.get(role) == 0
    ]


def final_rows(out: Path) -> list[dict]:
    try:
        return mf.read_manifest(out)["rows"]
    except (OSError, KeyError, json.JSONDecodeError):
        return []


def _write_plan_report(out: Path, plan: Plan) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["image_id", "categories", *KINDS], lineterminator="\n")
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
            role: {
                i: {"top5": [list(t) for t in p.top5], "best_class": p.best_class}
                for i, p in sorted(preds[role].items())
            }
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
                known[role].setdefault(
                    i, Prediction(tuple((int(c), float(q)) for c, q in p["top5"]), dict(p["best_class"]))
                )
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
