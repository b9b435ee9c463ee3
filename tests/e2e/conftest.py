"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.servers import Gunicorn

CAMSTUDY = str(Path(sys.executable).with_name("camstudy"))


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory) -> Path:
    """``camstudy demo --simulate 8 --no-serve`` once per session: the real offline models'
    stimuli, both studies and their simulated participants (test_demo, test_demo_pages)."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="the offline demo pair is not installed")
    out = tmp_path_factory.mktemp("demo")
    run = subprocess.run(
        [CAMSTUDY, "demo", "--out", str(out), "--device", "cpu", "--simulate", "8", "--no-serve"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (out / "first-run.txt").write_text(run.stdout)
    return out


@pytest.fixture
def gunicorn(migrated, tmp_path):
    servers: list[Gunicorn] = []

    def start(port: int | None = None) -> Gunicorn:
        servers.append(Gunicorn(migrated, tmp_path / "instance", port).start())
        return servers[-1]

    yield start
    for s in servers:
        s.stop()
