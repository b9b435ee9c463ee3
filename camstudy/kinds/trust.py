"""Trust, the paper's second study: a worker sees two models' explanations of the same
correct prediction side by side, named "Model 1" and "Model 2" in random order, and rates
on a 5-point scale which model seems more reliable.

Plan: images where both models' top-1 class falls in the same labelled category; per
method, one item pairing the two models' explanations of that category (the stronger
model's first; the server randomises the sides); optionally a photo-only baseline.
Attention checks: the same explanation on both sides, whose only sensible answer is 0.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from camstudy.contracts import ROLES, TRUST_SCALE, Method, ModelRole, PlanItem, TaskKind, explanation_id, photo_id
from camstudy.kinds.base import (
    KEPT,
    Analysis,
    AnswerRejected,
    Display,
    Outcome,
    PlanContext,
    Scored,
    StudyKind,
    Widget,
    WidgetType,
    known_to_both,
    tilted_distribution,
)
from camstudy.tomlconfig import Fields


@dataclass(frozen=True)
class TrustConfig:
    attention_checks: int = 4
    max_images: int = 0
    baseline: bool = False  # also pair the two photos: the trust rating without explanations


class Trust(StudyKind):
    name = TaskKind.TRUST
    words = "trust"
    summary = "You will see two models' explanations side by side and rate which model seems more reliable."
    display = Display(
        images=2,
        alt="Model {n}'s explanation",
        caption="Model {n}",
        object_line="Both models named the object: {object}.",
    )
    widget = Widget(WidgetType.SCALE, TRUST_SCALE)
    question = TRUST_SCALE.question
    design = "within"
    columns = ("model_left", "model_right", "stimulus_ids", "answer", "correct", "score_stronger")
    analysis = Analysis(
        outcome=Outcome.SCALE,
        tables=("trust_by_method", "trust_score_shares"),
        agreement_level="ordinal",
        agreement_variable="trust score as answered on screen (sides randomised per participant, not re-signed)",
        score_column="score_stronger",
    )

    # -------------------------------------------------------------- the stimulus stage

    def parse_config(self, table: Mapping[str, Any] | None) -> TrustConfig | None:
        if table is None:
            return None
        f = Fields(table, f"tasks.{self.name}")
        cfg = TrustConfig(
            attention_checks=f.get("attention_checks", int, 4, lambda v: v >= 0, "must be an integer >= 0"),
            max_images=f.get("max_images", int, 0, lambda v: v >= 0, "must be an integer >= 0 (0: all)"),
            baseline=f.get("baseline", bool, False),
        )
        f.done()
        return cfg

    def candidates(self, task_cfg, records, maps, seed: int) -> dict[str, set[str]]:
        # Trust keeps at most one category of an image, known only once both models predicted.
        return {r.id: set(r.categories) for r in records if r.categories and known_to_both(r, maps, ROLES) is None}

    def cap_after_predictions(self, task_cfg: TrustConfig) -> int:
        return task_cfg.max_images

    def plan(self, ctx: PlanContext) -> list[PlanItem]:
        kept = self._select(ctx)
        for r, cat in kept:
            ctx.needed.setdefault(r.id, set()).add(cat)
        items = self._items(ctx, kept)
        return items + self._checks(ctx, items)

    def _select(self, ctx: PlanContext) -> list[tuple[Any, str]]:
        task, decisions, maps = ctx.task, ctx.decisions, ctx.maps
        eligible = []
        for r in ctx.records:
            if not r.categories:
                decisions[r.id][self.name] = "no labelled category"
                continue
            if (why := known_to_both(r, maps, ROLES)) is not None:
                decisions[r.id][self.name] = why
                continue
            hits = {}
            for role in ROLES:
                top1 = ctx.predictions[role][r.id].top1
                hits[role] = maps[role].category_of(top1, r.categories)
                if hits[role] is None:
                    name = maps[role].class_names[top1]
                    decisions[r.id][self.name] = f"the {role} model predicts {name!r}, not a labelled category"
                    break
            else:
                if hits["stronger"] != hits["weaker"]:
                    decisions[r.id][self.name] = (
                        f"the models predict different categories ({hits['stronger']}, {hits['weaker']})"
                    )
                else:
                    eligible.append((r, hits["stronger"]))
        order = eligible[:]
        ctx.rng.shuffle(order)
        kept = []
        for r, cat in order:
            if task.max_images and len(kept) >= task.max_images:
                decisions[r.id][self.name] = f"over max_images ({task.max_images})"
            else:
                kept.append((r, cat))
                decisions[r.id][self.name] = KEPT
        return sorted(kept, key=lambda rc: rc[0].id)

    def _items(self, ctx: PlanContext, kept) -> list[PlanItem]:
        items: list[PlanItem] = []
        for r, cat in kept:
            methods = list(ctx.cfg.methods) + ([Method.PHOTO] if ctx.task.baseline else [])
            for method in methods:
                if method == Method.PHOTO:
                    ctx.photos.append(r.id)
                    stim = {role: photo_id(r.id) for role in ROLES}
                else:
                    stim = {role: explanation_id(r.id, role, method, cat) for role in ROLES}
                items.append(
                    {
                        "item_id": f"trust__{r.id}__{method}__{cat}",
                        "task": self.name,
                        "image_id": r.id,
                        "category": cat,
                        "method": method,
                        "stimulus_ids": [stim[ModelRole.STRONGER], stim[ModelRole.WEAKER]],  # stronger first
                        "is_attention_check": False,
                    }
                )
        return items

    def _checks(self, ctx: PlanContext, planned: list[PlanItem]) -> list[PlanItem]:
        """The same visualization on both sides: the only sensible answer is 0 ("equally")."""
        pool = [it for it in planned if it["method"] != Method.PHOTO]
        n = ctx.task.attention_checks
        if not pool or not n:
            return []
        picks = ctx.rng.sample(pool, n) if n <= len(pool) else [pool[i % len(pool)] for i in range(n)]
        items: list[PlanItem] = []
        for i, it in enumerate(picks):
            shown = it["stimulus_ids"][i % 2]  # alternate which model's visualization is repeated
            items.append(
                {
                    **{k: it[k] for k in ("image_id", "category", "method")},  # type: ignore[misc]
                    "item_id": f"trust__check{i:03d}__{it['image_id']}",
                    "task": self.name,
                    "stimulus_ids": [shown, shown],
                    "expected_answer": 0,
                    "is_attention_check": True,
                }
            )
        return items

    # -------------------------------------------------------------- the study server

    def instructions_html(self) -> str:
        from html import escape

        anchors = TRUST_SCALE.anchors
        return (
            '<p>Two computer models, "Model 1" and "Model 2", looked at the same photo and both named the same '
            "object.\n    Each trial shows, side by side, where each model looked to decide: the coloured or visible "
            "parts are what it used.</p>\n"
            "    <p><strong>Your task:</strong> from what they looked at, rate which model seems more reliable, on a "
            f'scale from\n    "{escape(anchors[0])}" (left) to "{escape(anchors[-1])}" (right); the middle means '
            f"{escape(anchors[1].lower())}.</p>\n"
            '    <p class="keys">You can click a point of the scale or press its number key (<kbd>1</kbd> to '
            f"<kbd>{len(TRUST_SCALE.points)}</kbd>, left to right).</p>"
        )

    def layout(self, item, flip: bool) -> dict:
        # Counterbalancing: the stronger model is "Model 1" on half of the trials. "object":
        # the class both models predicted, named on the trial as in the paper's trust study;
        # it is the same for either side.
        stronger, weaker = item.stimulus_ids
        return {
            "model_1": ModelRole.WEAKER if flip else ModelRole.STRONGER,
            "stimuli": [weaker, stronger] if flip else [stronger, weaker],
            "object": item.category,
        }

    def trial_fields(self, layout) -> dict:
        return {"object": layout["object"]} if layout.get("object") else {}  # plans drawn before it was stored

    def score(self, layout, answer, *, is_attention_check, correct_answer, expected_answer) -> Scored:
        values = TRUST_SCALE.values
        if isinstance(answer, bool) or not isinstance(answer, int) or answer not in values:
            raise AnswerRejected(f"a trust answer is an integer from {min(values)} to {max(values)}")
        if is_attention_check:
            return Scored(str(answer), answer == (expected_answer or 0), None)
        # The answer rates Model 1 against Model 2; re-sign it to favour the stronger model.
        score = answer if layout["model_1"] == ModelRole.STRONGER else -answer
        return Scored(str(answer), None, score)

    def example_text(self, item) -> dict:
        return {
            "object": item.category,
            "explanation": (
                f"Both models named the object in this photo \u201c{item.category}\u201d. Each image shows "
                f"where one model looked to decide. Compare the two: a model that looked at the "
                f"{item.category} itself seems more reliable than one that looked elsewhere. "
                f"There is no right or wrong answer: rate what you see."
            ),
        }

    def practice_feedback(self, item) -> dict:
        return {
            "correct": None,
            "right": (
                f"Thank you. Both models named this object \u201c{item.category}\u201d. In the real trials, "
                f"too, there is no right answer: rate what you see. Now the real trials start."
            ),
        }

    def practice_fields(self, item) -> dict:
        return {"object": item.category}

    # -------------------------------------------------------------- the bots

    def bot_answer(self, trial, truth, profile, draw: random.Random):
        if truth.attention_check:  # the same explanation on both sides: the answer is 0
            return 0 if draw.random() >= profile.attention_failure else draw.choice((-2, -1, 1, 2))
        mean = profile.trust_mean.get(truth.method, profile.default_trust_mean)
        probs = tilted_distribution(TRUST_SCALE.values, mean)
        score = draw.choices(TRUST_SCALE.values, weights=probs)[0]
        return score if truth.stronger_first else -score


KIND = Trust()
