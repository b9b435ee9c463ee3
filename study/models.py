"""The study database: SQLAlchemy 2.0 typed models. Alembic (``study/migrations/``) owns the schema.

Every timestamp is timezone-aware UTC. A study holds its stimuli and items (copied from a
stimulus build's manifest and plan); a participant holds the trial plan drawn at
enrollment (``PlanEntry``, one row per position) and at most one answer per position
(``Answer``, unique on participant and position: a retried POST cannot write twice).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from study.recruitment import MODES, PLATFORMS  # noqa: F401 - re-exported: defined once, there


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON, list: JSON}


STATUSES = ("active", "completed", "screened_out")


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # class_discrimination | trust
    config_toml: Mapped[str] = mapped_column(Text)
    config_sha256: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict]  # the validated study config, as JSON
    stimuli_dir: Mapped[str] = mapped_column(Text)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    secret: Mapped[str] = mapped_column(String(64))  # HMAC key of the export's pseudonyms
    enrollments: Mapped[int] = mapped_column(Integer, default=0)  # bumped first: the enrollment lock
    # Assignments so far, per mode: {"live": {"c": {condition: participants}, "i": {item pk:
    # plan entries}}, ...}. Enrollment reads it with the lock and writes it in the same
    # transaction as the plan (study.enroll), so it always equals what the plans hold, and
    # an enrollment reads a few hundred counts instead of every plan entry of the study.
    tally: Mapped[dict | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The pre-registration (``camstudy preregister``, analysis.preregistration): the frozen
    # analysis plan as canonical JSON (text, so its bytes stay those hashed), its sha256 and
    # when it was frozen. None until frozen; never changed after (the command refuses, and
    # ``camstudy analyze`` refuses a JSON that does not hash to the sha256).
    prereg_sha256: Mapped[str | None] = mapped_column(String(64))
    prereg_json: Mapped[str | None] = mapped_column(Text)
    prereg_frozen_at: Mapped[datetime | None]

    items: Mapped[list[Item]] = relationship(back_populates="study", cascade="all, delete-orphan")


class Stimulus(Base):
    __tablename__ = "stimulus"
    __table_args__ = (UniqueConstraint("study_id", "stimulus_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    stimulus_id: Mapped[str] = mapped_column(String(300))
    file: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    model_role: Mapped[str] = mapped_column(String(16))
    provenance: Mapped[dict]  # the whole manifest row
    # The byte size the browser gets: shared by every stimulus ever shown beside this one
    # (the file is padded up to it when served, see study.blinding).
    served_size: Mapped[int | None]
    # The same stimulus rendered at twice the display size (for screens with two or more
    # device pixels per CSS pixel; the manifest row's how_2x says how it was made) and its
    # served size, padded per group like served_size. None for builds without 2x files.
    file_2x: Mapped[str | None] = mapped_column(Text)
    served_size_2x: Mapped[int | None]


class Item(Base):
    __tablename__ = "item"
    __table_args__ = (UniqueConstraint("study_id", "item_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(String(300))
    task: Mapped[str] = mapped_column(String(32))
    image_id: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(32))
    model_role: Mapped[str | None] = mapped_column(String(16))
    stimulus_ids: Mapped[list]
    options: Mapped[list | None]
    correct_answer: Mapped[str | None] = mapped_column(String(200))
    expected_answer: Mapped[int | None]
    is_attention_check: Mapped[bool] = mapped_column(Boolean, default=False)

    study: Mapped[Study] = relationship(back_populates="items")


class Participant(Base):
    __tablename__ = "participant"
    __table_args__ = (
        # One participation per worker per study and mode; ``attempt`` > 1 only where the
        # study allows repeats. Rows without a worker id (plain links) are not constrained.
        UniqueConstraint("study_id", "mode", "worker_id", "attempt"),
        Index("ix_participant_cell", "study_id", "mode", "condition"),
        # One participation per person across modes (worker_key is the normalised id); a
        # concurrent second enrollment of the same person fails here (see study.enroll).
        UniqueConstraint("study_id", "worker_key", "attempt", name="uq_participant_worker_key_attempt"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(16))
    platform: Mapped[str] = mapped_column(String(16))
    worker_id: Mapped[str | None] = mapped_column(String(200))  # as the platform sent it
    # The worker id normalised for the one-participation check (study.recruitment.worker_key):
    # the same person with the id in another case, with spaces or zero-width characters has
    # the same key.
    worker_key: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    assignment_id: Mapped[str | None] = mapped_column(String(200))
    hit_id: Mapped[str | None] = mapped_column(String(200))
    platform_study_id: Mapped[str | None] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(String(200))
    turk_submit_to: Mapped[str | None] = mapped_column(Text)
    pseudonym: Mapped[str] = mapped_column(String(64))
    condition: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")
    stage: Mapped[str] = mapped_column(String(16), default="consent")
    questionnaire: Mapped[dict | None]
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # Events posted so far (count and detail bytes), capped per participant.
    events_n: Mapped[int] = mapped_column(Integer, default=0)
    events_bytes: Mapped[int] = mapped_column(Integer, default=0)

    plan: Mapped[list[PlanEntry]] = relationship(
        back_populates="participant", order_by="PlanEntry.position", cascade="all, delete-orphan"
    )


class PlanEntry(Base):
    __tablename__ = "plan_entry"
    __table_args__ = (UniqueConstraint("participant_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    item_pk: Mapped[int] = mapped_column(ForeignKey("item.id"))
    # Counterbalancing drawn at enrollment: the option order (class discrimination) or which
    # model is shown as "Model 1" on the left (trust).
    layout: Mapped[dict]

    participant: Mapped[Participant] = relationship(back_populates="plan")
    item: Mapped[Item] = relationship()


class Answer(Base):
    __tablename__ = "answer"
    __table_args__ = (UniqueConstraint("participant_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    answer: Mapped[str] = mapped_column(String(200))
    correct: Mapped[bool | None]
    score_stronger: Mapped[int | None]
    rt_ms: Mapped[float] = mapped_column(Float)
    shown_at: Mapped[datetime | None]
    answered_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    __tablename__ = "event"
    __table_args__ = (Index("ix_event_participant", "participant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    position: Mapped[int | None]
    detail: Mapped[dict | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminUser(Base):
    __tablename__ = "admin_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminSession(Base):
    """A server-side admin session: the cookie holds a random token, the database its
    sha256. Logout deletes the row; a password change deletes every row of the user."""

    __tablename__ = "admin_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_user.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Throttle(Base):
    """One counted event (a failed login, an enrollment) under a key such as
    ``login-addr:203.0.113.9``: the limits count rows in a sliding window, so every worker
    process and every host shares them."""

    __tablename__ = "throttle"
    __table_args__ = (Index("ix_throttle_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AppSecret(Base):
    """The app's signing key, created once, so that every host signs and checks cookies,
    participant tokens and image URLs alike (unless ``CAMSTUDY_SECRET_KEY`` is set)."""

    __tablename__ = "app_secret"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
