"""``camstudy stimuli evaluate``: are the explanations any good? (faithfulness, localization, sanity)

For each model of the config, over every (image, labelled category) pair that both
models know, with the category's best-scoring class as the target:

* faithfulness: Spearman rank correlation of each method's map with an occlusion map
  (``--patch``, ``--stride``, ``--fill``), mean and 95% t-interval over pairs;
* localization, where the source has boxes: pointing game (15 px tolerance) and the
  paper's box localization (15% of max, largest segment, IoU >= 0.5), plus the pointing
  game's chance level and Grad-CAM's pointing accuracy with fully randomized weights;
* sanity (Adebayo et al. 2018): Spearman and SSIM between the trained model's maps and
  those of a copy whose top layer is re-initialized (the first step of the cascading
  randomization), and of a fully re-initialized copy. A method that does not change is
  not explaining the model's decision.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from camstudy.errors import UserError
from gradcam import explain
from stimuli import metrics as M
from stimuli.build import predict
from stimuli.config import ROLES, StimulusConfig, load_config
from stimuli.images import resolve_device
from stimuli.models import load_model
from stimuli.records import CategoryMap, ImageRecord
from stimuli.sources import load_source

FIELDS = ("model_role", "model", "method", "metric", "n", "mean", "ci_low", "ci_high")


def _pairs(records: list[ImageRecord], maps: dict[str, CategoryMap], limit: int) -> list[tuple[ImageRecord, str]]:
    pairs = [(r, c) for r in records for c in r.categories if all(maps[role].classes(c) is not None for role in ROLES)]
    if not pairs:
        raise UserError("no image has a category that both models know; nothing to evaluate")
    if limit:
        ids = sorted({r.id for r, _ in pairs})[:limit]
        pairs = [p for p in pairs if p[0].id in ids]
    return pairs


def evaluate(
    cfg: StimulusConfig, patch: int = 48, stride: int = 24, fill: float = 0.0, max_images: int = 0, seed: int = 0
) -> list[dict]:
    """All metrics for both models; one row per (model, method, metric)."""
    device = resolve_device(cfg.device)
    records = load_source(cfg.source, cfg.path.parent)
    rows = []
    loaded = {role: load_model(cfg.models[role].name, cfg.models[role].weights, device) for role in ROLES}
    maps = {role: CategoryMap(loaded[role].class_names, cfg.categories_for(role)) for role in ROLES}
    pairs = _pairs(records, maps, max_images)
    images = sorted({r.id: r for r, _ in pairs}.values(), key=lambda r: r.id)
    for role in ROLES:
        model = loaded[role]
        if cfg.models[role].layer:
            model.layer = cfg.models[role].layer
        preds = predict({role: model}, maps, images, cfg.batch_size, device)[role]
        acc: dict[tuple[str, str], list[float]] = {}
        for start in range(0, len(pairs), cfg.batch_size):
            chunk = pairs[start : start + cfg.batch_size]
            _evaluate_chunk(model, chunk, preds, cfg, device, patch, stride, fill, seed, acc)
        for (method, metric), values in sorted(acc.items()):
            ci = M.mean_ci(values)
            rows.append(
                {
                    "model_role": role,
                    "model": model.name,
                    "method": method,
                    "metric": metric,
                    "n": ci.n,
                    "mean": _r(ci.mean),
                    "ci_low": _r(ci.low),
                    "ci_high": _r(ci.high),
                }
            )
    return rows


def _r(v: float) -> float | str:
    return "" if v != v else round(float(v), 4)  # NaN (too few values) stays empty in the CSV


def _evaluate_chunk(model, chunk, preds, cfg, device, patch, stride, fill, seed, acc) -> None:
    x = torch.stack([model.preprocess(r.load()) for r, _ in chunk]).to(device)
    targets = torch.tensor([preds[r.id].class_for(c) for r, c in chunk], device=device)
    methods = tuple(dict.fromkeys((*cfg.methods, "gradcam")))
    ex = explain(model.module, x, targets, layer=model.layer, methods=methods)
    occ = M.occlusion_map(model.module, x, targets, patch=patch, stride=stride, fill=fill)

    def add(method: str, metric: str, values) -> None:
        acc.setdefault((method, metric), []).extend(float(v) for v in torch.as_tensor(values).flatten().cpu())

    boxes = [_input_boxes(r, c, model.preprocess) for r, c in chunk]
    has_boxes = [i for i, b in enumerate(boxes) if b]
    size = tuple(x.shape[-2:])
    for method in methods:
        sal = M.method_saliency(ex, method)
        add(method, "faithfulness_spearman", M.faithfulness(sal, occ, patch=patch, stride=stride))
        if has_boxes:
            sub = sal[has_boxes]
            bxs = [boxes[i] for i in has_boxes]
            add(method, "pointing_game", M.pointing_game(sub, bxs).float())
            add(method, "box_localization", M.box_localization(sub, bxs).hits.float())
    if has_boxes:
        bxs = [boxes[i] for i in has_boxes]
        add("(chance)", "pointing_game", [M.pointing_chance(b, size) for b in bxs])
        rand = M.randomized_copy(model.module, seed=seed, init="kaiming")
        rex = explain(rand, x[has_boxes], targets[has_boxes], layer=model.layer, methods="gradcam")
        add("gradcam (random weights)", "pointing_game", M.pointing_game(rex.gradcam, bxs).float())
    sanity_methods = [m for m in methods if m != "counterfactual"]
    top = M.randomizable_layers(model.module)[-1]
    for label, kwargs in (("top_layer", {"cascade_upto": top}), ("full", {"init": "kaiming"})):
        res = M.sanity_check(model.module, x, targets, layer=model.layer, methods=sanity_methods, seed=seed, **kwargs)
        for method, vals in res.items():
            add(method, f"sanity_{label}_spearman", vals["spearman"])
            add(method, f"sanity_{label}_ssim", vals["ssim"])


def _input_boxes(record: ImageRecord, category: str, preprocess) -> list:
    if not record.boxes:
        return []
    size = record.load().size
    return [M.boxes_to_input_space(b.as_tuple(), size, preprocess) for b in record.boxes if b.category == category]


def table(rows: list[dict]) -> str:
    """A short Markdown table: one line per (model, method), metrics as columns."""
    metrics = [
        "faithfulness_spearman",
        "pointing_game",
        "box_localization",
        "sanity_top_layer_spearman",
        "sanity_full_spearman",
    ]
    head = "| model | method | " + " | ".join(m.replace("_", " ") for m in metrics) + " |"
    lines = [head, "|---|---|" + "---:|" * len(metrics)]
    keys = sorted({(r["model_role"], r["model"], r["method"]) for r in rows})
    by = {(r["model_role"], r["model"], r["method"], r["metric"]): r for r in rows}
    for role, name, method in keys:
        cells = []
        for m in metrics:
            r = by.get((role, name, method, m))
            cells.append("" if r is None or r["mean"] == "" else f"{r['mean']:.2f}")
        lines.append(f"| {role} {name} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    target = Path(args.target)
    if target.is_dir():
        build = target / "build.json"
        if not build.exists():
            raise UserError(f"{target}: not a stimuli build folder (no build.json)")
        cfg = load_config(json.loads(build.read_text())["config"])
        default_out = target / "evaluation.csv"
    else:
        cfg = load_config(target)
        default_out = cfg.out / "evaluation.csv"
    if args.patch < 1 or args.stride < 1:
        raise UserError("--patch and --stride must be at least 1")
    rows = evaluate(cfg, args.patch, args.stride, args.fill, args.max_images, cfg.seed)
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    print(table(rows))
    print(f"{len(rows)} rows (mean, 95% CI, n per model, method and metric): {out}")
    return 0
