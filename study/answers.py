"""Recording answers: one POST each, committed before it is acknowledged, idempotent.

An answer is unique on (participant, position). A retried POST, or a second browser of
the same participant answering the same trial, gets the acknowledgement of the answer that
was stored first and writes nothing. The positions are answered in order: an answer is
stored only at the participant's next position.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, cast, func, select

from camstudy.contracts import TRUST_VALUES
from camstudy.kinds import AnswerRejected, kind_of
from study.models import Answer, Item, Participant, PlanEntry, utcnow

MAX_RT_MS = 60 * 60 * 1000  # an hour on one trial is not a reaction time
TRUST_SCALE = TRUST_VALUES  # the trust scale's values (tests/contracts checks the server uses the contract's)
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
    return {
        "position": position,
        "answer": answer,
        "stored": True,
        "next": position + 1,
        "remaining": max(total - position - 1, 0),
    }


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


def _score(trial: Trial, answer) -> tuple[str, bool | None, int | None]:
    """Validate ``answer`` for the trial; return (stored text, correct, score for stronger)."""
    try:
        scored = kind_of(trial.task).score(
            trial.layout,
            answer,
            is_attention_check=trial.is_attention_check,
            correct_answer=trial.correct_answer,
            expected_answer=trial.expected_answer,
        )
    except AnswerRejected as e:
        raise AnswerError(422, str(e)) from None
    return scored.text, scored.correct, scored.score


@dataclass(frozen=True)
class Trial:
    """What the answer path needs of one trial of a plan (which never changes once drawn)."""

    layout: dict
    task: str
    is_attention_check: bool
    expected_answer: int | None
    correct_answer: str | None


class PlanCache:
    """Participants' plans by participant id, per app (one database), bounded: a plan is
    drawn once and never changes, so each worker reads it once, not once per answer."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.plans: OrderedDict[int, tuple[dict[int, Trial], int]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, conn, participant_id: int) -> tuple[dict[int, Trial], int]:
        """``({position: Trial}, plan length)``."""
        with self.lock:
            hit = self.plans.get(participant_id)
            if hit is not None:
                self.plans.move_to_end(participant_id)
                return hit
        rows = conn.execute(_PLAN, {"pid": participant_id}).all()
        plan = (
            {
                r.position: Trial(r.layout, r.task, r.is_attention_check, r.expected_answer, r.correct_answer)
                for r in rows
            },
            len(rows),
        )
        with self.lock:
            self.plans[participant_id] = plan
            while len(self.plans) > self.size:
                self.plans.popitem(last=False)
        return plan


def record(conn: Connection, plans: PlanCache, participant_id: int, body: dict) -> dict:
    """Validate and store one answer; return its acknowledgement (the stored one on retry).

    ``conn``: an autocommit connection (each statement commits by itself). The hot path of
    a running study (one request per answer) is one statement there: the answer is checked against the participant's plan (cached),
    and one ``INSERT ... SELECT ... WHERE`` stores it only if the participation is active
    and the position is the next one, doing nothing on a conflict (a retry, a second tab).
    When it stores nothing, the slow path reads the state and says why (or acknowledges
    the answer stored first). On PostgreSQL every BEGIN, COMMIT and query is a round trip.
    """
    position = body.get("position")
    if not is_position(position):
        raise AnswerError(422, "position must be a non-negative integer")
    rt = body.get("rt_ms")
    if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not math.isfinite(rt) or not 0 < rt <= MAX_RT_MS:
        raise AnswerError(422, f"rt_ms must be a number of milliseconds in (0, {MAX_RT_MS}]")
    shown_at = _parse_shown_at(body.get("shown_at"))
    keys = {"pid": participant_id, "pos": position}
    trials, total = plans.get(conn, participant_id)
    trial = trials.get(position)
    invalid = None
    if trial is not None:
        try:
            text, correct, score = _score(trial, body.get("answer"))
        except AnswerError as e:
            invalid = e  # said after the state's reasons (a stored answer is acknowledged)
        else:
            stored = conn.execute(
                _GUARDED_INSERT[conn.dialect.name],
                {
                    **keys,
                    "answer": text,
                    "correct": correct,
                    "score": score,
                    "rt": float(rt),
                    "shown": shown_at,
                    "now": utcnow(),
                },
            ).first()
            if stored is not None:
                return ack(position, text, total)
    # Nothing stored: acknowledge what a retry or another tab stored first, or say why.
    state = conn.execute(_STATE, keys).one()
    if state.stored is not None:
        return ack(position, state.stored, state.total)
    if state.status != "active":
        raise AnswerError(409, "this participation is finished")
    if trial is None:
        raise AnswerError(404, f"no trial at position {position}")
    if position != state.answered:
        raise AnswerError(409, f"trial {position} is not next (next is {state.answered})")
    raise invalid or AnswerError(409, f"trial {position} changed meanwhile; send it again")


# The hot path's statements, built once (bound per call with ``pid`` and ``pos``).
_PID, _POS = bindparam("pid"), bindparam("pos")
_STORED = select(Answer.answer).where(Answer.participant_id == _PID, Answer.position == _POS)
# A participant's plan length and answers so far (bound with ``pid``).
PLAN_LENGTH = select(func.count()).select_from(PlanEntry).where(PlanEntry.participant_id == _PID)
ANSWERED = select(func.count()).select_from(Answer).where(Answer.participant_id == _PID)
# One row: the participant's status, plan length, answers so far and the answer stored at
# the position (None if none): the slow path's reasons.
_STATE = select(
    Participant.status,
    PLAN_LENGTH.scalar_subquery().label("total"),
    ANSWERED.scalar_subquery().label("answered"),
    _STORED.scalar_subquery().label("stored"),
).where(Participant.id == _PID)
_PLAN = (
    select(
        PlanEntry.position,
        PlanEntry.layout,
        Item.task,
        Item.is_attention_check,
        Item.expected_answer,
        Item.correct_answer,
    )
    .join(Item, Item.id == PlanEntry.item_pk)
    .where(PlanEntry.participant_id == _PID)
)


def _guarded_insert(dialect: str):
    """``INSERT INTO answer SELECT <the values> WHERE <active> AND <position is next> ON
    CONFLICT DO NOTHING RETURNING id``. PostgreSQL needs the values cast to the columns'
    types (a bare parameter in a SELECT list is text); SQLite must not get casts (CAST to
    a date type would turn its text into a number)."""
    from sqlalchemy import exists, type_coerce
    from sqlalchemy.dialects import postgresql, sqlite

    typed = cast if dialect == "postgresql" else type_coerce
    cols = Answer.__table__.c
    values = [
        typed(bindparam(name), col.type).label(col.name)
        for name, col in (
            ("pid", cols.participant_id),
            ("pos", cols.position),
            ("answer", cols.answer),
            ("correct", cols.correct),
            ("score", cols.score_stronger),
            ("rt", cols.rt_ms),
            ("shown", cols.shown_at),
            ("now", cols.answered_at),
        )
    ]
    active = exists().where(Participant.id == _PID, Participant.status == "active")
    source = select(*values).where(active, ANSWERED.scalar_subquery() == _POS)
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(Answer.__table__)
    return (
        insert.from_select([c.name for c in values], source)
        .on_conflict_do_nothing(index_elements=["participant_id", "position"])
        .returning(cols.id)
    )


_GUARDED_INSERT = {name: _guarded_insert(name) for name in ("postgresql", "sqlite")}
