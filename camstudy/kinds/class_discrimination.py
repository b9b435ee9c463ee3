"""Class discrimination, the paper's first study: a worker sees one explanation of an image
that holds two object categories and says which of the two it shows.

Plan: images with exactly two labelled categories, both known to both models; one item
per (image, category, method, model), whose options are the two categories and whose
correct answer is the explained one; optionally at most ``max_images`` images, balanced
so no category is used more often than the rarest. Attention checks: the photo itself with
one of its categories and an absurd one, which anyone looking answers right.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from camstudy.contracts import ROLES, Method, ModelRole, PlanItem, TaskKind, explanation_id, photo_id
from camstudy.errors import UserError
from camstudy.kinds.base import (
    KEPT,
    Analysis,
    ChoiceKind,
    Display,
    Outcome,
    PlanContext,
    known_to_both,
)
from camstudy.tomlconfig import Fields

# Categories no photo of the demo set holds, for the attention checks' wrong option.
DEFAULT_ABSURD = ("airplane", "pizza", "submarine", "volcano", "violin", "lighthouse", "cactus", "tractor")


@dataclass(frozen=True)
class ClassDiscriminationConfig:
    attention_checks: int = 4
    max_images: int = 0  # 0: all eligible images
    balance_categories: bool = True
    absurd_categories: tuple[str, ...] = DEFAULT_ABSURD


def _non_negative(v: int) -> bool:
    return v >= 0


class ClassDiscrimination(ChoiceKind):
    name = TaskKind.CLASS_DISCRIMINATION
    words = "class discrimination"
    summary = "You will see highlighted evidence from an image and say which of two object categories it shows."
    display = Display(images=1, alt="the visible evidence")
    question = "Which object does the visible evidence show?"
    design = "between"
    columns = ("model", "model_role", "stimulus_ids", "options", "correct_answer", "answer", "correct")
    analysis = Analysis(
        outcome=Outcome.ACCURACY,
        tables=("accuracy_by_method", "accuracy_by_model_role", "accuracy_by_method_model_role"),
        agreement_level="nominal",
        agreement_variable="right or wrong within each item (chance from the item's own two options)",
        chance=None,
    )

    # -------------------------------------------------------------- the stimulus stage

    def parse_config(self, table: Mapping[str, Any] | None) -> ClassDiscriminationConfig | None:
        if table is None:
            return None
        f = Fields(table, f"tasks.{self.name}")
        if "baseline" in f.table:
            raise UserError(
                f"tasks.{self.name}.baseline: not available: both categories are visible "
                "in a photo-only item, so it has no correct answer; use it under [tasks.trust]"
            )
        absurd = f.get(
            "absurd_categories",
            list,
            list(DEFAULT_ABSURD),
            lambda v: len(v) > 0 and all(isinstance(s, str) for s in v),
            "must be a non-empty list of names",
        )
        cfg = ClassDiscriminationConfig(
            attention_checks=f.get("attention_checks", int, 4, _non_negative, "must be an integer >= 0"),
            max_images=f.get("max_images", int, 0, _non_negative, "must be an integer >= 0 (0: all)"),
            balance_categories=f.get("balance_categories", bool, True),
            absurd_categories=tuple(absurd),
        )
        f.done()
        return cfg

    def candidates(self, task_cfg, records, maps, seed: int) -> dict[str, set[str]]:
        # The selection uses no predictions and is the first draw of the plan's generator,
        # so a fresh generator of the same seed gives the plan's own images.
        scratch: dict[str, dict] = {r.id: {} for r in records}
        return {r.id: set(r.categories) for r in self._select(task_cfg, records, maps, scratch, random.Random(seed))}

    def plan(self, ctx: PlanContext) -> list[PlanItem]:
        kept = self._select(ctx.task, ctx.records, ctx.maps, ctx.decisions, ctx.rng)
        for r in kept:
            ctx.needed.setdefault(r.id, set()).update(r.categories)
        return self._items(ctx, kept) + self._checks(ctx)

    def _select(self, task: ClassDiscriminationConfig, records, maps, decisions, rng: random.Random) -> list:
        eligible = []
        for r in records:
            if len(r.categories) != 2:
                decisions[r.id][self.name] = f"has {len(r.categories)} categories; needs exactly 2"
            elif (why := known_to_both(r, maps, ROLES)) is not None:
                decisions[r.id][self.name] = why
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
                decisions[r.id][self.name] = f"over max_images ({task.max_images})"
            elif cap is not None and any(counts[c] >= cap for c in r.categories):
                full = [c for c in r.categories if counts[c] >= cap]
                decisions[r.id][self.name] = f"dropped to balance categories ({full[0]!r} already has {cap})"
            else:
                counts.update(r.categories)
                kept.append(r)
                decisions[r.id][self.name] = KEPT
        return sorted(kept, key=lambda r: r.id)

    def _items(self, ctx: PlanContext, kept: list) -> list[PlanItem]:
        items: list[PlanItem] = []
        for r in kept:
            for cat in r.categories:
                for method in ctx.cfg.methods:
                    for role in ROLES:
                        sid = explanation_id(r.id, role, method, cat)
                        items.append(
                            {
                                "item_id": f"cd__{sid}",
                                "task": self.name,
                                "image_id": r.id,
                                "category": cat,
                                "method": method,
                                "model_role": role,
                                "model": ctx.cfg.models[role].name,
                                "stimulus_ids": [sid],
                                "options": list(r.categories),
                                "correct_answer": cat,
                                "is_attention_check": False,
                            }
                        )
        return items

    def _checks(self, ctx: PlanContext) -> list[PlanItem]:
        """The photo with one of its categories and an absurd one: anyone looking answers right."""
        n = ctx.task.attention_checks
        pool = [r for r in ctx.records if r.categories and known_to_both(r, ctx.maps, ROLES) is None]
        if n and not pool:
            return []
        rng = ctx.rng
        rng.shuffle(pool)
        items: list[PlanItem] = []
        for i in range(n):
            r = pool[i % len(pool)]
            true = r.categories[i // len(pool) % len(r.categories)]
            absurd = [a for a in ctx.task.absurd_categories if a not in r.categories]
            wrong = absurd[rng.randrange(len(absurd))]
            ctx.photos.append(r.id)
            items.append(
                {
                    "item_id": f"cd__check{i:03d}__{r.id}",
                    "task": self.name,
                    "image_id": r.id,
                    "category": true,
                    "method": Method.PHOTO,
                    "model_role": ModelRole.NONE,
                    "model": "none",
                    "stimulus_ids": [photo_id(r.id)],
                    "options": sorted([true, wrong]),
                    "correct_answer": true,
                    "is_attention_check": True,
                }
            )
        return items

    # -------------------------------------------------------------- the study server

    def instructions_html(self) -> str:
        return (
            "<p>A computer model looked at a photo that shows two kinds of object and was asked for its evidence of\n"
            "    <em>one</em> of them. Each trial shows only that evidence: the parts of the photo the model used stay "
            "visible\n    (or are coloured), the rest is hidden or faded.</p>\n"
            "    <p><strong>Your task:</strong> say which of the two objects the visible evidence shows.</p>\n"
            '    <p class="keys">You can click an option or press its number key (<kbd>1</kbd> or <kbd>2</kbd>).</p>'
        )

    def layout(self, item, flip: bool) -> dict:
        # Counterbalancing: the two options in one order or the other.
        options = list(item.options or [])
        return {"options": options[::-1] if flip else options, "stimuli": list(item.stimulus_ids)}

    def example_text(self, item) -> dict:
        right = item.correct_answer
        other = next((o for o in item.options or [] if o != right), "the other category")
        return {
            "answer": self.numbered_answer(item),
            "explanation": (
                f"This photo shows both a {right} and a {other}. The model was asked for "
                f"the evidence of \u201c{right}\u201d: the parts it kept visible are where it "
                f"found that evidence. So the answer is \u201c{right}\u201d."
            ),
        }

    def practice_feedback(self, item) -> dict:
        return {
            "correct": item.correct_answer,
            "right": "Correct! Now the real trials start.",
            "wrong": (
                f"Not quite: the model kept visible its evidence of \u201c{item.correct_answer}\u201d. "
                f"Look at which object the visible parts belong to."
            ),
        }

    # -------------------------------------------------------------- the bots

    def accuracy(self, profile, method: str, options) -> float:
        return profile.accuracy.get(method, profile.default_accuracy)


KIND = ClassDiscrimination()
