"""What a study kind declares, once: the contract every stage reads instead of testing the
kind's name.

A kind (one module in this package, one :class:`StudyKind` subclass) says

- its config table under ``[tasks]`` and how to read it (:meth:`StudyKind.parse_config`);
- which stimuli it needs from a build and its plan rule (:meth:`StudyKind.plan`,
  :meth:`StudyKind.candidates`);
- what a trial shows (:attr:`StudyKind.display`), how it is counterbalanced
  (:meth:`StudyKind.layout`) and what the page gets beside the images
  (:meth:`StudyKind.trial_fields`);
- the question and the answer widget (:attr:`StudyKind.question`, :attr:`StudyKind.widget`);
- how an answer is checked and scored, with its correct answer or none
  (:meth:`StudyKind.score`);
- the worked example and the practice feedback (:meth:`StudyKind.example_text`,
  :meth:`StudyKind.practice_feedback`);
- how the bots answer under each profile (:meth:`StudyKind.bot_answer`,
  :meth:`StudyKind.random_answer`);
- the export's answer columns and the analysis it gets (:attr:`StudyKind.columns`,
  :attr:`StudyKind.analysis`).

Like :mod:`camstudy.contracts`, this package imports no stage, no torch, no Flask and no
pandas: the planner, the server, the bots and the analysis all import it. The plan rules
take the stimulus stage's records, predictions and category maps by their attributes
(``id``, ``categories``; ``top1``; ``classes()``, ``category_of()``, ``class_names``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from camstudy.contracts import PlanItem, Scale, TaskKind

KEPT = "kept"  # a plan decision: the image is used by this kind


class Outcome(StrEnum):
    """What an answer is, for the analysis: right or wrong (accuracy against chance), or a
    point on a scale (scale tests against its midpoint)."""

    ACCURACY = "accuracy"
    SCALE = "scale"


class WidgetType(StrEnum):
    OPTIONS = "options"  # one button per option of the trial (``trial.options``)
    SCALE = "scale"  # one row of N points from the kind's scale, anchored at its ends and middle


@dataclass(frozen=True)
class Display:
    """What a trial shows: ``images`` side by side, each described to screen readers by
    ``alt`` (``{n}``: its 1-based place) and captioned by ``caption`` (None: no caption);
    ``object_line`` (``{object}``), when set, names the trial's object under the images."""

    images: int
    alt: str
    caption: str | None = None
    object_line: str | None = None

    def as_json(self) -> dict:
        return {"images": self.images, "alt": self.alt, "caption": self.caption, "object_line": self.object_line}


@dataclass(frozen=True)
class Widget:
    type: WidgetType
    scale: Scale | None = None

    def as_json(self) -> dict:
        return {"type": str(self.type), "scale": None if self.scale is None else self.scale.as_json()}


@dataclass(frozen=True)
class Analysis:
    """The analysis a kind's answers get.

    ``outcome``: accuracy (the ``correct`` column, against ``chance``; None: one over the
    item's number of options) or scale (``score_column``, against 0). ``agreement_level``
    and ``agreement_variable``: the level of measurement and the variable, in words, that
    inter-rater agreement uses. ``tables``: the report's summary tables for the kind.
    ``right_answer``: what a right answer is, as "Results in words" says it ("workers ...
    in 61.2% of trials")."""

    outcome: Outcome
    tables: tuple[str, ...]
    agreement_level: str
    agreement_variable: str
    chance: float | None = None
    score_column: str | None = None
    right_answer: str = "chose the right category"


@dataclass(frozen=True)
class Scored:
    """An answer as stored: its text, whether it is right (None: no right answer) and its
    score on the kind's scale, signed for the analysis (None: not a scale answer)."""

    text: str
    correct: bool | None
    score: int | None


class AnswerRejected(ValueError):
    """An answer the trial cannot take; the message is the one line the client gets."""


class StudyKind:
    """One study design. Subclasses set the class attributes and override the methods that
    the design needs; the registry (:mod:`camstudy.kinds`) holds one instance of each."""

    name: ClassVar[TaskKind]
    words: ClassVar[str]  # the kind in words, "class discrimination"
    summary: ClassVar[str]  # one sentence for the preview page: what a worker will do
    display: ClassVar[Display]
    widget: ClassVar[Widget]
    question: ClassVar[str]  # asked above every trial
    design: ClassVar[str]  # the default design: "between" (one method per worker) or "within"
    arrangements: ClassVar[int] = 2  # counterbalanced layouts (see layout), drawn equally often
    columns: ClassVar[tuple[str, ...]]  # the export's columns between the shared head and tail
    analysis: ClassVar[Analysis]

    @property
    def config_table(self) -> str:
        """The table under ``[tasks]`` of a stimuli config that plans this kind."""
        return str(self.name)

    def __repr__(self) -> str:
        return f"<study kind {self.name}>"

    # -------------------------------------------------------------- the stimulus stage

    def parse_config(self, table: Mapping[str, Any] | None) -> Any:
        """The kind's config from its ``[tasks.<name>]`` table; None when the table is absent
        (the kind is not planned). Errors are :class:`camstudy.errors.UserError`."""
        raise NotImplementedError

    def candidates(self, task_cfg: Any, records: Sequence, maps: Mapping, seed: int) -> dict[str, set[str]]:
        """Image id -> the categories the plan may ask to explain, before any prediction
        (the build explains these while it predicts); a superset of what :meth:`plan` uses."""
        raise NotImplementedError

    def cap_after_predictions(self, task_cfg: Any) -> int:
        """The number of images the plan keeps among its :meth:`candidates` once the
        predictions are known (0: no such cap). When it is below the number of candidates,
        the build predicts, plans, and then explains only what the plan uses."""
        return 0

    def plan(self, ctx: PlanContext) -> list[PlanItem]:
        """The kind's items (attention checks included); record a decision for every image in
        ``ctx.decisions[image_id][self.name]``, the categories to explain in ``ctx.needed``
        and the photos shown in ``ctx.photos``."""
        raise NotImplementedError

    # -------------------------------------------------------------- the study server

    def instructions_html(self) -> str:
        """The instructions above the worked example, as HTML written here (trusted: no
        user input). A ``<p class="keys">`` paragraph names the number keys; a phone hides it."""
        raise NotImplementedError

    def layout(self, item: Any, flip: int) -> dict:
        """A drawn trial's fixed layout (``stimuli`` in display order and what else the page
        and the scoring need): arrangement ``flip`` (0 to ``arrangements - 1``; the paper's
        kinds have two, so a bool reads as one) of the kind's counterbalanced arrangements."""
        return {"stimuli": list(item.stimulus_ids)}

    def trial_fields(self, layout: Mapping[str, Any]) -> dict:
        """What the page gets of a trial beside its images."""
        return {}

    def score(
        self,
        layout: Mapping[str, Any],
        answer: Any,
        *,
        is_attention_check: bool,
        correct_answer: str | None,
        expected_answer: int | None,
    ) -> Scored:
        """Check ``answer`` (as the client sent it) and score it; :class:`AnswerRejected`
        when the trial cannot take it."""
        raise NotImplementedError

    def example_text(self, item: Any) -> dict:
        """The worked example's words (``answer`` or ``object``, and ``explanation``)."""
        raise NotImplementedError

    def practice_feedback(self, item: Any) -> dict:
        """What the practice trial says after an answer: ``correct`` (None: any answer is
        fine), ``right`` and, when there is a right answer, ``wrong``."""
        raise NotImplementedError

    def practice_fields(self, item: Any) -> dict:
        """What the page gets of the practice trial beside its images and options."""
        return {}

    # -------------------------------------------------------------- the bots

    def random_answer(self, trial: Mapping[str, Any], rng: random.Random) -> Any:
        """The ``random`` profile's answer: uniform over what the widget offers."""
        if self.widget.type is WidgetType.SCALE:
            assert self.widget.scale is not None
            return rng.choice(self.widget.scale.values)
        return rng.choice(trial["options"])

    def bot_answer(self, trial: Mapping[str, Any], truth: Any, profile: Any, draw: random.Random) -> Any:
        """A profile's answer given the trial's truth (``truth.method``, ``truth.correct``,
        ``truth.attention_check``, ``truth.stronger_first``), drawn from ``draw``."""
        raise NotImplementedError


class ChoiceKind(StudyKind):
    """A kind whose answer is one of the trial's options, one of them right (its
    ``correct_answer``): the option buttons, their scoring, the worked example's numbered
    answer and the bots' right-or-wrong draw, shared by class discrimination and HIVE
    distinction. A subclass says how accurate a profile is (:meth:`accuracy`)."""

    widget = Widget(WidgetType.OPTIONS)

    def trial_fields(self, layout) -> dict:
        return {"options": layout["options"]}

    def score(self, layout, answer, *, is_attention_check, correct_answer, expected_answer) -> Scored:
        if not isinstance(answer, str) or answer not in layout["options"]:
            raise AnswerRejected("the answer must be one of the trial's options")
        return Scored(answer, answer == correct_answer, None)

    @staticmethod
    def numbered_answer(item: Any) -> str:
        """The right option as the page numbers it ("2. cat"; 1 when it is not an option)."""
        options = list(item.options or [])
        n = options.index(item.correct_answer) + 1 if item.correct_answer in options else 1
        return f"{n}. {item.correct_answer}"

    def accuracy(self, profile: Any, method: str, options: Sequence[str]) -> float:
        """The probability that ``profile`` picks the right option with ``method``."""
        raise NotImplementedError

    def bot_answer(self, trial, truth, profile, draw: random.Random):
        options = trial["options"]
        if truth.attention_check:
            acc = 1 - profile.attention_failure
        else:
            acc = self.accuracy(profile, truth.method, options)
        wrong = [o for o in options if o != truth.correct]
        return truth.correct if draw.random() < acc or not wrong else draw.choice(wrong)


@dataclass
class PlanContext:
    """What a kind's plan rule reads and writes (see :meth:`StudyKind.plan`)."""

    cfg: Any  # the whole stimuli config (seed, methods, models)
    task: Any  # the kind's own config
    records: list  # sorted by id
    predictions: Mapping[str, Mapping[str, Any]]  # role -> image id -> prediction
    maps: Mapping[str, Any]  # role -> category map
    rng: random.Random
    decisions: dict[str, dict]
    needed: dict[str, set[str]]
    photos: list[str]
    items: list[PlanItem]  # the items planned so far, by earlier kinds and this one


def known_to_both(record: Any, maps: Mapping[str, Any], roles: Sequence[str]) -> str | None:
    """None when every category of the image maps to classes of both models, else why not."""
    for c in record.categories:
        for role in roles:
            if maps[role].classes(c) is None:
                return f"category {c!r} has no class in the {role} model"
    return None


def tilted_distribution(values: Sequence[int], mean: float) -> list[float]:
    """Probabilities over ``values`` (ascending) with the given mean: the maximum-entropy
    (exponentially tilted) distribution, found by bisection on the tilt. The bots draw
    scale answers from it, so a profile's mean answer is the mean it declares."""
    mean = min(max(mean, values[0] + 0.01), values[-1] - 0.01)

    def probs(beta: float) -> list[float]:
        w = [math.exp(beta * s) for s in values]
        return [x / sum(w) for x in w]

    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if sum(p * s for p, s in zip(probs(mid), values, strict=True)) < mean:
            lo = mid
        else:
            hi = mid
    return probs((lo + hi) / 2)
