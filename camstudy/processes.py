"""Server child processes on loopback: a free port, waiting until one listens, stopping one.

Shared by ``camstudy demo``, the load benchmark and the end-to-end tests, which all start
``camstudy serve`` (or gunicorn) as a child and must end exactly what they started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, host: str, port: int, timeout: float = 60.0) -> None:
    """Return once ``host:port`` accepts connections; ``RuntimeError`` if ``proc`` exits
    first or ``timeout`` seconds pass (the caller says where its log is)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not accept connections within {timeout:g} s") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen, timeout: float = 30.0, group: bool = False) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL after ``timeout`` seconds. With
    ``group`` the signals go to the process group of ``proc``, which must have been started
    with ``start_new_session=True`` (master and workers alike)."""
    def send(sig: int) -> None:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    if proc.poll() is None:
        send(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(10)
