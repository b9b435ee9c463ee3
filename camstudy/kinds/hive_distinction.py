"""HIVE distinction (Kim et al., ECCV 2022): a worker sees one model's explanations of its
four most probable classes for a photo, side by side, each captioned with its class, and
picks the class the model really predicted. Chance is 25%: an explanation that shows what
the model saw lets a worker tell its real prediction from the runners-up.

Plan: images with a labelled category known to both models (so the manifest can say
whether the prediction was right), optionally at most ``max_images`` of them; one item per
(image, method, model) whose four stimuli explain the model's top-1 to top-4 classes (rank
targets, resolved from each model's own logits at render time) and whose options are those
classes' names, top-1 first. Images whose four names are not distinct (ImageNet has a few
repeated names) are dropped. The server rotates the four images and their names together,
so the right answer is in each place equally often. Attention checks: the photo in all
four places, captioned with one of its categories and three absurd ones.

A worker can also answer from the photo alone when the model is right (pick the object
that is there); the report's accuracy is therefore an upper bound on what the explanations
alone convey, unless the images mix right and wrong predictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from camstudy.contracts import ROLES, Method, ModelRole, PlanItem, TaskKind, explanation_id, photo_id, rank_target
from camstudy.kinds.base import (
    KEPT,
    Analysis,
    ChoiceKind,
    Display,
    Outcome,
    PlanContext,
    known_to_both,
)
from camstudy.kinds.class_discrimination import DEFAULT_ABSURD
from camstudy.tomlconfig import Fields

CHOICES = 4
RANKS = tuple(rank_target(k) for k in range(1, CHOICES + 1))  # ("top1", ..., "top4")


@dataclass(frozen=True)
class HiveDistinctionConfig:
    attention_checks: int = 4
    max_images: int = 0  # 0: all eligible images
    absurd_categories: tuple[str, ...] = DEFAULT_ABSURD


class HiveDistinction(ChoiceKind):
    name = TaskKind.HIVE_DISTINCTION
    words = "HIVE distinction"
    summary = (
        "You will see four explanations of one photo, each showing where a model looked for a "
        "different object, and pick the object the model really predicted."
    )
    display = Display(images=CHOICES, alt="explanation {n}, for {option}", caption="{n}. {option}")
    question = "Each image shows where the model looked for one object. Which object did the model predict?"
    design = "between"
    arrangements = CHOICES
    columns = ("model", "model_role", "stimulus_ids", "options", "correct_answer", "answer", "correct")
    analysis = Analysis(
        outcome=Outcome.ACCURACY,
        tables=("accuracy_by_method", "accuracy_by_model_role", "accuracy_by_method_model_role"),
        agreement_level="nominal",
        agreement_variable="right or wrong within each item (two different wrong options count as agreeing)",
        chance=1 / CHOICES,
        right_answer="picked the model's real prediction",
    )

    # -------------------------------------------------------------- the stimulus stage

    def parse_config(self, table: Mapping[str, Any] | None) -> HiveDistinctionConfig | None:
        if table is None:
            return None
        f = Fields(table, f"tasks.{self.name}")
        absurd = f.get(
            "absurd_categories",
            list,
            list(DEFAULT_ABSURD),
            lambda v: len(v) >= CHOICES - 1 and all(isinstance(s, str) for s in v),
            f"must be a list of at least {CHOICES - 1} names",
        )
        cfg = HiveDistinctionConfig(
            attention_checks=f.get("attention_checks", int, 4, lambda v: v >= 0, "must be an integer >= 0"),
            max_images=f.get("max_images", int, 0, lambda v: v >= 0, "must be an integer >= 0 (0: all)"),
            absurd_categories=tuple(absurd),
        )
        f.done()
        return cfg

    def _eligible(self, records, maps) -> list:
        return [r for r in records if r.categories and known_to_both(r, maps, ROLES) is None]

    def candidates(self, task_cfg, records, maps, seed: int) -> dict[str, set[str]]:
        # The rank targets are resolved from the logits when rendered: known before predicting.
        return {r.id: set(RANKS) for r in self._eligible(records, maps)}

    def cap_after_predictions(self, task_cfg: HiveDistinctionConfig) -> int:
        return task_cfg.max_images

    def plan(self, ctx: PlanContext) -> list[PlanItem]:
        order = []
        for r in ctx.records:
            if not r.categories:
                ctx.decisions[r.id][self.name] = "no labelled category"
            elif (why := known_to_both(r, ctx.maps, ROLES)) is not None:
                ctx.decisions[r.id][self.name] = why
            elif (why := self._repeated_names(ctx, r)) is not None:
                ctx.decisions[r.id][self.name] = why
            else:
                order.append(r)
        ctx.rng.shuffle(order)
        kept = []
        for r in order:
            if ctx.task.max_images and len(kept) >= ctx.task.max_images:
                ctx.decisions[r.id][self.name] = f"over max_images ({ctx.task.max_images})"
            else:
                kept.append(r)
                ctx.decisions[r.id][self.name] = KEPT
                ctx.needed.setdefault(r.id, set()).update(RANKS)
        kept.sort(key=lambda r: r.id)
        return self._items(ctx, kept) + self._checks(ctx, kept)

    def _names(self, ctx: PlanContext, role: str, image_id: str) -> list[str]:
        top = ctx.predictions[role][image_id].top5[:CHOICES]
        return [ctx.maps[role].class_names[c] for c, _p in top]

    def _repeated_names(self, ctx: PlanContext, r) -> str | None:
        for role in ROLES:
            names = self._names(ctx, role, r.id)
            if len(names) < CHOICES:
                return f"the {role} model has fewer than {CHOICES} classes"
            if len(set(names)) < CHOICES:
                return f"the {role} model's top-{CHOICES} classes repeat a name ({', '.join(names)})"
        return None

    def _items(self, ctx: PlanContext, kept: list) -> list[PlanItem]:
        items: list[PlanItem] = []
        for r in kept:
            for method in ctx.cfg.methods:
                for role in ROLES:
                    names = self._names(ctx, role, r.id)
                    items.append(
                        {
                            "item_id": f"hd__{r.id}__{role}__{method}",
                            "task": self.name,
                            "image_id": r.id,
                            # What the photo holds (the prediction is the item's correct answer).
                            "category": r.categories[0],
                            "method": method,
                            "model_role": role,
                            "model": ctx.cfg.models[role].name,
                            "stimulus_ids": [explanation_id(r.id, role, method, t) for t in RANKS],
                            "options": names,
                            "correct_answer": names[0],
                            "is_attention_check": False,
                        }
                    )
        return items

    def _checks(self, ctx: PlanContext, kept: list) -> list[PlanItem]:
        """The photo in all four places, captioned with a category it holds and three absurd
        ones: anyone looking picks the object that is there."""
        n = ctx.task.attention_checks
        pool = list(kept)
        if not n or not pool:
            return []
        rng = ctx.rng
        rng.shuffle(pool)
        items: list[PlanItem] = []
        for i in range(n):
            r = pool[i % len(pool)]
            true = r.categories[i // len(pool) % len(r.categories)]
            absurd = [a for a in ctx.task.absurd_categories if a not in r.categories]
            options = [true, *rng.sample(absurd, CHOICES - 1)]
            ctx.photos.append(r.id)
            items.append(
                {
                    "item_id": f"hd__check{i:03d}__{r.id}",
                    "task": self.name,
                    "image_id": r.id,
                    "category": true,
                    "method": Method.PHOTO,
                    "model_role": ModelRole.NONE,
                    "model": "none",
                    "stimulus_ids": [photo_id(r.id)] * CHOICES,
                    "options": options,
                    "correct_answer": true,
                    "is_attention_check": True,
                }
            )
        return items

    # -------------------------------------------------------------- the study server

    def instructions_html(self) -> str:
        return (
            "<p>A computer model looked at a photo and ranked the objects it might show. Each trial shows four "
            "images of\n    the same photo: each one shows where the model looked for one of its four best "
            "guesses, named under it.</p>\n"
            "    <p><strong>Your task:</strong> say which of the four objects the model really predicted (its best "
            "guess).</p>\n"
            '    <p class="keys">You can click an option or press its number key (<kbd>1</kbd> to <kbd>4</kbd>).</p>'
        )

    def layout(self, item, flip: int) -> dict:
        # Counterbalancing: the four images and their names rotated together by ``flip``
        # places (0 to 3), so the right answer is first, second, third and fourth equally often.
        k = int(flip) % CHOICES
        options, stimuli = list(item.options or []), list(item.stimulus_ids)
        return {"options": options[k:] + options[:k], "stimuli": stimuli[k:] + stimuli[:k]}

    def example_text(self, item) -> dict:
        right = item.correct_answer
        return {
            "answer": self.numbered_answer(item),
            "explanation": (
                f"The model predicted \u201c{right}\u201d. Each image shows where it looked for one of its "
                f"four best guesses; the one for its real prediction usually covers the object it saw. "
                f"So the answer is \u201c{right}\u201d."
            ),
        }

    def practice_feedback(self, item) -> dict:
        return {
            "correct": item.correct_answer,
            "right": "Correct! Now the real trials start.",
            "wrong": (
                f"Not quite: the model predicted \u201c{item.correct_answer}\u201d. Look for the image whose "
                f"evidence covers what the model saw."
            ),
        }

    # -------------------------------------------------------------- the bots

    def accuracy(self, profile, method: str, options) -> float:
        # A profile without this kind's accuracies answers at chance.
        return profile.kind_accuracy.get(str(self.name), {}).get(method, 1 / len(options))


KIND = HiveDistinction()
