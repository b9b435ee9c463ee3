"""Server child processes on loopback: a free port, waiting until one listens, stopping one,
and the stop signals of a parent that serves until it is told to stop.

Shared by ``camstudy demo``, the load benchmark and the end-to-end tests, which all start
``camstudy serve`` (or gunicorn) as a child and must end exactly what they started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(
    proc: subprocess.Popen, host: str, port: int, timeout: float = 60.0, cancelled: Callable[[], bool] | None = None
) -> None:
    """Return once ``host:port`` accepts connections, or as soon as ``cancelled()`` is true;
    ``RuntimeError`` if ``proc`` exits first or ``timeout`` seconds pass (the caller says
    where its log is)."""
    deadline = time.monotonic() + timeout
    while True:
        if cancelled is not None and cancelled():
            return
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


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM as a request to stop, whatever disposition was inherited.

    A process started as a background job of a non-interactive shell (``make demo &`` in a
    script, some CI runners) inherits SIGINT as *ignored*, and Python then installs no
    KeyboardInterrupt handler; a server child (gunicorn installs its own handlers) still
    quits on the Ctrl-C that reaches the whole process group, and the parent would see its
    server die for no reason it knows. So, as a context manager, this installs its own
    handler for both signals and restores the previous ones on exit.

    The handler only records the first signal in ``signum``; inside :meth:`raising` every
    signal also raises ``KeyboardInterrupt``, to cut long work short. Outside it nothing is
    raised, so a stop signal cannot break the parent's own cleanup. :meth:`wait` tells a
    stop request from a server that died on its own.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raise = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is None:
            self.signum = signum
        if self._raise:
            raise KeyboardInterrupt

    @contextmanager
    def raising(self) -> Iterator[None]:
        """A block that a stop signal interrupts with ``KeyboardInterrupt`` (also one that
        arrived before it)."""
        self._raise = True
        try:
            if self.signum is not None:
                raise KeyboardInterrupt
            yield
        finally:
            self._raise = False

    def wait(self, proc: subprocess.Popen, poll: float = 0.1) -> bool:
        """Block until a stop signal arrives (True) or ``proc`` exits on its own (False).

        A child that exits because of the same signal (Ctrl-C reaches the whole process
        group) counts as stopped: the signal is pending here before the child can exit,
        because the kernel marks it on every member of the group at once, so its C handler
        has run when the wait that sees the child's exit returns, and the Python handler
        runs at the interpreter's next check, which the Python calls after that wait inside
        ``proc.poll()`` make, before ``signum`` is read again.
        """
        while self.signum is None and proc.poll() is None:
            time.sleep(poll)
        return self.signum is not None
