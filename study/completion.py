"""The end of a participation: the trials done, then completed or screened out.

Each step is one conditional UPDATE (no read-modify-write, so no race between two tabs or
two workers, and on PostgreSQL one round trip):

- :func:`complete` after the last answer: finished at once, ``completed``, or
  ``screened_out`` when more attention checks were failed than the study's exclusion rule
  allows. The debrief then shows the matching code: the code never waits for the
  questionnaire, which the debrief offers as optional (a worker who closes the tab after
  the last trial has still earned the code, and saw it);
- :func:`finish`: the same for a participation left at the old ``questionnaire`` stage
  (databases from before the questionnaire moved onto the debrief).
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, bindparam, case, false, func, select, update

from study.answers import ANSWERED, PLAN_LENGTH, AnswerError
from study.models import Answer, Item, Participant, PlanEntry, utcnow

_PID = bindparam("pid")
# Attention checks this participant got wrong.
_FAILED = (
    select(func.count())
    .select_from(Answer)
    .join(PlanEntry, and_(PlanEntry.participant_id == Answer.participant_id, PlanEntry.position == Answer.position))
    .join(Item, Item.id == PlanEntry.item_pk)
    .where(Answer.participant_id == _PID, Item.is_attention_check.is_(True), Answer.correct == false())
    .scalar_subquery()
)
_ACTIVE = (Participant.id == _PID, Participant.status == "active")
_ALL_ANSWERED = ANSWERED.scalar_subquery() >= PLAN_LENGTH.scalar_subquery()


def _finishing(*conditions):
    return (
        update(Participant)
        .where(*conditions)
        .values(
            status=case((_FAILED > bindparam("limit"), "screened_out"), else_="completed"),
            stage="debrief",
            completed_at=bindparam("now"),
        )
        .returning(Participant.status, Participant.stage)
    )


_FINISH = _finishing(*_ACTIVE)
_COMPLETE_AND_FINISH = _finishing(*_ACTIVE, _ALL_ANSWERED)
_STATE = select(
    Participant.status,
    Participant.stage,
    ANSWERED.scalar_subquery().label("answered"),
    PLAN_LENGTH.scalar_subquery().label("total"),
).where(Participant.id == _PID)


def _params(settings: dict, pid: int) -> dict:
    return {"pid": pid, "limit": settings["exclusions"]["max_failed_attention_checks"], "now": utcnow()}


def complete(conn: Connection, settings: dict, pid: int) -> tuple[str, str]:
    """The trials are done: ``(status, stage)`` afterwards. Allowed only once every answer
    is stored (409 otherwise); asking again changes nothing."""
    row = conn.execute(_COMPLETE_AND_FINISH, _params(settings, pid)).first()
    if row is not None:
        return row.status, row.stage
    state = conn.execute(_STATE, {"pid": pid}).one()
    if state.status == "active" and state.answered < state.total:
        raise AnswerError(409, f"{state.total - state.answered} trial(s) still unanswered")
    return state.status, state.stage


def finish(conn: Connection, settings: dict, pid: int) -> None:
    """Mark an active participation finished (one left at the old questionnaire stage)."""
    conn.execute(_FINISH, _params(settings, pid))
