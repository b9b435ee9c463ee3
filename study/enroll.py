"""Enrollment: the condition, the whole trial plan and its counterbalancing, drawn once.

Server-authoritative: at enrollment the server draws the participant's plan from a stored
seed and stores it, so a reload, a new tab or a server restart resumes it unchanged.

Concurrency: the enrollment transaction starts by incrementing the study's enrollment
counter. That UPDATE takes the study row's write lock (PostgreSQL: a row lock; SQLite: the
database write lock, and because it is the transaction's first statement the snapshot is
taken under that lock), so concurrent enrollments of a study run one after another and
each sees every earlier one: least-filled assignment and rater counts stay exact.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import (
    Row,
    String,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from camstudy.kinds import kind_of
from study import throttle
from study.models import Item, Participant, PlanEntry, Study, Throttle, utcnow
from study.recruitment import Recruitment

__all__ = ["AlreadyParticipated", "Recruitment", "enroll"]


class AlreadyParticipated(Exception):
    """The worker took part in this study before (in any mode, under any spelling of the
    id) and the study allows one participation."""


def pseudonym(study: Study, key: str) -> str:
    """A stable pseudonymous id: HMAC-SHA256 of the worker key with the study's secret."""
    return hmac.new(study.secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class Enrolled:
    """A participant as enrollment left them: new, or resumed."""

    id: int
    stage: str
    condition: str
    new: bool


_PRIOR = (
    select(
        Participant.id,
        Participant.status,
        Participant.mode,
        Participant.attempt,
        Participant.stage,
        Participant.condition,
    )
    .where(Participant.study_id == bindparam("sid"), Participant.worker_key == bindparam("key"))
    .order_by(Participant.id.desc())
    .limit(1)
)
UNREAD = object()  # ``prior`` not read yet


def prior_participation(db, study_id: int, key: str | None) -> Row | None:
    """The worker's latest participation in the study, in any mode (None without a key)."""
    return db.execute(_PRIOR, {"sid": study_id, "key": key}).first() if key else None


def before_enrolling(db, study_id: int, key: str | None, throttle_key: str, window_s: float) -> tuple[int, Row | None]:
    """``(events counted under throttle_key in the last window_s seconds, the worker's prior
    participation)``, read in one round trip before the enrollment's transaction."""
    row = db.execute(
        _BEFORE,
        {
            "tkey": throttle.clip(throttle_key),
            "since": utcnow() - timedelta(seconds=window_s),
            "sid": study_id,
            "key": key,
        },
    ).one()
    return row.recent, (row if row.id is not None else None)


_RECENT = (
    select(func.count())
    .select_from(Throttle)
    .where(Throttle.key == bindparam("tkey"), Throttle.at > bindparam("since"))
    .scalar_subquery()
)
_ONE = select(literal(1).label("one")).subquery("one")
_PRIOR_ROW = _PRIOR.subquery("prior")
_BEFORE = select(_RECENT.label("recent"), *_PRIOR_ROW.c).select_from(_ONE.outerjoin(_PRIOR_ROW, true()))


def enroll(
    session: Session, study: Study | int, who: Recruitment, stage: str = "consent", prior: Row | None | object = UNREAD
) -> Enrolled:
    """Enroll (or resume) a participant; call inside a transaction, as its first statement.

    ``study``: the study or its id (a Study need not belong to ``session``: its settings
    never change). A new participant starts at ``stage`` (a resumed one still at the
    consent stage moves there too). ``prior``: the prior participation (as
    :func:`before_enrolling` gives it), when the caller read it before the transaction (so a resumed worker takes no lock, and an enrollment
    holds the lock one round trip less); the unique (study, worker key, attempt) key makes
    that safe, as a concurrent enrollment of the same worker then fails on the INSERT
    (IntegrityError: enroll again, and the prior participation is found). On PostgreSQL
    every statement under the study's lock is a round trip that the next enrollment waits
    for, so there are few, and all Core: the lock (which returns the study's tally of
    assignments: a few hundred counts, where counting the plans would read every plan
    entry of the study), the participant, its plan and the new tally."""
    study_id = study if isinstance(study, int) else study.id
    key = who.worker_key
    if prior is not UNREAD:
        resumed = _resume(session, study, who, stage, prior)
        if resumed is not None:
            return resumed
    table = Study.__table__  # Core, not the ORM's bulk UPDATE (which would look for loaded Study objects)
    # The lock; it returns the study row as it is now (the latest committed version once
    # the lock is ours), so the tally it returns counts every enrollment before this one.
    tally = session.execute(
        update(table).where(table.c.id == study_id).values(enrollments=table.c.enrollments + 1).returning(table.c.tally)
    ).scalar_one()
    if isinstance(study, int):
        study = session.get(Study, study_id)
    if prior is UNREAD:
        prior = prior_participation(session, study_id, key)
        resumed = _resume(session, study, who, stage, prior)
        if resumed is not None:
            return resumed
    attempt = prior.attempt + 1 if prior is not None else 1
    if tally is None:  # a study the tally does not cover yet: count the plans once
        tally = {}
        cells, counts = assignment_counts(session, study, who.mode)
    else:
        cells, counts = tally_counts(tally, who.mode)
    cell = least_filled(study, cells)
    seed = secrets.randbelow(2**31)
    person = (
        insert(Participant.__table__)
        .values(
            study_id=study_id,
            mode=who.mode,
            platform=who.platform,
            worker_id=who.worker_id,
            worker_key=key,
            attempt=attempt,
            assignment_id=who.assignment_id,
            hit_id=who.hit_id,
            platform_study_id=who.platform_study_id,
            session_id=who.session_id,
            turk_submit_to=who.turk_submit_to,
            user_agent=who.user_agent,
            pseudonym=pseudonym(study, f"{who.platform}:{key}" if key else secrets.token_hex(16)),
            condition=cell,
            seed=seed,
            stage=stage,
            status="active",
            events_n=0,
            events_bytes=0,
            created_at=utcnow(),
        )
        .returning(Participant.__table__.c.id)
    )
    plan = [
        (position, item.id, layout)
        for position, (item, layout) in enumerate(draw_plan(session, study, who.mode, cell, seed, counts))
    ]
    pid = _insert_participant(session, person, plan)
    cells[cell] += 1
    counts.update(item_pk for _position, item_pk, _layout in plan)
    session.execute(
        update(table)
        .where(table.c.id == study_id)
        .values(tally={**tally, who.mode: {"c": dict(cells), "i": {str(k): n for k, n in counts.items()}}})
    )
    return Enrolled(pid, stage, cell, True)


def _insert_participant(session: Session, person, plan: list[tuple[int, int, dict]]) -> int:
    """Insert the participant and their plan (one multi-row INSERT, not one ORM object per
    trial); the participant's id."""
    pid = session.execute(person).scalar_one()
    if plan:
        session.execute(
            insert(PlanEntry.__table__),
            [
                {"participant_id": pid, "position": position, "item_pk": item_pk, "layout": layout}
                for position, item_pk, layout in plan
            ],
        )
    return pid


def _resume(session: Session, study: Study | int, who: Recruitment, stage: str, prior: Row | None) -> Enrolled | None:
    """The same worker again: resume an active participation in this mode, never reshuffle
    (an Enrolled); refuse another participation where the study allows one
    (AlreadyParticipated); None: enroll anew (attempt ``prior.attempt + 1``)."""
    if prior is None:
        return None
    if prior.status == "active" and prior.mode == who.mode:
        if prior.stage == "consent" and stage != "consent":
            table = Participant.__table__
            session.execute(update(table).where(table.c.id == prior.id).values(stage=stage))
        return Enrolled(prior.id, stage if prior.stage == "consent" else prior.stage, prior.condition, False)
    settings = study.settings if not isinstance(study, int) else session.get(Study, study).settings
    # Every mode counts: a worker screened out live cannot start over in a test mode.
    if not settings.get("allow_repeat"):
        raise AlreadyParticipated("worker already took part in this study")
    if prior.status == "active":  # repeats are allowed, one at a time
        raise AlreadyParticipated("worker has an unfinished participation in this study")
    return None


def assignment_counts(session: Session, study: Study, mode: str) -> tuple[Counter, Counter]:
    """``(participants per condition, plan entries per item)`` of this study and mode, in
    one query."""
    in_study = (Participant.study_id == study.id, Participant.mode == mode)
    cells = (
        select(literal("c").label("kind"), Participant.condition.label("key"), func.count().label("n"))
        .where(*in_study)
        .group_by(Participant.condition)
    )
    items = (
        select(literal("i"), cast(PlanEntry.item_pk, String), func.count())
        .join(Participant, Participant.id == PlanEntry.participant_id)
        .where(*in_study)
        .group_by(PlanEntry.item_pk)
    )
    out: dict[str, Counter] = {"c": Counter(), "i": Counter()}
    for kind, key, n in session.execute(union_all(cells, items)).all():
        out[kind][key if kind == "c" else int(key)] = n
    return out["c"], out["i"]


def tally_counts(tally: dict, mode: str) -> tuple[Counter, Counter]:
    """:func:`assignment_counts` as the study's tally keeps them."""
    mine = tally.get(mode) or {}
    return Counter(mine.get("c", {})), Counter({int(k): n for k, n in mine.get("i", {}).items()})


def least_filled(study: Study, counts: Counter) -> str:
    """The condition with the fewest participants (ties: the first)."""
    cells = study.settings["conditions"]
    return min(cells, key=lambda c: (counts.get(c, 0), cells.index(c)))


# A study's items never change once it is created, and enrollment (which holds the study's
# write lock) needs all of them: read them once per process, as plain rows. The key holds
# the study's random secret, so a new study (or database) with the same id cannot hit.
_ITEMS: dict[tuple[int, str], list] = {}


def study_items(session: Session, study: Study) -> list:
    key = (study.id, study.secret)
    if key not in _ITEMS:
        if len(_ITEMS) >= 64:
            _ITEMS.clear()
        _ITEMS[key] = session.execute(
            select(
                Item.id,
                Item.image_id,
                Item.task,
                Item.stimulus_ids,
                Item.options,
                Item.method,
                Item.is_attention_check,
                Item.category,
            )
            .where(Item.study_id == study.id)
            .order_by(Item.id)
        ).all()
    return _ITEMS[key]


def draw_plan(session: Session, study: Study, mode: str, cell: str, seed: int, counts: Counter) -> list[tuple]:
    """The participant's trials in order, each with its counterbalanced layout.

    Trials: the condition's items with the fewest raters so far (ties broken by the seed),
    at most one per image, so items fill up to ``raters_per_item`` evenly. Attention
    checks: the least-used check items, at random positions after the first trial.
    Counterbalancing: half of the trials show the options (class discrimination) or the
    stronger model as "Model 1" (trust) one way round, half the other, shuffled.
    """
    settings = study.settings
    rng = random.Random(seed)
    items = study_items(session, study)
    pool = [it for it in items if not it.is_attention_check and (cell == "all" or it.method == cell)]
    checks = [it for it in items if it.is_attention_check]
    trials = _least_rated(pool, counts, settings["trials_per_participant"], rng, one_per_image=True)
    chosen_checks = _least_rated(checks, counts, settings["attention_checks"], rng, one_per_image=False)
    order = list(trials)
    for check in chosen_checks:
        order.insert(rng.randint(1, len(order)) if order else 0, check)
    # Each of the kind's arrangements equally often (the paper's kinds: two), in random order.
    arrangements = kind_of(study.kind).arrangements
    flips = [i % arrangements for i in range(len(order))]
    rng.shuffle(flips)
    return [(it, _layout(it, flip)) for it, flip in zip(order, flips, strict=True)]


def _least_rated(pool: list[Item], counts: Counter, n: int, rng: random.Random, one_per_image: bool) -> list[Item]:
    ranked = sorted(pool, key=lambda it: (counts[it.id], rng.random()))
    chosen, images = [], set()
    for it in ranked:
        if len(chosen) == n:
            break
        if one_per_image and it.image_id in images:
            continue
        chosen.append(it)
        images.add(it.image_id)
    if len(chosen) < n and one_per_image:  # fewer images than trials: allow repeats of an image
        chosen += [it for it in ranked if it not in chosen][: n - len(chosen)]
    return chosen


def _layout(item: Item, flip: int) -> dict:
    """The trial's counterbalanced layout, as the item's study kind arranges it."""
    return kind_of(item.task).layout(item, flip)
