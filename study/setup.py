"""``camstudy study create``: a study from a study config and a stimulus build folder.

The build's ``plan.json`` supplies the items of the config's task and its ``manifest.json``
the stimuli they show; every stimulus file, and its 2x rendering, is checked against its
recorded sha256 before anything is written, so a study never points at a missing or
altered PNG.

Degenerate stimuli: the build scores every explanation stimulus for structure and marks
the (model role, method) pairs most of whose stimuli are checkerboards or blank
(``stimuli.structure``). A study whose items show stimuli of such a pair is refused,
naming the pairs, unless its config says ``allow_degenerate = true``. A build made before
the scores existed has none to check: it is refused too (rebuild it, or set
``allow_degenerate = true`` to use it unchecked). Scoring it here instead would need the
source photos and the models' crops, and torch, which the study server does without.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from camstudy.contracts import BuildFiles, Method
from camstudy.errors import UserError
from study.blinding import served_sizes
from study.models import Item, Stimulus, Study
from study.settings import StudyConfig

PHOTO = Method.PHOTO


class Build(NamedTuple):
    """A finished stimulus build as ``create_study`` reads it."""

    rows: list[dict]  # the manifest rows
    items: list[dict]  # the plan's items
    manifest_sha256: str
    structure: dict | None  # the manifest's structure entry (thresholds, pairs); None in older builds


def read_build(stimuli_dir: Path) -> Build:
    """The manifest rows, plan items, manifest sha256 and structure summary of a finished build."""
    manifest = stimuli_dir / BuildFiles.MANIFEST_JSON
    plan = stimuli_dir / BuildFiles.PLAN
    if not manifest.is_file() or not plan.is_file():
        raise UserError(f"{stimuli_dir}: not a finished stimuli build (needs manifest.json and plan.json)")
    raw = manifest.read_bytes()
    try:
        doc = json.loads(raw)
        rows = doc["rows"]
        items = json.loads(plan.read_text())["items"]
    except (json.JSONDecodeError, KeyError) as e:
        raise UserError(f"{stimuli_dir}: unreadable manifest or plan ({e})") from None
    return Build(rows, items, hashlib.sha256(raw).hexdigest(), doc.get("structure"))


def check_structure(cfg: StudyConfig, build: Build, used: list[str], stimuli_dir: Path) -> None:
    """Refuse stimuli of degenerate (model role, method) pairs, unless ``allow_degenerate``
    (see the module doc): one UserError line that names the pairs."""
    if cfg.allow_degenerate:
        return
    by_id = {r["stimulus_id"]: r for r in build.rows}
    shown = {(by_id[s]["model_role"], by_id[s]["method"]) for s in used if by_id[s]["method"] != PHOTO}
    if build.structure is None or not isinstance(build.structure.get("pairs"), list):
        raise UserError(
            f"{stimuli_dir}: the build has no structure scores (it was made before stimuli were scored for "
            "checkerboards and blank images); rebuild it with `camstudy stimuli build`, or set "
            "allow_degenerate = true in the study config to use it unchecked"
        )
    bad = [p for p in build.structure["pairs"] if p.get("degenerate") and (p["model_role"], p["method"]) in shown]
    if bad:
        names = "; ".join(
            f"{p['method']} of the {p['model_role']} model {p['model']} ({p['degenerate_stimuli']} of "
            f"{p['stimuli']} stimuli {' or '.join(p['why'])})"
            for p in bad
        )
        raise UserError(
            f"the study would show degenerate stimuli (checkerboards or blank images, as scored by the build): "
            f"{names}; leave these methods out of `methods` (or out of the stimulus build), or set "
            "allow_degenerate = true to show them anyway"
        )


def _checked_size(path: Path, sha256: str | None) -> int:
    """The byte size of a stimulus file that still has its recorded sha256."""
    try:
        data = path.read_bytes()
    except OSError:
        raise UserError(f"stimulus file missing: {path}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(f"stimulus file changed since the build (sha256 mismatch): {path}")
    return len(data)


def select_items(cfg: StudyConfig, items: list[dict]) -> list[dict]:
    """The plan's items of the config's task, restricted to the config's methods."""
    mine = [it for it in items if it["task"] == cfg.task]
    if not mine:
        raise UserError(f"the stimuli hold no {cfg.task} items; was the task planned in the stimulus config?")
    methods = {it["method"] for it in mine if not it["is_attention_check"]}
    if cfg.methods:
        unknown = sorted(set(cfg.methods) - methods)
        if unknown:
            raise UserError(
                f"methods: {', '.join(unknown)} not among the stimuli's methods ({', '.join(sorted(methods))})"
            )
        mine = [it for it in mine if it["is_attention_check"] or it["method"] in cfg.methods]
    if cfg.attention_checks and not any(it["is_attention_check"] for it in mine):
        raise UserError("attention_checks: the stimuli hold no attention-check items for this task")
    return mine


def conditions(cfg: StudyConfig, items: list[Item] | list[dict]) -> list[str]:
    """The between-subject cells: one per method, or a single cell for a within design."""
    if cfg.design == "within":
        return ["all"]
    get = (
        (lambda it: (it["method"], it["is_attention_check"]))
        if items and isinstance(items[0], dict)
        else (lambda it: (it.method, it.is_attention_check))
    )
    return sorted({m for m, check in map(get, items) if not check})


def create_study(session: Session, cfg: StudyConfig, stimuli_dir: Path) -> Study:
    """Insert the study, its stimuli and its items; raise UserError before writing anything."""
    if session.scalar(select(Study.id).where(Study.slug == cfg.slug)) is not None:
        raise UserError(f"a study with slug {cfg.slug!r} exists already; set another `slug` in the config")
    build = read_build(stimuli_dir)
    items = select_items(cfg, build.items)
    by_id = {r["stimulus_id"]: r for r in build.rows}
    used = sorted({s for it in items for s in it["stimulus_ids"]})
    sizes, sizes_2x = {}, {}
    for sid in used:
        row = by_id.get(sid)
        if row is None:
            raise UserError(f"item stimulus {sid!r} is not in {stimuli_dir}/manifest.json")
        sizes[sid] = _checked_size(stimuli_dir / row["file"], row["sha256"])
        if row.get("file_2x"):  # builds before the 2x files have none
            sizes_2x[sid] = _checked_size(stimuli_dir / row["file_2x"], row.get("sha256_2x"))
    check_structure(cfg, build, used, stimuli_dir)
    groups = [it["stimulus_ids"] for it in items]
    padded = served_sizes(sizes, groups)
    padded_2x = served_sizes(sizes_2x, groups)  # each scale padded per group: its own sizes
    study = Study(
        slug=cfg.slug,
        title=cfg.title,
        kind=cfg.task,
        config_toml=cfg.source_text,
        config_sha256=cfg.sha256,
        settings={**cfg.as_json(), "conditions": conditions(cfg, items)},
        stimuli_dir=str(stimuli_dir.resolve()),
        manifest_sha256=build.manifest_sha256,
        secret=secrets.token_hex(32),
        tally={},
    )
    session.add(study)
    session.flush()
    # Rows in random order: row ids must not follow the file names (which hold model,
    # method and category), should they ever reach a page.
    order = list(used)
    random.SystemRandom().shuffle(order)
    for sid in order:
        r = by_id[sid]
        session.add(
            Stimulus(
                study_id=study.id,
                stimulus_id=sid,
                file=r["file"],
                sha256=r["sha256"],
                method=r["method"],
                model=r["model"],
                model_role=r["model_role"],
                provenance=r,
                served_size=padded[sid],
                file_2x=r.get("file_2x") or None,
                served_size_2x=padded_2x.get(sid),
            )
        )
    for it in items:
        session.add(
            Item(
                study_id=study.id,
                item_id=it["item_id"],
                task=it["task"],
                image_id=it["image_id"],
                category=it["category"],
                method=it["method"],
                model_role=it.get("model_role"),
                stimulus_ids=it["stimulus_ids"],
                options=it.get("options"),
                correct_answer=it.get("correct_answer"),
                expected_answer=it.get("expected_answer"),
                is_attention_check=it["is_attention_check"],
            )
        )
    return study
