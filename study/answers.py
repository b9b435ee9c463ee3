"""Recording answers: one POST each, committed before it is acknowledged, idempotent.

An answer is unique on (participant, position). A retried POST, or a second browser of
the same participant answering the same trial, gets the acknowledgement of the answer that
was stored first and writes nothing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from study.db import transaction
from study.models import Answer, Participant, PlanEntry, utcnow

MAX_RT_MS = 60 * 60 * 1000  # an hour on one trial is not a reaction time
TRUST_SCALE = (-2, -1, 0, 1, 2)


class AnswerError(Exception):
    """A rejected answer: ``status`` is the HTTP status, ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def ack(a: Answer, total: int) -> dict:
    return {"position": a.position, "answer": a.answer, "stored": True, "next": a.position + 1,
            "remaining": max(total - a.position - 1, 0)}


def _parse_shown_at(value) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise AnswerError(422, "shown_at must be an ISO 8601 time")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise AnswerError(422, "shown_at must be an ISO 8601 time") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _score(entry: PlanEntry, answer) -> tuple[str, bool | None, int | None]:
    """Validate ``answer`` for the trial; return (stored text, correct, score for stronger)."""
    item = entry.item
    if item.task == "trust":
        if isinstance(answer, bool) or not isinstance(answer, int) or answer not in TRUST_SCALE:
            raise AnswerError(422, "a trust answer is an integer from -2 to 2")
        if item.is_attention_check:
            return str(answer), answer == (item.expected_answer or 0), None
        # The answer rates Model 1 against Model 2; re-sign it to favour the stronger model.
        score = answer if entry.layout["model_1"] == "stronger" else -answer
        return str(answer), None, score
    if not isinstance(answer, str) or answer not in entry.layout["options"]:
        raise AnswerError(422, "the answer must be one of the trial's options")
    return answer, answer == item.correct_answer, None


def record(factory: sessionmaker[Session], participant_id: int, body: dict) -> dict:
    """Validate and store one answer; return its acknowledgement (the stored one on retry)."""
    position = body.get("position")
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise AnswerError(422, "position must be a non-negative integer")
    rt = body.get("rt_ms")
    if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not math.isfinite(rt) or not 0 < rt <= MAX_RT_MS:
        raise AnswerError(422, f"rt_ms must be a number of milliseconds in (0, {MAX_RT_MS}]")
    shown_at = _parse_shown_at(body.get("shown_at"))
    try:
        with transaction(factory) as s:
            p = s.get(Participant, participant_id)
            total = s.scalar(select(func.count()).select_from(PlanEntry).where(PlanEntry.participant_id == p.id))
            stored = s.scalar(select(Answer).where(Answer.participant_id == p.id, Answer.position == position))
            if stored is not None:
                return ack(stored, total)
            if p.status != "active":
                raise AnswerError(409, "this participation is finished")
            entry = s.scalar(select(PlanEntry).where(PlanEntry.participant_id == p.id, PlanEntry.position == position))
            if entry is None:
                raise AnswerError(404, f"no trial at position {position}")
            answered = s.scalar(select(func.count()).select_from(Answer).where(Answer.participant_id == p.id))
            if position != answered:
                raise AnswerError(409, f"trial {position} is not next (next is {answered})")
            text, correct, score = _score(entry, body.get("answer"))
            a = Answer(participant_id=p.id, position=position, answer=text, correct=correct,
                       score_stronger=score, rt_ms=float(rt), shown_at=shown_at, answered_at=utcnow())
            s.add(a)
            s.flush()
            return ack(a, total)
    except IntegrityError:
        # Another request stored this position first (a retry racing its original, or a
        # second tab): acknowledge what was stored.
        with factory() as s:
            total = s.scalar(select(func.count()).select_from(PlanEntry).where(PlanEntry.participant_id == participant_id))
            stored = s.scalar(select(Answer).where(Answer.participant_id == participant_id, Answer.position == position))
            return ack(stored, total)


def progress(session: Session, participant: Participant) -> tuple[int, int]:
    """(answered, total) trials."""
    total = session.scalar(select(func.count()).select_from(PlanEntry).where(PlanEntry.participant_id == participant.id))
    done = session.scalar(select(func.count()).select_from(Answer).where(Answer.participant_id == participant.id))
    return done, total
