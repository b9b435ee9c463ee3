"""The study stimulus config: one TOML file, validated field by field.

Example (the shipped ``camstudy/examples/demo.toml``; ``camstudy examples DIR`` copies it out)::

    seed = 2026
    out = "stimuli-out"              # relative to this file's folder; --out overrides
    methods = ["guided_backprop", "guided_gradcam", "gradcam"]   # no Deconvnet for this pair (see docs)
    display_size = 224               # every PNG is display_size x display_size
    batch_size = 8
    device = "auto"

    [models.stronger]
    name = "efficientnet_lite2"      # registry name; optional: weights = "path", layer = "..."
    [models.weaker]
    name = "mobilenet_v2"

    [source]
    type = "demo"                    # or folder / csv / voc, with their own keys

    [categories]                     # category -> class indices ("a-b" ranges allowed)
    cat = ["281-285"]

    [tasks.class_discrimination]     # present = planned
    attention_checks = 4
    [tasks.trust]
    attention_checks = 4
    baseline = true

    [render]
    colormap = "jet"
    alpha = 0.5

Every error names the field and the problem, e.g. ``tasks.trust.attention_checks: must be
an integer >= 0, got 'four'``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camstudy.contracts import MAX_RANK, rank_of
from camstudy.errors import UserError
from camstudy.kinds import KINDS
from camstudy.kinds.class_discrimination import ClassDiscriminationConfig
from camstudy.kinds.trust import TrustConfig
from camstudy.tomlconfig import Fields, load_toml, show
from gradcam import ALL_METHODS, is_captum

DEFAULT_METHODS = ("guided_backprop", "guided_gradcam", "deconvnet", "deconv_gradcam", "gradcam")
ROLES = ("stronger", "weaker")


@dataclass(frozen=True)
class ModelConfig:
    role: str
    name: str
    weights: str | None = None
    layer: str | None = None
    categories: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderConfig:
    colormap: str = "jet"
    alpha: float = 0.5


@dataclass(frozen=True)
class StimulusConfig:
    """A validated config. ``sha256`` fingerprints what decides the stimuli' pixels and plan."""

    path: Path
    seed: int
    out: Path
    methods: tuple[str, ...]
    display_size: int
    batch_size: int
    device: str
    models: dict[str, ModelConfig]
    source: dict[str, Any]
    categories: dict[str, list]
    tasks: dict[str, Any]  # kind name -> its config (camstudy.kinds), for the kinds planned
    render: RenderConfig
    sha256: str

    @property
    def class_discrimination(self) -> ClassDiscriminationConfig | None:
        return self.tasks.get("class_discrimination")

    @property
    def trust(self) -> TrustConfig | None:
        return self.tasks.get("trust")

    def categories_for(self, role: str) -> dict[str, list]:
        """The global category map with the model's own entries on top."""
        return {**self.categories, **self.models[role].categories}


def _non_negative(v: int) -> bool:
    return v >= 0


def load_config(path: str | Path) -> StimulusConfig:
    """Read and validate a stimulus config; every problem is a one-line :class:`UserError`."""
    path = Path(path)
    return parse_config(load_toml(path), path)


def parse_config(raw: dict, path: Path) -> StimulusConfig:
    """Validate an already-parsed TOML document (``path`` anchors relative paths)."""
    top = Fields(raw, "")
    seed = top.get("seed", int, 0)
    out = top.get("out", str, "stimuli-out", lambda s: s.strip() != "", "must be a folder name")
    methods = tuple(top.get("methods", list, list(DEFAULT_METHODS)))
    for m in methods:
        _check_method(m)
    if not methods or len(set(methods)) != len(methods):
        raise UserError("methods: must be a non-empty list without repeats")
    display = top.get("display_size", int, 224, lambda v: 32 <= v <= 2048, "must be an integer from 32 to 2048")
    batch = top.get("batch_size", int, 8, lambda v: v >= 1, "must be an integer >= 1")
    device = top.get("device", str, "auto")

    models_t = Fields(top.table_of("models"), "models")
    models = {role: _model(models_t.table_of(role), role) for role in ROLES}
    models_t.done()

    source = top.table_of("source")
    if not isinstance(source.get("type"), str):
        raise UserError("source.type: missing (folder, csv, voc or demo)")
    categories = top.table_of("categories", {})
    for name, spec in categories.items():
        if not isinstance(spec, list):
            raise UserError(f"categories.{name}: must be a list of class indices or 'a-b' ranges, got {show(spec)}")
        if rank_of(name) is not None:
            raise UserError(f"categories.{name}: reserved: top1 to top{MAX_RANK} name a model's own ranked classes")

    tasks = Fields(top.table_of("tasks"), "tasks")
    planned = {}
    for name, kind in KINDS.items():
        task_cfg = kind.parse_config(tasks.table_of(kind.config_table, None))
        if task_cfg is not None:
            planned[name] = task_cfg
    tasks.done()
    if not planned:
        tables = " and ".join(f"[tasks.{k.config_table}]" for k in KINDS.values())
        raise UserError(f"tasks: plan at least one of {tables}")

    render_t = Fields(top.table_of("render", {}), "render")
    render = RenderConfig(
        colormap=render_t.get("colormap", str, "jet"),
        alpha=float(render_t.get("alpha", (int, float), 0.5, lambda a: 0 <= a <= 1, "must be a number in [0, 1]")),
    )
    render_t.done()
    top.done()
    return StimulusConfig(
        path=path,
        seed=seed,
        out=Path(os.path.normpath(path.parent / out)),
        methods=methods,
        display_size=display,
        batch_size=batch,
        device=device,
        models=models,
        source=source,
        categories=categories,
        tasks=planned,
        render=render,
        sha256=_fingerprint(raw),
    )


def _check_method(m) -> None:
    """A method of the engine (``gradcam.ALL_METHODS``) or ``captum:<Class>``, an input
    attribution class of the installed captum."""
    if is_captum(m):
        from gradcam.captum_adapter import attribution_class

        try:
            attribution_class(m)
        except ValueError as e:  # CaptumMissing too
            raise UserError(f"methods: {e}") from None
    elif m not in ALL_METHODS:
        raise UserError(f"methods: unknown method {show(m)}; choose from {', '.join(ALL_METHODS)} or captum:<Class>")


def _model(table: dict, role: str) -> ModelConfig:
    f = Fields(table, f"models.{role}")
    cfg = ModelConfig(
        role=role,
        name=f.get("name", str, ..., lambda s: s.strip() != "", "must be a model name"),
        weights=f.get("weights", str, None),
        layer=f.get("layer", str, None),
        categories=f.table_of("categories", {}),
    )
    f.done()
    return cfg


def _fingerprint(raw: dict) -> str:
    """sha256 of the config's content, normalized (key order and formatting do not count).

    ``out`` and ``device`` are left out: they change where the stimuli are made, not what
    they are. ``batch_size`` stays in: batches are the unit of work and of sharding, and
    the same batches give bit-identical pixels on the same kind of device.
    """
    content = {k: v for k, v in raw.items() if k not in ("out", "device")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
