"""The export: a study's answers in long format, one row per answer (what analysis/ reads).

Columns, in order (the study kind's ``columns`` are the task-specific ones):

- every study: ``study, study_kind, mode, participant`` (the stored pseudonym, an HMAC of the
  worker id with the study's secret; ``worker_id`` follows it only with ``raw_ids=True``),
  ``condition, position, item_id, is_attention_check, image_id, method``;
- class discrimination: ``model`` (the name of the model whose explanation was shown; "none"
  for the photo of an attention check), ``model_role`` (stronger | weaker | none),
  ``stimulus_ids, options`` (";"-joined, options in the order shown), ``correct_answer,
  answer, correct``;
- trust: ``model_left, model_right`` ("ROLE:NAME" of the model shown on each side, e.g.
  "stronger:efficientnet_lite2"), ``stimulus_ids`` (left;right), ``answer`` (the rating as
  given, Model 1 = left against Model 2 = right, -2..2), ``correct`` (attention checks only:
  the answer was the expected "equally"), ``score_stronger`` (the answer re-signed so that
  positive favours the stronger model; empty for attention checks);
- every study: ``rt_ms, shown_at, answered_at`` (UTC, ISO 8601 with "+00:00"; ``shown_at`` is
  empty where the browser did not send it), the stimulus provenance ``weights_sha256, layer,
  code_version`` (from the manifest row; trust: left;right) and ``participant_status``
  (active | completed | screened_out: exclusions are for analysis/ to apply);
- then the participant's own columns (:data:`PARTICIPANT_COLUMNS`, the same on each of their
  rows): ``time_on_task_s`` (seconds from consent, when the participant is enrolled, to
  completion or screening out; empty while active), ``questionnaire_strategy,
  questionnaire_difficulty, questionnaire_comments`` (the free text as sent; empty without a
  questionnaire), ``blur_events, focus_events`` (how often the window lost and regained the
  focus during the task), ``hidden_events`` (how often the page was hidden: another tab, a
  minimised window) and ``hidden_s`` (seconds hidden: from each "hidden" to the next
  "visible" or page load, an interval still open at completion ending there; one still open
  while the participant is active is not counted). Events are the browser's, timed by the
  server as they arrive (a lost event is missing here too).

:func:`columns` are the columns every export has had, which ``analysis.load`` requires;
:func:`export_columns` adds the participant's columns (an export written before them still
loads).

Rows are ordered by mode, participant (enrollment order) and position. The module imports
pandas and SQLAlchemy lazily, so the ``camstudy`` command line stays quick to start.

CSV files are safe to open in a spreadsheet: a text cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return (which a spreadsheet would run as a formula; worker
ids and free text come from the crowd) gets a leading ``'``, and so does a text cell that
starts with ``'`` itself, so :func:`unneutralise` (which ``analysis.load`` applies) gives
back exactly what was stored. Numbers (trust answers, scores) are left as they are.
Parquet keeps every value as it is.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from camstudy.contracts import ROLES as CONTRACT_ROLES
from camstudy.errors import UserError
from camstudy.kinds import WidgetType, kind_of

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.orm import Session

    from study.models import Study

FORMATS = ("csv", "parquet")
# Leading characters a spreadsheet reads as the start of a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"
MODE_CHOICES = ("live", "sandbox", "debug", "all")

HEAD = [
    "study",
    "study_kind",
    "mode",
    "participant",
    "condition",
    "position",
    "item_id",
    "is_attention_check",
    "image_id",
    "method",
]
TAIL = ["rt_ms", "shown_at", "answered_at", "weights_sha256", "layer", "code_version", "participant_status"]
QUESTIONNAIRE = ("strategy", "difficulty", "comments")  # the questionnaire's fields (study.participant)
EVENT_COUNTS = ["blur_events", "focus_events", "hidden_events"]
PARTICIPANT_COLUMNS = ["time_on_task_s", *(f"questionnaire_{k}" for k in QUESTIONNAIRE), *EVENT_COUNTS, "hidden_s"]
ROLES = tuple(str(r) for r in CONTRACT_ROLES)


def columns(kind: str, raw_ids: bool = False) -> list[str]:
    """The columns every export of a study of ``kind`` has, in order (what analysis/
    requires); :func:`export_columns` is what an export writes now."""
    head = HEAD[:4] + (["worker_id"] if raw_ids else []) + HEAD[4:]
    return head + list(kind_of(kind).columns) + TAIL


def export_columns(kind: str, raw_ids: bool = False) -> list[str]:
    """The columns :func:`export_rows` writes, in order: :func:`columns`, then the
    participant's (:data:`PARTICIPANT_COLUMNS`)."""
    return columns(kind, raw_ids) + PARTICIPANT_COLUMNS


def iso_utc(t: datetime | None) -> str | None:
    """ISO 8601 in UTC with an explicit "+00:00" (SQLite hands back naive UTC times)."""
    if t is None:
        return None
    return (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)).isoformat()


def find_study(session: Session, study: Study | str) -> Study:
    """The study with this slug (a Study passes through); a UserError naming the known
    slugs when there is none."""
    from sqlalchemy import select

    from study.models import Study

    if isinstance(study, Study):
        return study
    found = session.scalar(select(Study).where(Study.slug == study))
    if found is None:
        known = session.scalars(select(Study.slug).order_by(Study.slug)).all()
        raise UserError(f"no study {study!r} (known: {', '.join(known) or 'none'})")
    return found


def _modes(mode: str | None) -> tuple[str, ...]:
    from study.models import MODES

    if mode is None or mode == "all":
        return MODES
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODE_CHOICES)}, not {mode!r}")
    return (mode,)


def export_rows(session: Session, study: Study | str, mode: str | None = None, raw_ids: bool = False) -> pd.DataFrame:
    """One row per stored answer of ``study`` (a Study or its slug) in long format.

    ``mode``: live, sandbox, debug, or None / "all" for every mode (the ``mode`` column tells
    them apart). ``raw_ids``: add the platform's ``worker_id`` beside the pseudonym; leave it
    False for anything that leaves the research team.
    """
    import pandas as pd
    from sqlalchemy import and_, case, select

    from study.models import MODES, Answer, Item, Participant, PlanEntry, Stimulus

    study = find_study(session, study)
    modes = _modes(mode)
    kind = kind_of(study.kind)
    scale = kind.widget.type is WidgetType.SCALE  # an answer is a point of the scale: an integer
    stimuli = {s.stimulus_id: s for s in session.scalars(select(Stimulus).where(Stimulus.study_id == study.id))}
    role_models = {s.model_role: s.model for s in stimuli.values() if s.model_role in ROLES}
    mode_order = case({m: i for i, m in enumerate(MODES)}, value=Participant.mode)
    q = (
        select(
            Participant.id.label("pid"),
            Participant.mode,
            Participant.pseudonym,
            Participant.worker_id,
            Participant.condition,
            Participant.status,
            Answer.position,
            Answer.answer,
            Answer.correct,
            Answer.score_stronger,
            Answer.rt_ms,
            Answer.shown_at,
            Answer.answered_at,
            PlanEntry.layout,
            Item.item_id,
            Item.is_attention_check,
            Item.image_id,
            Item.method,
            Item.correct_answer,
        )
        .join(Participant, Participant.id == Answer.participant_id)
        .join(PlanEntry, and_(PlanEntry.participant_id == Answer.participant_id, PlanEntry.position == Answer.position))
        .join(Item, Item.id == PlanEntry.item_pk)
        .where(Participant.study_id == study.id, Participant.mode.in_(modes))
        .order_by(mode_order, Participant.id, Answer.position)
    )
    people = participant_details(session, study, modes)
    out: dict[str, list] = {c: [] for c in export_columns(study.kind, raw_ids)}
    for r in session.execute(q):
        shown = list(r.layout.get("stimuli") or [])
        rows = [stimuli.get(sid) for sid in shown]
        prov = [dict(s.provenance or {}) if s is not None else {} for s in rows]
        values = {
            "study": study.slug,
            "study_kind": study.kind,
            "mode": r.mode,
            "participant": r.pseudonym,
            "worker_id": r.worker_id,
            "condition": r.condition,
            "position": r.position,
            "item_id": r.item_id,
            "is_attention_check": bool(r.is_attention_check),
            "image_id": r.image_id,
            "method": r.method,
            "stimulus_ids": ";".join(shown),
            "correct": r.correct,
            "rt_ms": r.rt_ms,
            "shown_at": iso_utc(r.shown_at),
            "answered_at": iso_utc(r.answered_at),
            "weights_sha256": ";".join(str(p.get("weights_sha256") or "") for p in prov),
            "layer": ";".join(str(p.get("layer") or "") for p in prov),
            "code_version": ";".join(str(p.get("code_version") or "") for p in prov),
            "participant_status": r.status,
            **people[r.pid],
        }
        values["answer"] = _int(r.answer) if scale else r.answer
        for c in kind.columns:
            if c not in values:  # a filler may give several columns at once
                values.update(ANSWER_COLUMNS[c](r, rows, role_models))
        for c in out:
            out[c].append(values[c])
    df = pd.DataFrame(out, columns=list(out))
    df["position"] = df["position"].astype("int64")
    df["is_attention_check"] = df["is_attention_check"].astype(bool)
    df["correct"] = df["correct"].astype("boolean")
    df["rt_ms"] = df["rt_ms"].astype("float64")
    for c in ("time_on_task_s", "hidden_s"):
        df[c] = df[c].astype("float64")
    for c in EVENT_COUNTS:
        df[c] = df[c].astype("int64")
    if scale:
        df["answer"] = df["answer"].astype("Int64")
    if kind.analysis.score_column is not None:
        df[kind.analysis.score_column] = df[kind.analysis.score_column].astype("Int64")
    return df


def participant_details(session: Session, study: Study, modes: tuple[str, ...]) -> dict[int, dict]:
    """Per participant id of ``study`` in ``modes``: the values of :data:`PARTICIPANT_COLUMNS`
    (time on task, questionnaire, focus and visibility events; see the module doc)."""
    from sqlalchemy import select

    from study.models import Event, Participant

    out: dict[int, dict] = {}
    ends: dict[int, datetime | None] = {}
    for pid, created, completed, questionnaire in session.execute(
        select(Participant.id, Participant.created_at, Participant.completed_at, Participant.questionnaire).where(
            Participant.study_id == study.id, Participant.mode.in_(modes)
        )
    ):
        q = questionnaire if isinstance(questionnaire, dict) else {}
        out[pid] = {
            "time_on_task_s": seconds_between(created, completed),
            **{f"questionnaire_{k}": (str(q[k]) if q.get(k) is not None else None) for k in QUESTIONNAIRE},
            **dict.fromkeys(EVENT_COUNTS, 0),
            "hidden_s": 0.0,
        }
        ends[pid] = completed
    hidden_since: dict[int, datetime] = {}
    for pid, kind, detail, at in session.execute(
        select(Event.participant_id, Event.kind, Event.detail, Event.at)
        .join(Participant, Participant.id == Event.participant_id)
        .where(
            Participant.study_id == study.id,
            Participant.mode.in_(modes),
            Event.kind.in_(("blur", "focus", "visibility", "load")),
        )
        .order_by(Event.participant_id, Event.at, Event.id)
    ):
        row = out[pid]
        state = detail.get("state") if isinstance(detail, dict) else None
        if kind in ("blur", "focus"):
            row[f"{kind}_events"] += 1
        elif kind == "visibility" and state == "hidden":
            row["hidden_events"] += 1
            hidden_since.setdefault(pid, at)
        elif pid in hidden_since and (kind == "load" or state == "visible"):
            row["hidden_s"] += seconds_between(hidden_since.pop(pid), at) or 0.0
    for pid, since in hidden_since.items():  # still hidden at the last event
        if ends[pid] is not None:
            out[pid]["hidden_s"] += seconds_between(since, ends[pid]) or 0.0
    for row in out.values():
        row["hidden_s"] = round(row["hidden_s"], 3)
    return out


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds (rounded to the millisecond), None where either is missing.
    SQLite hands back naive UTC times, PostgreSQL aware ones: both are read as UTC."""
    if start is None or end is None:
        return None
    return round((_aware(end) - _aware(start)).total_seconds(), 3)


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _sides(r, rows: list, role_models: dict[str, str]) -> dict[str, str]:
    """ "ROLE:NAME" of the left and the right image (the layout's "Model 1" is on the left)."""
    left_role = r.layout.get("model_1", "stronger")
    sides = (left_role, "weaker" if left_role == "stronger" else "stronger")
    left, right = (_side(rows[i] if i < len(rows) else None, sides[i], role_models) for i in range(2))
    return {"model_left": left, "model_right": right}


def _shown(rows: list) -> dict[str, str | None]:
    """The model and role of the one stimulus shown (None: none, or not in the build)."""
    first = rows[0] if rows else None
    return {"model": first.model if first else None, "model_role": first.model_role if first else None}


# How each kind-specific column (a kind's ``columns``, beside the shared ``stimulus_ids``,
# ``answer`` and ``correct``) is filled: from an answer's query row ``r``, the stimuli shown
# (in display order) and the model name per role. A filler gives a dict of columns; the
# columns that come together (model and role, the two sides) come from one call.
ANSWER_COLUMNS = {
    "model": lambda r, rows, role_models: _shown(rows),
    "model_role": lambda r, rows, role_models: _shown(rows),
    "options": lambda r, rows, role_models: {"options": ";".join(r.layout.get("options") or [])},
    "correct_answer": lambda r, rows, role_models: {"correct_answer": r.correct_answer},
    "model_left": _sides,
    "model_right": _sides,
    "score_stronger": lambda r, rows, role_models: {"score_stronger": r.score_stronger},
}


def _side(stim, layout_role: str, role_models: dict[str, str]) -> str:
    """ "ROLE:NAME" of one side. The stimulus's own model where it shows one (an attention
    check repeats one model's map on both sides); the layout's role for a photo baseline."""
    if stim is not None and stim.model_role in ROLES:
        return f"{stim.model_role}:{stim.model}"
    return f"{layout_role}:{role_models.get(layout_role, '?')}"


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells cannot start a spreadsheet formula."""
    import pandas as pd

    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(_neutral_cell)
    return out


def _neutral_cell(v):
    if isinstance(v, str) and v.startswith((*FORMULA_START, ESCAPE)):
        return ESCAPE + v
    return v


def unneutralise(value):
    """The stored text of a cell :func:`neutralise` wrote."""
    if isinstance(value, str) and value.startswith(ESCAPE):
        return value[1:]
    return value


def write_export(df: pd.DataFrame, path: str | Path, fmt: str) -> Path:
    """Write ``df`` as CSV (UTF-8, no index) or Parquet (pyarrow), atomically."""
    if fmt not in FORMATS:
        raise UserError(f"format must be csv or parquet, not {fmt!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "csv":
            neutralise(df).to_csv(tmp, index=False, lineterminator="\n")
        else:
            df.to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """The export as the bytes of a CSV or Parquet file (for the admin download)."""
    import io

    if fmt == "csv":
        return neutralise(df).to_csv(index=False, lineterminator="\n").encode("utf-8")
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, engine="pyarrow", index=False)
        return buf.getvalue()
    raise UserError(f"format must be csv or parquet, not {fmt!r}")


def run_export(args: argparse.Namespace) -> int:
    """``camstudy export STUDY --format csv|parquet --out FILE [--raw-ids] [--mode M] [--db URL]``."""
    from study.db import check_current, make_engine, session_factory

    fmt = args.format or Path(args.out).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UserError("pass --format csv or --format parquet (or an --out file ending .csv or .parquet)")
    _modes(args.mode)
    engine = make_engine(args.db)
    try:
        check_current(engine)
        with session_factory(engine)() as s:
            df = export_rows(s, args.study, mode=args.mode, raw_ids=args.raw_ids)
    finally:
        engine.dispose()
    path = write_export(df, args.out, fmt)
    ids = "raw worker ids and pseudonyms" if args.raw_ids else "pseudonymous"
    print(f"wrote {len(df)} answer rows of study {args.study!r} (mode {args.mode}, {ids}) to {path}")
    return 0
