"""``camstudy serve``: gunicorn really serves the app (loopback, a few requests, then stopped)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from camstudy.processes import free_port


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_runs_gunicorn_workers(migrated, studies, tmp_path):
    port = free_port()
    env = {**os.environ, "CAMSTUDY_DATABASE_URL": migrated, "CAMSTUDY_INSTANCE": str(tmp_path / "instance")}
    camstudy = Path(sys.executable).with_name("camstudy")
    proc = subprocess.Popen(
        [str(camstudy), "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/s/{studies['class_discrimination']}/?PROLIFIC_PID=w1"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    assert r.status == 200 and r.headers["Server"].startswith("gunicorn")
                    assert "Content-Security-Policy" in r.headers
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        # The signing key was created once in the database (every host shares it), not in a file.
        with create_engine(migrated).connect() as conn:
            assert len(conn.execute(text("SELECT value FROM app_secret")).scalars().all()) == 1
        assert not (tmp_path / "instance" / "secret_key").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "Booting worker" in out


def test_serve_refuses_an_unmigrated_database(tmp_path):
    env = {
        **os.environ,
        "CAMSTUDY_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}",
        "CAMSTUDY_INSTANCE": str(tmp_path / "instance"),
    }
    camstudy = Path(sys.executable).with_name("camstudy")
    r = subprocess.run(
        [str(camstudy), "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "camstudy db upgrade" in r.stderr and "Traceback" not in r.stderr
