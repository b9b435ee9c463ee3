"""Engine, sessions and schema checks: the one place the database is set up.

SQLite is the embedded default (WAL journal, a busy timeout, ``synchronous=FULL`` so an
acknowledged answer survives a crash of the machine); PostgreSQL (psycopg 3) is the
production database. The schema belongs to Alembic: the app refuses a database that is
not at the migrations' head and says which command fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from camstudy.errors import UserError

# Package data, found like any other (an installed wheel has it unpacked beside the
# modules: Alembic needs a real folder, which importlib.resources gives for such installs).
MIGRATIONS = Path(str(resources.files("study") / "migrations"))
DEFAULT_URL = "sqlite:///instance/camstudy.db"


def database_url(url: str | None = None) -> str:
    """``url``, else ``CAMSTUDY_DATABASE_URL``, else a SQLite file in ./instance/."""
    url = url or os.environ.get("CAMSTUDY_DATABASE_URL") or DEFAULT_URL
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]  # psycopg 3, not psycopg2
    return url


def make_engine(url: str | None = None, pre_ping: bool = False) -> Engine:
    """The engine for ``url``. ``pre_ping``: test each pooled PostgreSQL connection before
    use (a round trip each time; for clients that must ride out a database restart without
    an error, such as the simulated participants' answer key)."""
    url = database_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it is a round trip before every request. A connection that died (the
    # database restarted) fails its next statement instead; SQLAlchemy then discards the
    # whole pool, the request answers 503 with Retry-After, and the retry reconnects.
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=pre_ping)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None) -> str:
    """Bring the database to the migrations' head; return the head revision."""
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = alembic_config(database_url(url))
    make_engine(url).dispose()  # creates the SQLite folder if needed
    command.upgrade(cfg, "head")
    return ScriptDirectory.from_config(cfg).get_current_head()


def check_current(engine: Engine) -> None:
    """Raise :class:`UserError` unless the database is at the migrations' head."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        state = "not migrated" if current is None else f"at revision {current}, not {head}"
        raise UserError(f"the database is {state}: run `camstudy db upgrade` first")


def shared_secret(engine: Engine, name: str = "flask") -> str:
    """The app's signing key from the database, created by the first process that asks.
    Every worker and every host reads the same row, so a cookie, participant token or image
    URL signed by one is valid on all."""
    import secrets

    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from study.models import AppSecret

    factory = session_factory(engine)
    with factory() as s:
        value = s.scalar(select(AppSecret.value).where(AppSecret.name == name))
    if value is not None:
        return value
    try:
        with transaction(factory) as s:
            s.add(AppSecret(name=name, value=secrets.token_hex(32)))
    except IntegrityError:  # another process created it first: use theirs
        pass
    with factory() as s:
        return s.scalar(select(AppSecret.value).where(AppSecret.name == name))
