"""Faults with simulated participants active: the real server (gunicorn, a separate process
group on loopback) is killed with SIGKILL and restarted, the connection drops and comes
back, PostgreSQL restarts, and two browsers of one participant answer the same trial.

After each fault every bot must finish, and the database must hold every acknowledged
answer exactly once, equal to its acknowledgement, at positions 0..n-1 of its participant.
Each test is bounded: few bots, short trials, and a deadline on every wait.
"""

from __future__ import annotations

import os
import random
import select as io_select
import socket
import subprocess
import threading
import time

import pytest
from sqlalchemy import func, select

from bots import PROFILES, Bot, Report, StudyKey, simulate
from study.db import make_engine, session_factory
from study.models import Answer, Participant, PlanEntry
from tests.e2e.servers import wait_until
from tests.study import conftest as study_fixtures

stimuli_dir = study_fixtures.stimuli_dir
db_url = study_fixtures.db_url
migrated = study_fixtures.migrated
studies = study_fixtures.studies

PG_RESTART = os.environ.get("CAMSTUDY_TEST_PG_RESTART")  # a command that restarts the test PostgreSQL
REQUIRE_PG = os.environ.get("CAMSTUDY_REQUIRE_POSTGRES") == "1"
STEADY = PROFILES["steady"]


def answers_in_db(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return c.scalar(select(func.count()).select_from(Answer))
    finally:
        engine.dispose()


def assert_exactly_once(url: str, report: Report) -> None:
    """Every bot finished; each acknowledged answer is stored once, as acknowledged."""
    assert all(r.status == "completed" for r in report.results), report.summary()
    assert sum(r.resume_errors for r in report.results) == 0, report.summary()
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            total_rows = 0
            for r in report.results:
                p = s.scalar(select(Participant).where(Participant.worker_id == r.worker_id))
                assert p is not None and p.status == "completed", r.worker_id
                stored = dict(
                    s.execute(select(Answer.position, Answer.answer).where(Answer.participant_id == p.id)).all()
                )
                n_plan = s.scalar(select(func.count()).select_from(PlanEntry).where(PlanEntry.participant_id == p.id))
                assert sorted(stored) == list(range(n_plan)), (r.worker_id, sorted(stored))
                assert stored == r.acknowledged, r.worker_id
                total_rows += len(stored)
            assert s.scalar(select(func.count()).select_from(Answer)) == total_rows
    finally:
        engine.dispose()


def run_in_background(base: str, slug: str, url: str, n: int, **kw):
    """Start ``n`` steady bots in a thread; returns (thread, holder of the report)."""
    out: dict = {}

    def go() -> None:
        try:
            out["report"] = simulate(base, slug, n, profile=STEADY, db_url=url, give_up_s=90, **kw)
        except Exception as e:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = e

    t = threading.Thread(target=go, name="bots", daemon=True)
    t.start()
    return t, out


def finished(t: threading.Thread, out: dict) -> Report:
    t.join(150)
    assert not t.is_alive(), "the bots did not finish within 150 s"
    if "error" in out:
        raise out["error"]
    return out["report"]


# ---------------------------------------------------------------- SIGKILL


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("task", ["class_discrimination", "trust"])
def test_sigkill_mid_run_loses_and_duplicates_nothing(gunicorn, migrated, studies, task):
    server = gunicorn()
    t, out = run_in_background(server.base, studies[task], migrated, 24, concurrency=8, pace_s=0.05, seed=1)
    wait_until(lambda: answers_in_db(migrated) >= 25, 60, "answers before the kill")
    server.kill()
    before = answers_in_db(migrated)
    time.sleep(1.0)  # the bots' requests now fail and are retried
    gunicorn(server.port)  # the same address, as a supervisor would restart it
    report = finished(t, out)
    assert_exactly_once(migrated, report)
    assert answers_in_db(migrated) > before  # the run went on after the restart
    assert sum(r.retries for r in report.results) > 0, "the kill did not interrupt any bot"
    assert sum(r.reloads for r in report.results) > 0, "no bot reloaded after the restart"


# ---------------------------------------------------------------- connection drop


class Proxy:
    """A TCP relay on loopback whose connections can be cut: while ``down`` it closes every
    open connection (requests in flight lose their response, even when the server already
    committed them) and resets new ones."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.down = threading.Event()
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.cut = 0
        threading.Thread(target=self._accept, daemon=True, name="proxy").start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.down.is_set():
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # a reset: the connection is refused
                self.cut += 1
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self.lock:
            self.open |= {client, upstream}
        try:
            pair = {client: upstream, upstream: client}
            while not self.down.is_set() and not self.closing.is_set():
                ready, _, _ = io_select.select(list(pair), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= {client, upstream}
            if self.down.is_set():
                self.cut += 1
            client.close()
            upstream.close()

    def close(self) -> None:
        self.closing.set()
        self.listener.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_connection_drop_delivers_every_answer_once_in_order(gunicorn, migrated, studies):
    server = gunicorn()
    proxy = Proxy(server.port)
    try:
        t, out = run_in_background(
            proxy.base, studies["class_discrimination"], migrated, 24, concurrency=8, pace_s=0.05, seed=2
        )
        wait_until(lambda: answers_in_db(migrated) >= 25, 60, "answers before the drop")
        proxy.down.set()
        time.sleep(1.5)
        during = answers_in_db(migrated)
        time.sleep(0.5)
        assert answers_in_db(migrated) == during, "answers got through while the connection was down"
        proxy.down.clear()
        report = finished(t, out)
    finally:
        proxy.close()
    assert proxy.cut > 0
    assert_exactly_once(migrated, report)
    # In order: each participant's answers were stored in position order.
    engine = make_engine(migrated)
    with engine.connect() as c:
        rows = c.execute(select(Answer.participant_id, Answer.position).order_by(Answer.id)).all()
    engine.dispose()
    last: dict[int, int] = {}
    for pid, pos in rows:
        assert pos == last.get(pid, -1) + 1, (pid, pos)
        last[pid] = pos


# ---------------------------------------------------------------- PostgreSQL restart


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgres_restart_mid_run_needs_no_app_restart(gunicorn, migrated, studies):
    if not PG_RESTART:
        if REQUIRE_PG:
            pytest.fail("CAMSTUDY_REQUIRE_POSTGRES=1 but CAMSTUDY_TEST_PG_RESTART (a restart command) is not set")
        pytest.skip("set CAMSTUDY_TEST_PG_RESTART to a command that restarts the test PostgreSQL")
    server = gunicorn()
    t, out = run_in_background(server.base, studies["trust"], migrated, 24, concurrency=8, pace_s=0.05, seed=3)
    wait_until(lambda: answers_in_db(migrated) >= 25, 60, "answers before the restart")
    subprocess.run(PG_RESTART, shell=True, check=True, timeout=60, stdout=subprocess.DEVNULL)
    report = finished(t, out)
    assert server.proc.poll() is None  # the same server process served the whole run
    assert_exactly_once(migrated, report)
    assert sum(r.retries for r in report.results) > 0, "the restart interrupted no request"


# ---------------------------------------------------------------- two browsers


@pytest.mark.parametrize("task", ["class_discrimination", "trust"])
def test_two_browsers_of_one_participant_get_one_answer(gunicorn, migrated, studies, task):
    """Two tabs of the same participant (same cookies and token) send different answers
    for the same trial at the same moment, to two server workers: one answer is kept and
    both tabs get its acknowledgement."""
    server = gunicorn()
    key = StudyKey(migrated, studies[task], "live")
    first = Bot(server.base, studies[task], "two-tabs", STEADY, key, random.Random(0), 0, 30, 0.05)
    first.enter()
    plan = first.plan()
    second = Bot(server.base, studies[task], "two-tabs", STEADY, key, random.Random(1), 0, 30, 0.05)
    second.client.cookies = dict(first.client.cookies)
    second.token = first.token
    for trial in plan["trials"]:
        pos = trial["position"]
        choices = trial["options"] if task == "class_discrimination" else [-2, 2]
        acks: list[dict] = [{}, {}]
        gate = threading.Barrier(2)

        def send(i: int, bot: Bot, answer, pos=pos, acks=acks, gate=gate) -> None:
            gate.wait()
            acks[i] = bot.answer(pos, answer, 900.0)

        threads = [threading.Thread(target=send, args=(i, b, choices[i])) for i, b in enumerate((first, second))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert acks[0] == acks[1] and acks[0]["position"] == pos, acks
        assert acks[0]["answer"] in {str(c) for c in choices}
    key.close()
    engine = make_engine(migrated)
    with engine.connect() as c:
        rows = c.execute(select(Answer.position, Answer.answer)).all()
    engine.dispose()
    assert sorted(p for p, _ in rows) == list(range(len(plan["trials"])))
    assert dict(rows) == first.result.acknowledged == second.result.acknowledged
