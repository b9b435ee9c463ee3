"""Rate limits kept in the database, so every worker process and every host counts alike.

A limit counts the rows of one key (``enroll:<address>``, ``login-addr:<address>``, ...)
in a sliding window. Rows are written inside the caller's transaction: a request that
fails (a 503 while the database restarts) rolls its row back and costs nothing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from study.models import Throttle, utcnow

KEEP = timedelta(days=1)  # rows older than every window are swept
MAX_KEY = 200


def clip(key: str) -> str:
    """The key as stored (keys are cut to the column's length)."""
    return key[:MAX_KEY]


def count(session: Session, key: str, window_s: float) -> int:
    """Rows of ``key`` in the last ``window_s`` seconds."""
    since = utcnow() - timedelta(seconds=window_s)
    return session.scalar(select(func.count()).select_from(Throttle).where(Throttle.key == clip(key), Throttle.at > since))


def retry_after(session: Session, key: str, limit: int, window_s: float) -> int:
    """Seconds until ``key`` is under ``limit`` again (0: allowed now)."""
    since = utcnow() - timedelta(seconds=window_s)
    times = session.scalars(select(Throttle.at).where(Throttle.key == clip(key), Throttle.at > since)
                            .order_by(Throttle.at.desc()).limit(limit)).all()
    if len(times) < limit:
        return 0
    oldest = times[-1]
    if oldest.tzinfo is None:  # SQLite hands back naive UTC times
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)
    wait = window_s - (utcnow() - oldest).total_seconds()
    return max(int(wait) + 1, 1)


def hit(session: Session, *keys: str) -> None:
    """Count one event under each key."""
    now = utcnow()
    session.add_all([Throttle(key=clip(k), at=now) for k in keys])


def clear(session: Session, *keys: str) -> None:
    session.execute(delete(Throttle).where(Throttle.key.in_([clip(k) for k in keys])))


def sweep(session: Session) -> None:
    """Forget rows older than every window."""
    session.execute(delete(Throttle).where(Throttle.at < utcnow() - KEEP))
