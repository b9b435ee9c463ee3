"""Trial planning: which images, visualizations and checks a study's items use.

Pure functions of the config, the image records and the models' predictions, so every
shard of a build computes the same plan.

Class discrimination (the paper's protocol): images with exactly two categories; one item
per (image, category, method, model), whose options are the two categories and whose
correct answer is the explained one. Trust (the paper's protocol): images where both
models' top-1 class falls in the same labelled category; per method, one item pairing the
two models' visualizations of that category.

Beyond the paper: attention checks (class discrimination: the photo itself with one true
and one absurd category; trust: the same visualization on both sides, expected answer 0),
a photo-only baseline for trust, per-category balance, and a decision per image saying why
it was kept or dropped for each task.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from camstudy.contracts import Method, TaskKind
from stimuli.config import ROLES, StimulusConfig
from stimuli.records import CategoryMap, ImageRecord

PHOTO = Method.PHOTO  # the method name of photo-only stimuli
CD = TaskKind.CLASS_DISCRIMINATION
TRUST = TaskKind.TRUST
KEPT = "kept"


@dataclass(frozen=True)
class Prediction:
    """One model's output on one image: what planning and the manifest need."""

    top5: tuple[tuple[int, float], ...]  # (class index, probability), best first
    best_class: dict[str, int]  # category -> its class with the highest logit

    @property
    def top1(self) -> int:
        return self.top5[0][0]


def explanation_id(image_id: str, role: str, method: str, category: str) -> str:
    return f"{image_id}__{role}__{method}__{category}"


def photo_id(image_id: str) -> str:
    return f"{image_id}__{PHOTO}"


@dataclass
class Plan:
    """The planned items, the stimuli they need, and the decision for every image."""

    items: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    explanations: dict[str, list[str]] = field(default_factory=dict)  # image id -> categories to explain
    photos: list[str] = field(default_factory=list)  # image ids shown as plain photos

    def stimulus_ids(self, methods) -> list[str]:
        ids = [
            explanation_id(img, role, m, c)
            for img, cats in self.explanations.items()
            for role in ROLES
            for m in methods
            for c in cats
        ]
        return sorted(ids + [photo_id(i) for i in self.photos])

    def counts(self) -> dict[str, Counter]:
        """Item counts per task by (method, model, category), attention checks apart."""
        out: dict[str, Counter] = {}
        for it in self.items:
            key = "attention_check" if it["is_attention_check"] else it.get("model_role", "pair")
            out.setdefault(it["task"], Counter())[(it["method"], key, it["category"])] += 1
        return out

    def to_json(self) -> dict:
        return {
            "items": self.items,
            "decisions": self.decisions,
            "explanations": self.explanations,
            "photos": self.photos,
        }


def plan_trials(
    cfg: StimulusConfig,
    records: list[ImageRecord],
    predictions: dict[str, dict[str, Prediction]],
    maps: dict[str, CategoryMap],
) -> Plan:
    """Plan both tasks; ``predictions[role][image_id]`` comes from the prediction pass."""
    records = sorted(records, key=lambda r: r.id)  # the plan must not depend on input order
    plan = Plan()
    decisions = {r.id: {"image_id": r.id, "categories": ";".join(r.categories)} for r in records}
    needed: dict[str, set[str]] = {}
    rng = random.Random(cfg.seed)
    if cfg.class_discrimination is not None:
        kept = _select_cd(cfg, records, maps, decisions, rng)
        for r in kept:
            needed.setdefault(r.id, set()).update(r.categories)
        plan.items += _cd_items(cfg, kept)
        plan.items += _cd_checks(cfg, records, maps, rng, plan)
    else:
        for d in decisions.values():
            d[CD] = "task not planned"
    if cfg.trust is not None:
        kept_t = _select_trust(cfg, records, predictions, maps, decisions, rng)
        for r, cat in kept_t:
            needed.setdefault(r.id, set()).add(cat)
        plan.items += _trust_items(cfg, kept_t, plan)
        plan.items += _trust_checks(cfg, plan, rng)
    else:
        for d in decisions.values():
            d[TRUST] = "task not planned"
    plan.explanations = {k: sorted(v) for k, v in sorted(needed.items())}
    plan.photos = sorted(set(plan.photos))
    plan.decisions = [decisions[r.id] for r in records]
    return plan


def _known_to_both(r: ImageRecord, maps: dict[str, CategoryMap]) -> str | None:
    """None when every category maps to classes of both models, else the reason."""
    for c in r.categories:
        for role in ROLES:
            if maps[role].classes(c) is None:
                return f"category {c!r} has no class in the {role} model"
    return None


def _select_cd(cfg, records, maps, decisions, rng) -> list[ImageRecord]:
    task = cfg.class_discrimination
    eligible = []
    for r in records:
        if len(r.categories) != 2:
            decisions[r.id][CD] = f"has {len(r.categories)} categories; needs exactly 2"
        elif (why := _known_to_both(r, maps)) is not None:
            decisions[r.id][CD] = why
        else:
            eligible.append(r)
    order = eligible[:]
    rng.shuffle(order)
    cap = None
    if task.balance_categories and order:
        totals = Counter(c for r in order for c in r.categories)
        cap = min(totals.values())
    counts: Counter = Counter()
    kept = []
    for r in order:
        if task.max_images and len(kept) >= task.max_images:
            decisions[r.id][CD] = f"over max_images ({task.max_images})"
        elif cap is not None and any(counts[c] >= cap for c in r.categories):
            full = [c for c in r.categories if counts[c] >= cap]
            decisions[r.id][CD] = f"dropped to balance categories ({full[0]!r} already has {cap})"
        else:
            counts.update(r.categories)
            kept.append(r)
            decisions[r.id][CD] = KEPT
    return sorted(kept, key=lambda r: r.id)


def _cd_items(cfg, kept: list[ImageRecord]) -> list[dict]:
    items = []
    for r in kept:
        for cat in r.categories:
            for method in cfg.methods:
                for role in ROLES:
                    items.append(
                        {
                            "item_id": f"cd__{explanation_id(r.id, role, method, cat)}",
                            "task": CD,
                            "image_id": r.id,
                            "category": cat,
                            "method": method,
                            "model_role": role,
                            "model": cfg.models[role].name,
                            "stimulus_ids": [explanation_id(r.id, role, method, cat)],
                            "options": list(r.categories),
                            "correct_answer": cat,
                            "is_attention_check": False,
                        }
                    )
    return items


def _cd_checks(cfg, records, maps, rng, plan: Plan) -> list[dict]:
    """The photo with one of its categories and an absurd one: anyone looking answers right."""
    n = cfg.class_discrimination.attention_checks
    pool = [r for r in records if r.categories and _known_to_both(r, maps) is None]
    if n and not pool:
        return []
    rng.shuffle(pool)
    items = []
    for i in range(n):
        r = pool[i % len(pool)]
        true = r.categories[i // len(pool) % len(r.categories)]
        absurd = [a for a in cfg.class_discrimination.absurd_categories if a not in r.categories]
        wrong = absurd[rng.randrange(len(absurd))]
        plan.photos.append(r.id)
        items.append(
            {
                "item_id": f"cd__check{i:03d}__{r.id}",
                "task": CD,
                "image_id": r.id,
                "category": true,
                "method": PHOTO,
                "model_role": "none",
                "model": "none",
                "stimulus_ids": [photo_id(r.id)],
                "options": sorted([true, wrong]),
                "correct_answer": true,
                "is_attention_check": True,
            }
        )
    return items


def _select_trust(cfg, records, predictions, maps, decisions, rng) -> list[tuple[ImageRecord, str]]:
    task = cfg.trust
    eligible = []
    for r in records:
        if not r.categories:
            decisions[r.id][TRUST] = "no labelled category"
            continue
        if (why := _known_to_both(r, maps)) is not None:
            decisions[r.id][TRUST] = why
            continue
        hits = {}
        for role in ROLES:
            top1 = predictions[role][r.id].top1
            hits[role] = maps[role].category_of(top1, r.categories)
            if hits[role] is None:
                name = maps[role].class_names[top1]
                decisions[r.id][TRUST] = f"the {role} model predicts {name!r}, not a labelled category"
                break
        else:
            if hits["stronger"] != hits["weaker"]:
                decisions[r.id][TRUST] = (
                    f"the models predict different categories ({hits['stronger']}, {hits['weaker']})"
                )
            else:
                eligible.append((r, hits["stronger"]))
    order = eligible[:]
    rng.shuffle(order)
    kept = []
    for r, cat in order:
        if task.max_images and len(kept) >= task.max_images:
            decisions[r.id][TRUST] = f"over max_images ({task.max_images})"
        else:
            kept.append((r, cat))
            decisions[r.id][TRUST] = KEPT
    return sorted(kept, key=lambda rc: rc[0].id)


def _trust_items(cfg, kept, plan: Plan) -> list[dict]:
    items = []
    for r, cat in kept:
        methods = list(cfg.methods) + ([PHOTO] if cfg.trust.baseline else [])
        for method in methods:
            if method == PHOTO:
                plan.photos.append(r.id)
                stim = {role: photo_id(r.id) for role in ROLES}
            else:
                stim = {role: explanation_id(r.id, role, method, cat) for role in ROLES}
            items.append(
                {
                    "item_id": f"trust__{r.id}__{method}__{cat}",
                    "task": TRUST,
                    "image_id": r.id,
                    "category": cat,
                    "method": method,
                    "stimulus_ids": [stim["stronger"], stim["weaker"]],  # stronger first
                    "is_attention_check": False,
                }
            )
    return items


def _trust_checks(cfg, plan: Plan, rng) -> list[dict]:
    """The same visualization on both sides: the only sensible answer is 0 ("equally")."""
    pool = [it for it in plan.items if it["task"] == TRUST and it["method"] != PHOTO]
    n = cfg.trust.attention_checks
    if not pool or not n:
        return []
    picks = rng.sample(pool, n) if n <= len(pool) else [pool[i % len(pool)] for i in range(n)]
    items = []
    for i, it in enumerate(picks):
        shown = it["stimulus_ids"][i % 2]  # alternate which model's visualization is repeated
        items.append(
            {
                **{k: it[k] for k in ("image_id", "category", "method")},
                "item_id": f"trust__check{i:03d}__{it['image_id']}",
                "task": TRUST,
                "stimulus_ids": [shown, shown],
                "expected_answer": 0,
                "is_attention_check": True,
            }
        )
    return items


def candidates(cfg: StimulusConfig, records: list[ImageRecord], maps: dict[str, CategoryMap]) -> dict[str, list[str]]:
    """Image id -> every category :func:`plan_trials` may ask to explain, known before any
    prediction: the class-discrimination images (that selection does not use predictions,
    and it is the first draw of the same seeded generator) with both categories, and each
    trust-eligible image with all its categories (trust keeps at most one of them, once
    the predictions are known). ``plan_trials(...).explanations`` is always a subset.
    """
    records = sorted(records, key=lambda r: r.id)
    out: dict[str, set[str]] = {}
    if cfg.class_discrimination is not None:
        scratch: dict[str, dict] = {r.id: {} for r in records}
        for r in _select_cd(cfg, records, maps, scratch, random.Random(cfg.seed)):
            out.setdefault(r.id, set()).update(r.categories)
    if cfg.trust is not None:
        for r in records:
            if r.categories and _known_to_both(r, maps) is None:
                out.setdefault(r.id, set()).update(r.categories)
    return {k: sorted(v) for k, v in sorted(out.items())}
