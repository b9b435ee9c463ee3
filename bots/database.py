"""The study as the bots know it, read from the study's database (read-only): the answer
key of each participant's plan, the platform and the signed link of a mode (:class:`StudyKey`),
and afterwards the check of every acknowledged answer against what is stored (:func:`audit`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bots.bot import BotResult


@dataclass(frozen=True)
class Truth:
    method: str
    attention_check: bool
    correct: str | None  # class discrimination
    stronger_first: bool | None  # trust: the stronger model's image is "Model 1"


class StudyKey:
    """What the bots read from the study's database (read-only): the platform (whose ids
    they send), the signed link parameters of their mode, and the answer key.

    The server never sends the answer, nor anything that identifies a stimulus: an image
    URL names a slot of the participant's plan. So a bot reads its own plan from the
    database, by the participant id in its participant token (:meth:`plan_truth`).
    """

    def __init__(self, db_url: str | None, slug: str, mode: str) -> None:
        from study.db import make_engine, session_factory
        from study.export import find_study
        from study.recruitment import mode_link_params

        if db_url is False:  # no database: live Prolific-style links, no answer key (a load test's floor)
            self.engine, self.study_id, self.platform, self.link_params = None, None, "prolific", {}
            return
        self.engine = make_engine(db_url, pre_ping=True)  # a test may restart the database mid-run
        self.factory = session_factory(self.engine)
        with self.factory() as s:
            study = find_study(s, slug)
            self.study_id = study.id
            self.platform = study.settings.get("platform", "plain")
            self.link_params = mode_link_params(study.secret, study.slug, mode)

    def plan_truth(self, participant_id: int) -> dict[int, Truth]:
        """What is true of each trial of this participant's plan, by position."""
        from sqlalchemy import select

        from study.models import Item, Participant, PlanEntry

        with self.factory() as s:
            rows = s.execute(
                select(PlanEntry.position, PlanEntry.layout, Item.method, Item.is_attention_check, Item.correct_answer)
                .join(Item, Item.id == PlanEntry.item_pk)
                .join(Participant, Participant.id == PlanEntry.participant_id)
                .where(PlanEntry.participant_id == participant_id, Participant.study_id == self.study_id)
            ).all()
        return {
            pos: Truth(method, check, correct, layout.get("model_1") == "stronger" if "model_1" in layout else None)
            for pos, layout, method, check, correct in rows
        }

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


@dataclass
class Audit:
    """What the database holds against what the bots were told: ``lost`` acknowledged
    answers missing, ``duplicated`` extra rows for one position, ``changed`` stored answers
    that differ from their acknowledgement, ``unacknowledged`` stored answers no bot saw
    acknowledged (a bot that gave up after the server committed)."""

    answers: int = 0
    lost: int = 0
    duplicated: int = 0
    changed: int = 0
    unacknowledged: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.changed)

    def line(self) -> str:
        return (
            f"database: {self.answers} answers stored; {self.lost} lost, {self.duplicated} duplicated, "
            f"{self.changed} changed, {self.unacknowledged} stored without acknowledgement"
        )


def audit(db_url: str | None, slug: str, results: list[BotResult]) -> Audit:
    """Check every acknowledged answer of these bots against the database."""
    from sqlalchemy import select

    from study.db import make_engine, session_factory
    from study.export import find_study
    from study.models import Answer, Participant

    engine = make_engine(db_url)
    out = Audit()
    try:
        with session_factory(engine)() as s:
            study_id = find_study(s, slug).id
            for r in results:
                rows = s.execute(
                    select(Answer.position, Answer.answer)
                    .join(Participant, Participant.id == Answer.participant_id)
                    .where(
                        Participant.study_id == study_id,
                        (Participant.worker_id == r.worker_id) | (Participant.id == r.participant_id),
                    )
                ).all()
                stored: dict[int, str] = {}
                for position, answer in rows:
                    out.duplicated += position in stored
                    stored[position] = answer
                out.answers += len(rows)
                out.lost += sum(1 for pos in r.acknowledged if pos not in stored)
                out.changed += sum(1 for pos, a in r.acknowledged.items() if pos in stored and stored[pos] != a)
                out.unacknowledged += sum(1 for pos in stored if pos not in r.acknowledged)
    finally:
        engine.dispose()
    return out
