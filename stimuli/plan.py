"""Trial planning: which images, visualizations and checks a study's items use.

Pure functions of the config, the image records and the models' predictions, so every
shard of a build computes the same plan. The rules are the study kinds' own
(:meth:`camstudy.kinds.StudyKind.plan`: the paper's class discrimination and trust, with
attention checks, a photo-only trust baseline and per-category balance); this module runs
the planned kinds in order on one seeded generator, collects the stimuli their items need,
and keeps a decision per image and kind saying why it was kept or dropped.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from camstudy.contracts import Method, TaskKind, explanation_id, photo_id, rank_of
from camstudy.kinds import KINDS, PlanContext
from camstudy.kinds.base import KEPT
from stimuli.config import ROLES, StimulusConfig
from stimuli.records import CategoryMap, ImageRecord

PHOTO = Method.PHOTO  # the method name of photo-only stimuli
CD = TaskKind.CLASS_DISCRIMINATION
TRUST = TaskKind.TRUST
__all__ = ["KEPT", "Plan", "Prediction", "candidates", "explanation_id", "photo_id", "plan_trials"]


@dataclass(frozen=True)
class Prediction:
    """One model's output on one image: what planning and the manifest need."""

    top5: tuple[tuple[int, float], ...]  # (class index, probability), best first
    best_class: dict[str, int]  # category -> its class with the highest logit

    @property
    def top1(self) -> int:
        return self.top5[0][0]

    def class_for(self, target: str) -> int:
        """The class an explanation of ``target`` explains: a category's best class, or the
        class at a rank of this prediction (``"top2"``: the second most probable)."""
        k = rank_of(target)
        return self.best_class[target] if k is None else self.top5[k - 1][0]


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
    """Plan every kind the config plans; ``predictions[role][image_id]`` comes from the
    prediction pass."""
    records = sorted(records, key=lambda r: r.id)  # the plan must not depend on input order
    plan = Plan()
    decisions = {r.id: {"image_id": r.id, "categories": ";".join(r.categories)} for r in records}
    needed: dict[str, set[str]] = {}
    rng = random.Random(cfg.seed)  # one generator, drawn by the kinds in their fixed order
    for name, kind in KINDS.items():
        task = cfg.tasks.get(name)
        if task is None:
            for d in decisions.values():
                d[name] = "task not planned"
            continue
        ctx = PlanContext(cfg, task, records, predictions, maps, rng, decisions, needed, plan.photos, plan.items)
        plan.items += kind.plan(ctx)
    plan.explanations = {k: sorted(v) for k, v in sorted(needed.items())}
    plan.photos = sorted(set(plan.photos))
    plan.decisions = [decisions[r.id] for r in records]
    return plan


def candidates(cfg: StimulusConfig, records: list[ImageRecord], maps: dict[str, CategoryMap]) -> dict[str, list[str]]:
    """Image id -> every category :func:`plan_trials` may ask to explain, known before any
    prediction (each planned kind's :meth:`~camstudy.kinds.StudyKind.candidates`: for
    class discrimination its images with both categories, for trust every eligible image
    with all its categories, of which it keeps at most one once the predictions are known).
    ``plan_trials(...).explanations`` is always a subset.
    """
    records = sorted(records, key=lambda r: r.id)
    out: dict[str, set[str]] = {}
    for name, kind in KINDS.items():
        task = cfg.tasks.get(name)
        if task is not None:
            for image_id, cats in kind.candidates(task, records, maps, cfg.seed).items():
                out.setdefault(image_id, set()).update(cats)
    return {k: sorted(v) for k, v in sorted(out.items())}
