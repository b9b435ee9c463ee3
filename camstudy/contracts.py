"""The contracts between the stages: names, records and scales that every stage shares.

The stimulus stage writes a build (``manifest.json``, ``plan.json``...), the study server
reads it and serves trials, the bots and the page script answer them, and the analysis
reads the answers back. Each of them needs the same task kinds, modes, model roles,
method names, record keys and answer scales; they are declared here once and imported,
never retyped. This module imports no stage, no torch and no Flask (an import-linter
contract in ``pyproject.toml`` checks it), so the study server and the analysis can use it
without the engine.

The enums are ``StrEnum``: a member *is* its string (``TaskKind.TRUST == "trust"``), so
rows, JSON files and database columns keep plain strings and old files still read.
"""

# No `from __future__ import annotations` here: TypedDict reads NotRequired[...] only from
# evaluated annotations.
from dataclasses import dataclass
from enum import StrEnum
from typing import NotRequired, TypedDict


class TaskKind(StrEnum):
    """The study designs. A study has one kind; a build's plan holds items of several."""

    CLASS_DISCRIMINATION = "class_discrimination"
    TRUST = "trust"
    HIVE_DISTINCTION = "hive_distinction"  # HIVE (Kim et al. 2022): pick the real prediction among four


class Mode(StrEnum):
    """Who a participation is for: real workers, the platform's sandbox, or the researcher's
    own tests (bots, pilots). Only ``live`` answers are analysed by default."""

    LIVE = "live"
    SANDBOX = "sandbox"
    DEBUG = "debug"


class ModelRole(StrEnum):
    """The two models of a pair; ``none`` marks a photo-only stimulus or item."""

    STRONGER = "stronger"
    WEAKER = "weaker"
    NONE = "none"


ROLES: tuple[ModelRole, ModelRole] = (ModelRole.STRONGER, ModelRole.WEAKER)


class Method(StrEnum):
    """The explanation methods the paper's studies show, and ``photo`` (no explanation: the
    attention checks and the trust baseline). The engine offers more (``gradcam.METHODS``);
    a method name is any string the engine or an adapter knows, these are the shared ones."""

    PHOTO = "photo"
    GRADCAM = "gradcam"
    GUIDED_BACKPROP = "guided_backprop"
    GUIDED_GRADCAM = "guided_gradcam"
    DECONVNET = "deconvnet"
    DECONV_GRADCAM = "deconv_gradcam"


PHOTO = Method.PHOTO


def explanation_id(image_id: str, role: str, method: str, category: str) -> str:
    """The stimulus id of one model's explanation of one category of an image."""
    return f"{image_id}__{role}__{method}__{category}"


# An explanation's target is a labelled category (its best class in the model's logits) or
# a rank of the model's own prediction: "top1" is the predicted class, "top4" the fourth.
RANK_TARGET_PREFIX = "top"
MAX_RANK = 5  # the predictions keep the top five


def rank_target(k: int) -> str:
    """The target name of the model's k-th most probable class (1-based)."""
    if not 1 <= k <= MAX_RANK:
        raise ValueError(f"a rank target is 1 to {MAX_RANK}, got {k}")
    return f"{RANK_TARGET_PREFIX}{k}"


def rank_of(target: str) -> int | None:
    """The rank a target names (``"top2"`` -> 2), or None for a category."""
    if target.startswith(RANK_TARGET_PREFIX) and target[len(RANK_TARGET_PREFIX) :].isdigit():
        k = int(target[len(RANK_TARGET_PREFIX) :])
        return k if 1 <= k <= MAX_RANK else None
    return None


def photo_id(image_id: str) -> str:
    """The stimulus id of an image shown as a plain photo."""
    return f"{image_id}__{PHOTO}"


# ------------------------------------------------------------------------------ scales


@dataclass(frozen=True)
class ScalePoint:
    value: int
    label: str


@dataclass(frozen=True)
class Scale:
    """An N-point answer scale, in the order it is shown (left to right), with the labels of
    its ends and middle shown under it. ``values`` is the set a stored answer must be in."""

    name: str
    question: str
    points: tuple[ScalePoint, ...]
    anchors: tuple[str, ...]

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(sorted(p.value for p in self.points))

    def as_json(self) -> dict:
        """What the page script gets from the server (``/api/s/<slug>/plan``'s ``scale``)."""
        return {
            "name": self.name,
            "question": self.question,
            "points": [{"value": p.value, "label": p.label} for p in self.points],
            "anchors": list(self.anchors),
        }


# The paper's trust question on a 5-point scale. Shown left to right from "Model 1 much more"
# to "Model 2 much more"; the stored value keeps its sign: +2 favours Model 1 (the left image).
TRUST_SCALE = Scale(
    name="trust5",
    question="Which model seems more reliable?",
    points=(
        ScalePoint(2, "Model 1 much more reliable"),
        ScalePoint(1, "Model 1 somewhat more reliable"),
        ScalePoint(0, "Equally reliable"),
        ScalePoint(-1, "Model 2 somewhat more reliable"),
        ScalePoint(-2, "Model 2 much more reliable"),
    ),
    anchors=("Model 1 much more reliable", "Equally reliable", "Model 2 much more reliable"),
)

TRUST_VALUES: tuple[int, ...] = TRUST_SCALE.values  # (-2, -1, 0, 1, 2)


# ------------------------------------------------------------------------------ a build's files


class BuildFiles:
    """The file names of a finished stimulus build (``camstudy stimuli build --out DIR``)."""

    MANIFEST_JSON = "manifest.json"
    MANIFEST_CSV = "manifest.csv"
    PARTIAL = "manifest.partial.jsonl"  # rows written so far by an unfinished build
    BUILD = "build.json"  # the run's record: config, versions, timings, warnings
    PLAN = "plan.json"  # the planned items (``PlanItem``) and a decision per image
    PLAN_REPORT = "plan_report.csv"
    STIMULI_DIR = "stimuli"  # the PNGs, ``<stimulus_id>.png`` and ``<stimulus_id>@2x.png``


# ------------------------------------------------------------------------------ records


class ManifestRow(TypedDict):
    """One stimulus of a build (``manifest.json``'s ``rows``; ``manifest.csv`` with ``top5``
    and ``structure`` as JSON strings). Photos have ``model_role = "none"`` and empty model
    fields."""

    stimulus_id: str
    file: str
    sha256: str
    file_2x: str
    sha256_2x: str
    how_2x: str  # "rendered" (drawn at 2x) or "upsampled"
    image_id: str
    image_source: str
    model_role: str  # ModelRole
    model: str
    weights_sha256: str
    layer: str
    layer_grid: str  # "14x14" (h x w) or ""
    layer_layout: str  # channels_first / channels_last / tokens / reshape, or ""
    method: str  # Method or another engine method
    category: str
    target_class: int
    target_name: str
    top5: list[dict]
    display_size: int
    colormap: str
    alpha: float
    config_sha256: str
    code_version: str
    structure: dict | None


MANIFEST_FIELDS: tuple[str, ...] = tuple(ManifestRow.__annotations__)
MANIFEST_JSON_FIELDS: tuple[str, ...] = ("top5", "structure")  # JSON strings in the CSV


class PlanItem(TypedDict):
    """One planned item (``plan.json``'s ``items``): what one trial shows and asks.

    ``stimulus_ids`` are in display order; for trust the stronger model's first (the server
    randomises the sides). ``correct_answer`` is the right option (class discrimination),
    ``expected_answer`` the only sensible one for an attention check (trust: 0)."""

    item_id: str
    task: str  # TaskKind
    image_id: str
    category: str
    method: str
    stimulus_ids: list[str]
    is_attention_check: bool
    model_role: NotRequired[str]
    model: NotRequired[str]
    options: NotRequired[list[str]]
    correct_answer: NotRequired[str]
    expected_answer: NotRequired[int]
