"""Enrollment: balanced conditions under concurrency, rater spread, stored plans, schema checks."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select

from camstudy.errors import UserError
from study.app import create_app
from study.db import make_engine, session_factory, transaction
from study.enroll import Recruitment, enroll
from study.models import Item, Participant, PlanEntry, Study


def _study_id(factory, slug):
    with factory() as s:
        return s.scalar(select(Study.id).where(Study.slug == slug))


def test_concurrent_enrollments_are_balanced(migrated, studies):
    engine = make_engine(migrated)
    factory = session_factory(engine)
    sid = _study_id(factory, studies["class_discrimination"])
    n = 25
    barrier = threading.Barrier(n)
    errors = []

    def one(i):
        barrier.wait()
        try:
            with transaction(factory) as s:
                enroll(s, sid, Recruitment(platform="prolific", worker_id=f"w{i}"))
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with factory() as s:
        cells = Counter(s.scalars(select(Participant.condition).where(Participant.study_id == sid)))
        conditions = s.get(Study, sid).settings["conditions"]
    assert sum(cells.values()) == n
    assert set(cells) == set(conditions) and max(cells.values()) - min(cells.values()) <= 1
    engine.dispose()


def test_items_fill_up_evenly_and_modes_are_apart(migrated, studies):
    engine = make_engine(migrated)
    factory = session_factory(engine)
    sid = _study_id(factory, studies["trust"])
    for _ in range(6):
        with transaction(factory) as s:
            enroll(s, sid, Recruitment(platform="plain"))
    with transaction(factory) as s:
        debug = enroll(s, sid, Recruitment(mode="debug"))
        debug_cell = debug.condition
    with factory() as s:
        rows = s.execute(
            select(PlanEntry.item_pk, Participant.mode)
            .join(Participant, Participant.id == PlanEntry.participant_id)
            .join(Item, Item.id == PlanEntry.item_pk)
            .where(Item.is_attention_check.is_(False))
        ).all()
        live = Counter(pk for pk, mode in rows if mode == "live")
    assert max(live.values()) - min(live.values()) <= 1  # least-rated first: even spread
    assert debug_cell == "all"  # trust is within-subject: one cell, and debug counts apart
    engine.dispose()


def test_plan_is_stored_and_counterbalanced(migrated, studies):
    engine = make_engine(migrated)
    factory = session_factory(engine)
    sid = _study_id(factory, studies["class_discrimination"])
    with transaction(factory) as s:
        p = enroll(s, sid, Recruitment(platform="prolific", worker_id="x"))
        pid = p.id
    with factory() as s:
        entries = s.scalars(select(PlanEntry).where(PlanEntry.participant_id == pid).order_by(PlanEntry.position)).all()
        cell = s.get(Participant, pid).condition
        available = set(
            s.scalars(
                select(Item.image_id).where(
                    Item.study_id == sid, Item.method == cell, Item.is_attention_check.is_(False)
                )
            )
        )
        images = [e.item.image_id for e in entries if not e.item.is_attention_check]
        checks = [e.position for e in entries if e.item.is_attention_check]
        flips = [e.layout["options"] != e.item.options for e in entries]
    assert len(images) == 4 and len(set(images)) == min(4, len(available))  # one item per image while images last
    assert checks and 0 not in checks  # a check never opens the study
    assert abs(sum(flips) - (len(flips) - sum(flips))) <= 1  # option order balanced
    with transaction(factory) as s:
        again = enroll(s, sid, Recruitment(platform="prolific", worker_id="x"))
        assert again.id == pid  # the same worker resumes, nothing is redrawn
    engine.dispose()


def test_app_refuses_an_unmigrated_database(tmp_path):
    with pytest.raises(UserError, match="not migrated: run `camstudy db upgrade` first"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "SECRET_KEY": "x"})


def test_the_tally_equals_what_the_plans_hold(migrated, studies):
    """Enrollment balances by the study's tally, not by counting plan entries: after
    concurrent enrollments in two modes it must equal the counts the plans give."""
    from study.enroll import assignment_counts, tally_counts

    engine = make_engine(migrated)
    factory = session_factory(engine)
    sid = _study_id(factory, studies["class_discrimination"])
    barrier = threading.Barrier(12)

    def one(i):
        barrier.wait()
        with transaction(factory) as s:
            enroll(s, sid, Recruitment(mode="debug" if i % 3 == 0 else "live", platform="prolific", worker_id=f"t{i}"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with factory() as s:
        study = s.get(Study, sid)
        for mode in ("live", "debug"):
            assert tally_counts(study.tally, mode) == assignment_counts(s, study, mode), mode
    engine.dispose()
