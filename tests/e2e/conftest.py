"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import pytest

from tests.e2e.servers import Gunicorn


@pytest.fixture
def gunicorn(migrated, tmp_path):
    servers: list[Gunicorn] = []

    def start(port: int | None = None) -> Gunicorn:
        servers.append(Gunicorn(migrated, tmp_path / "instance", port).start())
        return servers[-1]

    yield start
    for s in servers:
        s.stop()
