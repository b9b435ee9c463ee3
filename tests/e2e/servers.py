"""Real servers for the end-to-end tests: ``camstudy serve`` (gunicorn) on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from camstudy.processes import free_port, stop, wait_listening


def wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Gunicorn:
    """``camstudy serve`` in its own process group, so SIGKILL reaches master and workers."""

    def __init__(
        self, db: str, instance: Path, port: int | None = None, workers: int = 2, env: dict[str, str] | None = None
    ) -> None:
        self.db, self.instance, self.port, self.workers = db, instance, port or free_port(), workers
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        # The defaults, which ``env`` may change (a value of None removes the variable).
        self.env = {
            "CAMSTUDY_SECRET_KEY": "fault-test-secret",
            "CAMSTUDY_ENROLL_RATE_PER_MINUTE": "10000",
            **(env or {}),
        }

    def start(self) -> Gunicorn:
        env = {**os.environ, "CAMSTUDY_DATABASE_URL": self.db, "CAMSTUDY_INSTANCE": str(self.instance)}
        for k, v in self.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        camstudy = Path(sys.executable).with_name("camstudy")
        self.log = open(self.instance.parent / f"gunicorn-{self.port}.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(camstudy), "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_listening(self.proc, "127.0.0.1", self.port, timeout=60)
        return self

    def kill(self) -> None:
        """SIGKILL to the whole process group: no graceful shutdown of any worker."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=20, group=True)
        if not self.log.closed:
            self.log.close()
