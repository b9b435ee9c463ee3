"""Load: 200 concurrent simulated participants against the study server and a floor server.

For each database (SQLite WAL; PostgreSQL when available) and each of two loads:

* ``saturated``: every participant answers as fast as the server acknowledges (no think
  time), which measures capacity: answers per second;
* ``paced``: every participant waits ``--think-ms`` before each answer (people take
  seconds) and the participants arrive over ``--ramp-s`` seconds (not all in the same
  instant), which measures the latency a participant feels at that concurrency;

it runs the same bots (``bots``, the real HTTP flow: entry, consent, task page,
plan, answers, completion) first against ``camstudy serve`` (gunicorn) with a
class-discrimination study on the demo stimuli, then against the floor server
(``bench/floor_app.py``: one INSERT and commit per request on the same database, served
by gunicorn with the same workers). It prints answers per second, p50/p99 answer latency
and the ratio of the app's throughput to the floor's, then checks the app's database:
every acknowledged answer is there exactly once (``bots.audit``).

Targets (issue 6): zero lost and zero duplicated answers; throughput >= 0.5 of the floor's;
p99 under 100 ms at 200 concurrent participants (the paced load).
Loopback only; every server it starts is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

from bots import PROFILES, audit, simulate
from camstudy.processes import free_port, stop, wait_listening
from study.db import database_url, session_factory, transaction, upgrade

ROOT = Path(__file__).resolve().parent.parent
STUDY = """
title = "Which category does the highlighted evidence show?"
task = "class_discrimination"
slug = "load"
trials_per_participant = {trials}
raters_per_item = 9
attention_checks = 2
design = "between"
platform = "prolific"
practice = false
questionnaire = false

[consent]
researcher = "camstudy load benchmark"
institution = "none"
contact = "none"
ethics_approval = "none (synthetic participants)"
pay = "none"
minutes = 5
data_retention = "deleted after the run"
"""


class Server:
    """A gunicorn process group on loopback, stopped by its pid."""

    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*args, "--bind", f"127.0.0.1:{self.port}"],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        try:
            wait_listening(self.proc, "127.0.0.1", self.port)
        except RuntimeError as e:
            self.stop()
            raise SystemExit(f"{e}; see {log}") from None

    def warm(self, path: str, requests: int = 64, at_once: int = 8) -> None:
        """Requests until every worker has booted and served (gunicorn's workers import the
        app after the socket listens): neither server's start-up is timed."""
        import urllib.request
        from concurrent.futures import ThreadPoolExecutor

        def get(_i: int) -> None:
            with urllib.request.urlopen(self.base + path, timeout=60) as r:
                r.read()

        with ThreadPoolExecutor(at_once) as pool:
            list(pool.map(get, range(requests)))

    def stop(self) -> None:
        stop(self.proc, group=True)
        self.log.close()


def gunicorn(workers: int, app: str, chdir: Path | None = None, threads: int = 1) -> list[str]:
    cmd = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
    ]
    return [*cmd, *(["--chdir", str(chdir)] if chdir else []), app]


# ---------------------------------------------------------------- databases


def fresh_database(kind: str, tmp: Path, pg_url: str | None, tag: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'{tag}.db'}"
    engine = create_engine(database_url(pg_url))
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return pg_url


class TempPostgres:
    """A throwaway PostgreSQL cluster on loopback (Debian's binaries, run as ``postgres``)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins or os.geteuid() != 0:
            raise RuntimeError("no PostgreSQL binaries, or not root (to run them as postgres)")
        # Its own folder, owned by postgres (the run's temporary folder is private to root).
        self.bin, self.dir, self.port = bins[-1], Path(tempfile.mkdtemp(prefix="camstudy-load-pg-")), free_port()
        shutil.chown(self.dir, "postgres")
        self._su(f"{self.bin}/initdb -D {self.dir}/data -A trust -U postgres")
        self._su(
            f"{self.bin}/pg_ctl -D {self.dir}/data -l {self.dir}/log -w start "
            f"-o '-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200'"
        )
        self._su(f"{self.bin}/createdb -h 127.0.0.1 -p {self.port} bench")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/bench"

    def _su(self, cmd: str) -> None:
        subprocess.run(["su", "postgres", "-c", cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self._su(f"{self.bin}/pg_ctl -D {self.dir}/data -m fast -w stop")
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- runs


def run_app(db: str, tmp: Path, stimuli: Path, a: argparse.Namespace, think_s: float, ramp_s: float) -> dict:
    from study.settings import load_study_config
    from study.setup import create_study

    upgrade(db)
    cfg_path = tmp / "load.toml"
    cfg_path.write_text(STUDY.format(trials=a.trials))
    from study.db import make_engine

    engine = make_engine(db)
    with transaction(session_factory(engine)) as s:
        create_study(s, load_study_config(cfg_path), stimuli)
    engine.dispose()
    env = {
        "CAMSTUDY_DATABASE_URL": db,
        "CAMSTUDY_INSTANCE": str(tmp / "instance"),
        "CAMSTUDY_ENROLL_RATE_PER_MINUTE": "100000",
    }
    server = Server(gunicorn(a.workers, "study.wsgi:app", threads=a.threads), env, tmp / "app.log")
    try:
        server.warm("/s/load/?PROLIFIC_PID=warm-up")  # the consent page: reads the study, writes nothing
        report = simulate(
            server.base,
            "load",
            a.participants,
            concurrency=a.participants,
            profile=PROFILES["load"],
            seed=1,
            db_url=db,
            pace_s=think_s,
            ramp_s=ramp_s,
            give_up_s=120,
        )
    finally:
        server.stop()
    check = audit(db, "load", report.results)
    return {"report": report, "audit": check}


def run_floor(db: str, tmp: Path, a: argparse.Namespace, think_s: float, ramp_s: float) -> dict:
    engine = create_engine(database_url(db))
    with engine.begin() as c:
        c.execute(
            text(
                "CREATE TABLE floor_request (id INTEGER PRIMARY KEY "
                + ("AUTOINCREMENT" if db.startswith("sqlite") else "GENERATED ALWAYS AS IDENTITY")
                + ", path TEXT, body TEXT)"
            )
        )
    env = {"CAMSTUDY_FLOOR_DB": db, "CAMSTUDY_FLOOR_TRIALS": str(a.trials + 2), "PYTHONPATH": str(ROOT)}
    server = Server(gunicorn(a.workers, "floor_app:app", ROOT / "bench", threads=a.threads), env, tmp / "floor.log")
    try:
        server.warm("/s/floor/?PROLIFIC_PID=warm-up")
        report = simulate(
            server.base,
            "floor",
            a.participants,
            concurrency=a.participants,
            profile=PROFILES["load"],
            seed=1,
            db_url=False,
            mode="live",
            pace_s=think_s,
            ramp_s=ramp_s,
            give_up_s=120,
        )
    finally:
        server.stop()
    with engine.connect() as c:
        rows = c.scalar(text("SELECT count(*) FROM floor_request WHERE path LIKE '%/answers'"))
    engine.dispose()
    return {"report": report, "rows": rows}


def row(db: str, load: str, app: dict, floor: dict) -> str:
    ra, rf = app["report"], floor["report"]
    tput_a, tput_f = ra.answers / ra.seconds, rf.answers / rf.seconds
    chk = app["audit"]
    return (
        f"| {db} | {load} | {ra.answers} | {tput_a:.0f} | {ra.latency_ms(0.5):.0f} | {ra.latency_ms(0.99):.0f} "
        f"| {tput_f:.0f} | {rf.latency_ms(0.5):.0f} | {rf.latency_ms(0.99):.0f} | {tput_a / tput_f:.2f} "
        f"| {chk.lost} / {chk.duplicated} / {chk.changed} |"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--participants", type=int, default=200)
    p.add_argument("--trials", type=int, default=12, help="trials per participant, plus 2 attention checks")
    p.add_argument("--workers", type=int, default=4, help="gunicorn workers of both servers")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per worker of both servers (1: sync workers; more: gthread, with keep-alive)",
    )
    p.add_argument("--think-ms", type=float, default=3000, help="the paced load's wait before each answer")
    p.add_argument("--ramp-s", type=float, default=10, help="the paced load's arrivals are spread over this long")
    p.add_argument("--stimuli", type=Path, default=ROOT / "demo-out" / "stimuli")
    p.add_argument(
        "--postgres",
        default="auto",
        help="a PostgreSQL URL, 'auto' (CAMSTUDY_BENCH_POSTGRES_URL, else a temporary cluster when "
        "Debian's binaries are here), or 'none'",
    )
    p.add_argument("--databases", default="sqlite,postgresql", help="which of sqlite,postgresql to run")
    p.add_argument("--loads", default="saturated,paced", help="which of saturated,paced to run")
    a = p.parse_args()
    if not (a.stimuli / "manifest.json").exists():
        demo = ROOT / "camstudy" / "examples" / "demo.toml"  # the shipped example config
        print(f"building the demo stimuli into {a.stimuli} (camstudy stimuli build {demo.relative_to(ROOT)})")
        subprocess.run(
            [
                str(Path(sys.executable).with_name("camstudy")),
                "stimuli",
                "build",
                str(demo),
                "--out",
                str(a.stimuli),
                "--quiet",
            ],
            check=True,
        )

    with tempfile.TemporaryDirectory(prefix="camstudy-load-") as tmpdir:
        tmp = Path(tmpdir)
        pg, pg_url = None, None
        if a.postgres != "none" and "postgresql" in a.databases.split(","):
            pg_url = a.postgres if a.postgres != "auto" else os.environ.get("CAMSTUDY_BENCH_POSTGRES_URL")
            if pg_url is None:
                try:
                    pg = TempPostgres()
                    pg_url = pg.url
                except (RuntimeError, subprocess.CalledProcessError) as e:
                    print(f"PostgreSQL: skipped ({e})")
        dbs = [db for db in ("sqlite", "postgresql") if db in a.databases.split(",") and (db == "sqlite" or pg_url)]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(
            f"{now}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"{a.participants} concurrent participants x {a.trials + 2} trials, gunicorn {a.workers} sync workers"
        )
        lines = [
            "| database | load | answers | app answers/s | app p50 ms | app p99 ms | floor answers/s "
            "| floor p50 ms | floor p99 ms | app / floor | lost / duplicated / changed |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        ok = True
        try:
            for db in dbs:
                loads = (
                    ("saturated", 0.0, 0.0),
                    (f"paced ({a.think_ms / 1000:g} s think, {a.ramp_s:g} s ramp)", a.think_ms / 1000, a.ramp_s),
                )
                for load, think, ramp in loads:
                    if load.split(" ")[0] not in a.loads.split(","):
                        continue
                    run_dir = tmp / f"{db}-{think}"
                    run_dir.mkdir()
                    app = run_app(fresh_database(db, run_dir, pg_url, "app"), run_dir, a.stimuli, a, think, ramp)
                    floor = run_floor(fresh_database(db, run_dir, pg_url, "floor"), run_dir, a, think, ramp)
                    lines.append(row(db, load, app, floor))
                    print(lines[-1], flush=True)
                    print("   app:", app["report"].summary().replace("\n", "\n   app: "))
                    print("   app:", app["audit"].line())
                    print("   floor:", floor["report"].summary().split("\n")[0])
                    print(f"   floor: {floor['report'].answers} answers acknowledged, {floor['rows']} rows")
                    finished = sum(app["report"].counts().get(k, 0) for k in ("completed", "screened_out"))
                    ok &= app["audit"].ok and finished == a.participants
        finally:
            if pg is not None:
                pg.stop()
        print("\n".join(["", *lines]))
        print("every answer stored exactly once" if ok else "LOST, DUPLICATED OR UNFINISHED ANSWERS: see above")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
