"""Locust through the deployment: https via nginx to two ``camstudy serve`` hosts on one
PostgreSQL (docs/deployment.md, set up as tests/e2e/test_proxy.py does), on loopback.

Locust (``bench/locustfile.py``, headless, bounded in users and time) drives the real
participant flow of a class-discrimination study on the demo stimuli: consent, task page,
plan, every image, one POST per answer, completion. It prints answers per second and the
answer POST's p50 and p99 latency as Locust measured them, the failures, and checks the
database: every answer stored once. Everything it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from load import STUDY, TempPostgres, fresh_database  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from study.db import make_engine, session_factory, transaction, upgrade  # noqa: E402
from study.models import Answer, Study  # noqa: E402
from study.recruitment import mode_link_params  # noqa: E402
from tests.e2e.deployment import MISSING, deployment  # noqa: E402

ANSWERS = "POST /api/s/[slug]/answers"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50, help="Locust users (participants at a time)")
    p.add_argument("--run-time", default="60s")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers per host (two hosts)")
    p.add_argument("--think-s", type=float, default=0.0, help="wait before each answer (0: saturation)")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--stimuli", type=Path, default=ROOT / "demo-out" / "stimuli")
    a = p.parse_args()
    if MISSING:
        raise SystemExit(f"needs {', '.join(MISSING)}")
    if not (a.stimuli / "manifest.json").exists():
        raise SystemExit(f"no stimuli in {a.stimuli}: run `make demo` (or pass --stimuli)")
    pg = TempPostgres()
    try:
        with tempfile.TemporaryDirectory(prefix="camstudy-proxy-load-") as tmpdir:
            tmp = Path(tmpdir)
            db = fresh_database("postgresql", tmp, pg.url, "app")
            upgrade(db)
            from study.settings import load_study_config
            from study.setup import create_study

            (tmp / "load.toml").write_text(STUDY.format(trials=a.trials))
            engine = make_engine(db)
            with transaction(session_factory(engine)) as s:
                study = create_study(s, load_study_config(tmp / "load.toml"), a.stimuli)
                query = urlencode(mode_link_params(study.secret, study.slug, "debug"))
            with deployment(db, tmp, workers=a.workers, env={"CAMSTUDY_ENROLL_RATE_PER_MINUTE": "100000"}) as d:
                env = {
                    **os.environ,
                    "CAMSTUDY_LOCUST_STUDY": "load",
                    "CAMSTUDY_LOCUST_PLATFORM": "prolific",
                    "CAMSTUDY_LOCUST_QUERY": query,
                    "CAMSTUDY_LOCUST_THINK_S": str(a.think_s),
                    "REQUESTS_CA_BUNDLE": str(d.cafile),
                }
                stats = tmp / "locust"
                locust = Path(sys.executable).with_name("locust")
                run = subprocess.run(
                    [
                        str(locust),
                        "-f",
                        str(ROOT / "bench" / "locustfile.py"),
                        "--headless",
                        "--users",
                        str(a.users),
                        "--spawn-rate",
                        str(a.users),
                        "--run-time",
                        a.run_time,
                        "--stop-timeout",
                        "10",
                        "--host",
                        d.base,
                        "--csv",
                        str(stats),
                        "--only-summary",
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                rows = {r["Name"]: r for r in csv.DictReader(open(f"{stats}_stats.csv"))}
            with engine.connect() as c:
                stored = c.scalar(select(func.count()).select_from(Answer))
                distinct = c.scalar(
                    select(func.count()).select_from(
                        select(Answer.participant_id, Answer.position).distinct().subquery()
                    )
                )
                assert c.scalar(select(func.count()).select_from(Study)) == 1
            engine.dispose()
    finally:
        pg.stop()
    ans, agg = rows[ANSWERS], rows["Aggregated"]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{now}, {platform.machine()}, {os.cpu_count()} cores; nginx + 2 hosts x {a.workers} gunicorn workers, "
        f"PostgreSQL; Locust {a.users} users for {a.run_time}, think {a.think_s:g} s"
    )
    print(
        "| users | think s | answers | answers/s | answer p50 ms | answer p99 ms | all requests/s | failures "
        "| stored / distinct |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| {a.users} | {a.think_s:g} | {ans['Request Count']} | {float(ans['Requests/s']):.0f} | {ans['50%']} "
        f"| {ans['99%']} | {float(agg['Requests/s']):.0f} | {agg['Failure Count']} | {stored} / {distinct} |"
    )
    ok = run.returncode == 0 and int(agg["Failure Count"]) == 0 and stored == distinct >= int(ans["Request Count"])
    if not ok:
        print(run.stdout[-3000:], run.stderr[-3000:])
    print("no failed request; every acknowledged answer stored once" if ok else "FAILURES: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
