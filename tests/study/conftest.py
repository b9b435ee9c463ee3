"""Fixtures of the study-app tests: a tiny stimulus build, databases, the app and clients.

Every database test runs on SQLite and, where ``CAMSTUDY_TEST_POSTGRES_URL`` names a
PostgreSQL database, on PostgreSQL too. ``CAMSTUDY_REQUIRE_POSTGRES=1`` (set by CI) turns a
missing PostgreSQL into a failure instead of a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from study.app import create_app
from study.db import session_factory, transaction, upgrade
from study.settings import load_study_config
from study.setup import create_study

PG_URL = os.environ.get("CAMSTUDY_TEST_POSTGRES_URL")
REQUIRE_PG = os.environ.get("CAMSTUDY_REQUIRE_POSTGRES") == "1"

# The consent page's fields: every study that can run live must declare them.
CONSENT_TOML = """
[consent]
researcher = "Dr Test Researcher"
institution = "Test University"
contact = "researcher@example.org"
ethics_approval = "TEST-ETHICS-1"
pay = "USD 1.00"
minutes = 5
data_retention = "Kept for the test run only."
"""

CD_TOML = (
    """
title = "Which category does the highlighted evidence show?"
task = "class_discrimination"
slug = "cd"
trials_per_participant = 4
raters_per_item = 3
attention_checks = 1
platform = "prolific"
[completion]
code = "DONE123"
screened_out_code = "SCREEN9"
redirect_url = "https://app.prolific.com/submissions/complete?cc={code}"
"""
    + CONSENT_TOML
)

TRUST_TOML = (
    """
title = "Which model is more reliable?"
task = "trust"
slug = "trust"
trials_per_participant = 5
raters_per_item = 3
attention_checks = 1
platform = "mturk"
"""
    + CONSENT_TOML
)


@pytest.fixture(scope="session")
def stimuli_dir(tmp_path_factory) -> Path:
    """A finished stimulus build of the tiny colour study (see tests/stimuli/conftest.py)."""
    from stimuli.build import build
    from stimuli.config import load_config
    from tests.stimuli.conftest import make_study

    root = tmp_path_factory.mktemp("stimuli")
    cfg = load_config(make_study(root))
    build(cfg, cfg.out, progress=False)
    return cfg.out


@pytest.fixture(scope="session")
def hive_stimuli_dir(tmp_path_factory) -> Path:
    """The tiny colour study's build with HIVE distinction planned as well."""
    from stimuli.build import build
    from stimuli.config import load_config
    from tests.stimuli.conftest import make_study

    root = tmp_path_factory.mktemp("hive-stimuli")
    cfg = load_config(make_study(root, methods=["gradcam", "guided_backprop", "guided_gradcam"], hive=True))
    build(cfg, cfg.out, progress=False)
    return cfg.out


def _fresh_postgres(url: str) -> str:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("CAMSTUDY_REQUIRE_POSTGRES=1 but CAMSTUDY_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL not configured (set CAMSTUDY_TEST_POSTGRES_URL)")
    return _fresh_postgres(PG_URL)


def write_config(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(body)
    return path


@pytest.fixture
def migrated(db_url) -> str:
    upgrade(db_url)
    return db_url


@pytest.fixture
def studies(migrated, stimuli_dir, tmp_path) -> dict:
    """Both paper studies created on the tiny stimuli; returns their slugs by task."""
    factory = session_factory(create_engine_for(migrated))
    out = {}
    for name, body in (("cd", CD_TOML), ("trust", TRUST_TOML)):
        cfg = load_study_config(write_config(tmp_path, name, body))
        with transaction(factory) as s:
            out[cfg.task] = create_study(s, cfg, stimuli_dir).slug
    return out


def create_engine_for(url: str):
    from study.db import make_engine

    return make_engine(url)


@pytest.fixture
def app(migrated, studies, tmp_path):
    app = create_app({"DATABASE_URL": migrated, "SECRET_KEY": "test-secret", "TESTING": True})
    app.config["STUDIES"] = studies
    yield app
    app.extensions["camstudy.engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
