"""The JSON API the browser module talks to: the plan, answers, events, completion.

Every route needs the participant's token (``X-Participant-Token``, or the session cookie
the pages set) for this study; a bad request gets a 4xx JSON error and writes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Blueprint, current_app, jsonify, request, session
from sqlalchemy import Connection, bindparam, func, select, update

from camstudy.kinds import kind_of
from study import completion
from study.answers import ANSWERED, AnswerError, is_position, record
from study.blinding import PRACTICE, image_token
from study.db import transaction
from study.models import Event, Participant, Stimulus, Study
from study.teaching import EXAMPLE, example_text, practice_feedback, teaching_items
from study.tokens import verify

bp = Blueprint("api", __name__, url_prefix="/api/s/<slug>")

EVENT_KINDS = ("load", "focus", "blur", "visibility", "resize", "retry", "offline", "online")
# Per participant: events are a few per trial; a flood is refused, not stored.
MAX_EVENTS = 500
MAX_EVENT_BYTES = 256 * 1024


def sessions():
    """Sessions for writes: ``transaction(sessions())``."""
    return current_app.extensions["camstudy.sessions"]


def reads():
    """Sessions for read-only requests (autocommit: no BEGIN and ROLLBACK around them)."""
    return current_app.extensions["camstudy.reads"]


def error(status: int, message: str):
    return jsonify(error=message), status


STUDY_CACHE_SECONDS = 30.0  # studies do not change once created; every request needs one


def study_by_slug(slug: str) -> Study | None:
    """The study (a detached row, read-only), cached per process for a few seconds."""
    cache = current_app.extensions.setdefault("camstudy.study_cache", {})
    now = time.monotonic()
    hit = cache.get(slug)
    if hit is not None and hit[0] > now:
        return hit[1]
    with reads()() as s:
        study = s.scalar(select(Study).where(Study.slug == slug))
    if study is not None:  # only studies that exist: the cache cannot grow with junk slugs
        cache[slug] = (now + STUDY_CACHE_SECONDS, study)
    return study


def current_participant_id(study: Study) -> int | None:
    token = request.headers.get("X-Participant-Token") or session.get(f"p{study.id}")
    return verify(current_app.config["SECRET_KEY"], token, study.id)


def _json_body() -> dict | None:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser's recursion limit: not a body of ours
        return None
    return body if isinstance(body, dict) else None


def _small_json(value, limit: int = 2000) -> bool:
    """``value`` is plain JSON (no NaN or Infinity, which PostgreSQL's json refuses) of at
    most ``limit`` characters."""
    try:
        return len(json.dumps(value, allow_nan=False)) <= limit
    except (ValueError, RecursionError):
        return False


def _authorized(slug: str):
    """``(study, participant_id)`` or an error response."""
    if len(slug) > 64:
        return None, error(404, "unknown study")
    study = study_by_slug(slug)
    if study is None:
        return None, error(404, "unknown study")
    pid = current_participant_id(study)
    if pid is None:
        return None, error(403, "missing or invalid participant token")
    return (study, pid), None


def image_urls(study: Study, pid: int, position: int, n: int, hi: bool = False) -> dict[str, list[str]]:
    """Blind URLs of the ``n`` images of trial ``position`` for participant ``pid`` (see
    study.blinding): a URL names a slot of the participant's plan, not the stimulus, whose
    file name or row id would give the answer away. ``images_2x`` (the same images rendered
    at twice the size, for the page's ``srcset``) only when ``hi``: the study has 2x files."""
    secret = current_app.config["SECRET_KEY"]
    urls = [f"/s/{study.slug}/img/{image_token(secret, pid, position, slot)}" for slot in range(n)]
    return {"images": urls, "images_2x": [f"{u}/2x" for u in urls]} if hi else {"images": urls}


def has_2x(s, study: Study) -> bool:
    """Whether every stimulus of the study has a 2x file (builds before them have none)."""
    missing = s.scalar(
        select(func.count()).select_from(Stimulus).where(Stimulus.study_id == study.id, Stimulus.file_2x.is_(None))
    )
    return missing == 0


@bp.get("/plan")
def plan(slug: str):
    ok, err = _authorized(slug)
    if err:
        return err
    study, pid = ok
    with autocommit() as conn:
        # The answers read the same cached plan: this request loads it for them.
        entries, total = current_app.extensions["camstudy.plans"].get(conn, pid)
        status, done = conn.execute(_STATUS, {"pid": pid}).one()
    with reads()() as s:
        hi = has_2x(s, study)
        example, practice = _teaching(s, study, pid, hi) if study.settings.get("practice") else (None, None)
    kind = kind_of(study.kind)
    trials = []
    for position in sorted(entries):
        layout = entries[position].layout
        trials.append(
            {
                "position": position,
                "task": study.kind,
                **image_urls(study, pid, position, len(layout["stimuli"]), hi),
                **kind.trial_fields(layout),
            }
        )
    return jsonify(
        study=study.slug,
        task=study.kind,
        status=status,
        next=done,
        total=total,
        trials=trials,
        question=kind.question,  # asked above every trial (and the practice): no one has to remember it
        blank_ms=study.settings.get("blank_ms", 300),
        example=example,
        practice=practice,
        # The answer scale of a kind that has one (None: options): the page draws its buttons from it.
        scale=None if kind.widget.scale is None else kind.widget.scale.as_json(),
        display=kind.display.as_json(),
        widget=kind.widget.as_json(),
    )


_STATUS = select(Participant.status, ANSWERED.scalar_subquery()).where(Participant.id == bindparam("pid"))


def _teaching(s, study: Study, pid: int, hi: bool) -> tuple[dict | None, dict | None]:
    """The worked example and the practice trial (see study.teaching), as the page needs them."""
    taught = teaching_items(s, study, pid)
    example = practice = None
    if taught.example is not None:
        it = taught.example
        example = {
            **image_urls(study, pid, EXAMPLE, len(it.stimulus_ids), hi),
            "options": it.options,
            **example_text(study, it),
        }
    if taught.practice is not None:
        it = taught.practice
        practice = {
            **image_urls(study, pid, PRACTICE, len(it.stimulus_ids), hi),
            "options": it.options,
            **practice_feedback(study, it),
            **kind_of(study.kind).practice_fields(it),
        }
    return example, practice


@bp.post("/answers")
def answers(slug: str):
    ok, err = _authorized(slug)
    if err:
        return err
    _study, pid = ok
    body = _json_body()
    if body is None:
        return error(400, "the body must be a JSON object")
    unknown = set(body) - {"position", "answer", "rt_ms", "shown_at", "client_time"}
    if unknown:
        return error(400, f"unknown field {sorted(unknown)[0]!r}")
    try:
        with autocommit() as conn:
            return jsonify(record(conn, current_app.extensions["camstudy.plans"], pid, body))
    except AnswerError as e:
        return error(e.status, e.message)


@bp.post("/events")
def events(slug: str):
    ok, err = _authorized(slug)
    if err:
        return err
    _study, pid = ok
    body = _json_body()
    if body is None or body.get("kind") not in EVENT_KINDS:
        return error(400, f"kind must be one of {', '.join(EVENT_KINDS)}")
    position = body.get("position")
    if position is not None and not is_position(position):
        return error(400, "position must be a non-negative integer")
    detail = body.get("detail")
    if detail is not None and (not isinstance(detail, dict) or not _small_json(detail)):
        return error(400, "detail must be a small JSON object")
    size = len(json.dumps(detail)) if detail is not None else 0
    with transaction(sessions()) as s:
        # One conditional UPDATE counts the event against the caps (race-free across
        # workers); no row updated: finished, or over a cap.
        counted = s.execute(
            update(Participant)
            .where(
                Participant.id == pid,
                Participant.status == "active",
                Participant.events_n < MAX_EVENTS,
                Participant.events_bytes + size <= MAX_EVENT_BYTES,
            )
            .values(events_n=Participant.events_n + 1, events_bytes=Participant.events_bytes + size)
        ).rowcount
        if not counted:
            status = s.scalar(select(Participant.status).where(Participant.id == pid))
            if status != "active":
                return error(409, "this participation is finished")
            return error(429, f"at most {MAX_EVENTS} events and {MAX_EVENT_BYTES} bytes of detail per participant")
        s.add(Event(participant_id=pid, kind=body["kind"], position=position, detail=detail))
    return "", 204


@bp.post("/complete")
def complete(slug: str):
    """Finish the trials: allowed only once every answer is stored."""
    ok, err = _authorized(slug)
    if err:
        return err
    study, pid = ok
    with autocommit() as conn:
        try:
            status, stage = completion.complete(conn, study.settings, pid)
        except AnswerError as e:
            return error(e.status, e.message)
    return jsonify(status=status, stage=stage, next_url=f"/s/{study.slug}/{stage}")


@contextmanager
def autocommit() -> Iterator[Connection]:
    """A connection whose every statement commits by itself (one round trip each)."""
    with current_app.extensions["camstudy.autocommit"].connect() as conn:
        yield conn
