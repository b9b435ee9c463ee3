"""Rate limits kept in the database, so every worker process and every host counts alike.

A limit counts the rows of one key (``enroll:<address>``, ``login-addr:<address>``, ...)
in a sliding window. The functions take a session or a connection; a row is counted only
for what happened (a failed login; an enrollment once it is committed), so a request that
failed on the database (a 503 while it restarts) costs nothing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.orm import Session

from study.models import Throttle, utcnow

KEEP = timedelta(days=1)  # rows older than every window are swept
MAX_KEY = 200


def clip(key: str) -> str:
    """The key as stored (keys are cut to the column's length)."""
    return key[:MAX_KEY]


def retry_after(session: Session, key: str, limit: int, window_s: float) -> int:
    """Seconds until ``key`` is under ``limit`` again (0: allowed now)."""
    since = utcnow() - timedelta(seconds=window_s)
    times = session.scalars(
        select(Throttle.at)
        .where(Throttle.key == clip(key), Throttle.at > since)
        .order_by(Throttle.at.desc())
        .limit(limit)
    ).all()
    if len(times) < limit:
        return 0
    oldest = times[-1]
    if oldest.tzinfo is None:  # SQLite hands back naive UTC times
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)
    wait = window_s - (utcnow() - oldest).total_seconds()
    return max(int(wait) + 1, 1)


_TABLE = Throttle.__table__


def hit(db: Session | Connection, *keys: str) -> None:
    """Count one event under each key."""
    now = utcnow()
    db.execute(insert(_TABLE), [{"key": clip(k), "at": now} for k in keys])


def clear(db: Session | Connection, *keys: str) -> None:
    db.execute(delete(_TABLE).where(_TABLE.c.key.in_([clip(k) for k in keys])))


def sweep(db: Session | Connection) -> None:
    """Forget rows older than every window."""
    db.execute(delete(_TABLE).where(_TABLE.c.at < utcnow() - KEEP))
