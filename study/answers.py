"""Recording answers: one POST each, committed before it is acknowledged, idempotent.

An answer is unique on (participant, position). A retried POST, or a second browser of
the same participant answering the same trial, gets the acknowledgement of the answer that
was stored first and writes nothing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from study.models import Answer, Item, Participant, PlanEntry, utcnow

MAX_RT_MS = 60 * 60 * 1000  # an hour on one trial is not a reaction time
TRUST_SCALE = (-2, -1, 0, 1, 2)
MAX_POSITION = 2**31 - 1  # the column's range (SQLite binds no int past 2**63 at all)


class AnswerError(Exception):
    """A rejected answer: ``status`` is the HTTP status, ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_position(value) -> bool:
    """A trial position: an int (not a bool) within the column's range."""
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= MAX_POSITION


def ack(position: int, answer: str, total: int) -> dict:
    return {"position": position, "answer": answer, "stored": True, "next": position + 1,
            "remaining": max(total - position - 1, 0)}


def _parse_shown_at(value) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise AnswerError(422, "shown_at must be an ISO 8601 time")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved past the calendar by its offset
        raise AnswerError(422, "shown_at must be an ISO 8601 time") from None


def _score(trial: Row, answer) -> tuple[str, bool | None, int | None]:
    """Validate ``answer`` for the trial; return (stored text, correct, score for stronger).
    ``trial``: a row with the plan entry's ``layout`` and the item's ``task``,
    ``is_attention_check``, ``expected_answer`` and ``correct_answer`` (``_STATE``'s)."""
    if trial.task == "trust":
        if isinstance(answer, bool) or not isinstance(answer, int) or answer not in TRUST_SCALE:
            raise AnswerError(422, "a trust answer is an integer from -2 to 2")
        if trial.is_attention_check:
            return str(answer), answer == (trial.expected_answer or 0), None
        # The answer rates Model 1 against Model 2; re-sign it to favour the stronger model.
        score = answer if trial.layout["model_1"] == "stronger" else -answer
        return str(answer), None, score
    if not isinstance(answer, str) or answer not in trial.layout["options"]:
        raise AnswerError(422, "the answer must be one of the trial's options")
    return answer, answer == trial.correct_answer, None


def record(factory: sessionmaker[Session], participant_id: int, body: dict) -> dict:
    """Validate and store one answer; return its acknowledgement (the stored one on retry)."""
    position = body.get("position")
    if not is_position(position):
        raise AnswerError(422, "position must be a non-negative integer")
    rt = body.get("rt_ms")
    if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not math.isfinite(rt) or not 0 < rt <= MAX_RT_MS:
        raise AnswerError(422, f"rt_ms must be a number of milliseconds in (0, {MAX_RT_MS}]")
    shown_at = _parse_shown_at(body.get("shown_at"))
    # Core statements on a connection, no ORM session or objects: this is the hot path of a
    # running study (one request per answer).
    engine = factory.kw["bind"]
    keys = {"pid": participant_id, "pos": position}
    try:
        with engine.begin() as conn:
            state = conn.execute(_STATE, keys).one()
            if state.stored is not None:
                return ack(position, state.stored, state.total)
            if state.status != "active":
                raise AnswerError(409, "this participation is finished")
            if state.layout is None:
                raise AnswerError(404, f"no trial at position {position}")
            if position != state.answered:
                # Reads are not one snapshot (SQLite autocommit reads, PostgreSQL read
                # committed): a second tab may have stored this position since we looked.
                stored = conn.scalar(_STORED, keys)
                if stored is not None:
                    return ack(position, stored, state.total)
                raise AnswerError(409, f"trial {position} is not next (next is {state.answered})")
            text, correct, score = _score(state, body.get("answer"))
            conn.execute(_INSERT, {"participant_id": participant_id, "position": position, "answer": text,
                                   "correct": correct, "score_stronger": score, "rt_ms": float(rt),
                                   "shown_at": shown_at, "answered_at": utcnow()})
            return ack(position, text, state.total)
    except IntegrityError:
        # Another request stored this position first (a retry racing its original, or a
        # second tab): acknowledge what was stored.
        with engine.connect() as conn:
            state = conn.execute(_STATE, keys).one()
            return ack(position, state.stored, state.total)


# The hot path's statements, built once (bound per call with ``pid`` and ``pos``).
_PID, _POS = bindparam("pid"), bindparam("pos")
_STORED = select(Answer.answer).where(Answer.participant_id == _PID, Answer.position == _POS)
_TOTAL = select(func.count()).select_from(PlanEntry).where(PlanEntry.participant_id == _PID)
_ANSWERED = select(func.count()).select_from(Answer).where(Answer.participant_id == _PID)
# One row: the participant's status, plan length, answers so far, the answer stored at the
# position (None if none) and the trial at the position (None columns if there is none).
_STATE = (
    select(
        Participant.status,
        _TOTAL.scalar_subquery().label("total"),
        _ANSWERED.scalar_subquery().label("answered"),
        _STORED.scalar_subquery().label("stored"),
        PlanEntry.layout, Item.task, Item.is_attention_check, Item.expected_answer, Item.correct_answer,
    )
    .select_from(Participant)
    .outerjoin(PlanEntry, (PlanEntry.participant_id == Participant.id) & (PlanEntry.position == _POS))
    .outerjoin(Item, Item.id == PlanEntry.item_pk)
    .where(Participant.id == _PID)
)
_INSERT = Answer.__table__.insert()


def progress(session: Session, participant: Participant) -> tuple[int, int]:
    """(answered, total) trials."""
    keys = {"pid": participant.id}
    return session.scalar(_ANSWERED, keys), session.scalar(_TOTAL, keys)
