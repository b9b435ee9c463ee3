"""The JSON API the browser module talks to: the plan, answers, events, completion.

Every route needs the participant's token (``X-Participant-Token``, or the session cookie
the pages set) for this study; a bad request gets a 4xx JSON error and writes nothing.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, current_app, jsonify, request, session
from sqlalchemy import select, update

from study.answers import AnswerError, is_position, progress, record
from study.blinding import PRACTICE, image_token
from study.db import transaction
from study.models import Answer, Event, Item, Participant, PlanEntry, Study, utcnow
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


def image_urls(study: Study, pid: int, position: int, n: int) -> list[str]:
    """Blind URLs of the ``n`` images of trial ``position`` for participant ``pid`` (see
    study.blinding): a URL names a slot of the participant's plan, not the stimulus, whose
    file name or row id would give the answer away."""
    secret = current_app.config["SECRET_KEY"]
    return [f"/s/{study.slug}/img/{image_token(secret, pid, position, slot)}" for slot in range(n)]


@bp.get("/plan")
def plan(slug: str):
    ok, err = _authorized(slug)
    if err:
        return err
    study, pid = ok
    with reads()() as s:
        p = s.get(Participant, pid)
        entries = s.scalars(select(PlanEntry).where(PlanEntry.participant_id == pid).order_by(PlanEntry.position)).all()
        done, total = progress(s, p)
        trials = []
        for e in entries:
            trial = {"position": e.position, "task": study.kind,
                     "images": image_urls(study, pid, e.position, len(e.layout["stimuli"]))}
            if study.kind == "class_discrimination":
                trial["options"] = e.layout["options"]
            trials.append(trial)
        practice = _practice(s, study, pid) if study.settings.get("practice") else None
    return jsonify(study=study.slug, task=study.kind, status=p.status, next=done, total=total, trials=trials,
                   practice=practice)


def practice_item(s, study: Study, pid: int) -> Item | None:
    """The practice trial's item: an attention-check item this participant will not see
    among their trials (the same on every call)."""
    planned = select(PlanEntry.item_pk).where(PlanEntry.participant_id == pid)
    return s.scalars(
        select(Item).where(Item.study_id == study.id, Item.is_attention_check.is_(True), Item.id.not_in(planned))
        .order_by(Item.id)
    ).first()


def _practice(s, study: Study, pid: int) -> dict | None:
    """A practice trial with feedback (see :func:`practice_item`)."""
    check = practice_item(s, study, pid)
    if check is None:
        return None
    images = image_urls(study, pid, PRACTICE, len(check.stimulus_ids))
    if study.kind == "class_discrimination":
        return {"images": images, "options": check.options, "correct": check.correct_answer,
                "explanation": f"Not quite: the image shows a {check.correct_answer}. Look for the evidence the model highlights."}
    return {"images": images, "correct": 0,
            "explanation": "Not quite: both sides show the same explanation, so the models are equally reliable (3)."}


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
        return jsonify(record(current_app.extensions["camstudy.engine"], current_app.extensions["camstudy.plans"],
                              pid, body))
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
            .where(Participant.id == pid, Participant.status == "active", Participant.events_n < MAX_EVENTS,
                   Participant.events_bytes + size <= MAX_EVENT_BYTES)
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
    with transaction(sessions()) as s:
        p = s.get(Participant, pid)
        done, total = progress(s, p)
        if done < total:
            return error(409, f"{total - done} trial(s) still unanswered")
        if p.status == "active":
            p.stage = "questionnaire" if study.settings.get("questionnaire") else "debrief"
            if not study.settings.get("questionnaire"):
                finish(s, study, p)
        return jsonify(status=p.status, stage=p.stage, next_url=f"/s/{study.slug}/{p.stage}")


def failed_checks(s, p: Participant) -> int:
    """Attention checks this participant got wrong."""
    rows = s.execute(
        select(Answer.correct)
        .join(PlanEntry, (PlanEntry.participant_id == Answer.participant_id) & (PlanEntry.position == Answer.position))
        .join(Item, Item.id == PlanEntry.item_pk)
        .where(Answer.participant_id == p.id, Item.is_attention_check.is_(True))
    ).all()
    return sum(1 for (c,) in rows if c is False)


def finish(s, study: Study, p: Participant) -> None:
    """Mark the participation finished: completed, or screened out by the attention checks."""
    limit = study.settings["exclusions"]["max_failed_attention_checks"]
    p.status = "screened_out" if failed_checks(s, p) > limit else "completed"
    p.stage = "debrief"
    p.completed_at = utcnow()
