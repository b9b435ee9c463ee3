"""``camstudy demo``: the whole pipeline on the defaults, in one command.

1. the explanation sheet of the offline stronger/weaker pair (``stimuli.demo``);
2. the demo study's stimuli (the shipped example ``demo.toml``, see :mod:`camstudy.examples`);
3. a SQLite database, migrated to the head;
4. the studies of the examples ``class-discrimination.toml``, ``trust.toml`` (the paper's two) and
   ``hive-distinction.toml``
   and an admin user whose generated password is printed once;
5. the server (gunicorn) on 127.0.0.1:5000 with the participant and admin links, until
   Ctrl-C; with ``--simulate N`` first N simulated participants per study and the analysis
   report of each.

A second run reuses what is there: the sheet, the stimuli, the database, the studies and
the admin user. The example configs are read where the package has them (importlib.resources);
their relative paths do not matter here, because the demo names its folders itself.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from camstudy import examples
from camstudy.errors import UserError
from camstudy.processes import StopSignals, free_port, stop, wait_listening

STUDIES = ("class-discrimination.toml", "trust.toml", "hive-distinction.toml")
ADMIN = "admin"


def step(n: int, text: str) -> None:
    print(f"[{n}/5] {text}", flush=True)


def sheet(args: argparse.Namespace, out: Path) -> None:
    if (out / "sheet.png").exists() and (out / "manifest.json").exists():
        step(1, f"explanation sheet: {out / 'sheet.png'} (reused)")
        return
    from stimuli.demo import run_demo

    step(1, "explanation sheet of the offline stronger/weaker pair")
    run_demo(argparse.Namespace(out=str(out), device=args.device))


def stimuli(out: Path) -> Path:
    import json

    from stimuli.config import load_config

    with examples.path("demo.toml") as path:
        cfg = load_config(path)
    folder = out / "stimuli"
    summary = folder / "build.json"
    if summary.exists() and not (folder / "manifest.partial.jsonl").exists():
        done = json.loads(summary.read_text())
        if done.get("config_sha256") == cfg.sha256 and done.get("shard") == [0, 1]:
            step(2, f"stimuli: {folder} ({done['stimuli']} stimuli, reused)")
            return folder
    from stimuli.build import build  # imported only here: a reusing run starts sooner

    step(2, f"stimuli of the example demo.toml into {folder}")
    done = build(cfg, folder)
    print(f"      {done['stimuli']} stimuli in {done['seconds']:.1f} s")
    return folder


def database(db: str) -> None:
    from study.db import upgrade

    head = upgrade(db)
    step(3, f"database {db} at revision {head}")


def studies(db: str, folder: Path) -> list[tuple[str, str, str]]:
    """Create the two studies (or find them); returns (slug, task, the path of the study's
    signed debug link, without the server's address) triples."""
    from sqlalchemy import select

    from study.db import make_engine, session_factory, transaction
    from study.links import participant_links
    from study.models import Study
    from study.settings import load_study_config
    from study.setup import create_study

    engine = make_engine(db)
    out = []
    try:
        with transaction(session_factory(engine)) as s:
            for name in STUDIES:
                with examples.path(name) as path:
                    cfg = load_study_config(path)
                study = s.scalar(select(Study).where(Study.slug == cfg.slug))
                state = "reused"
                if study is None:
                    study, state = create_study(s, cfg, folder), "created"
                debug = next(link.url for link in participant_links(study) if link.mode == "debug")
                out.append((study.slug, study.kind, debug))
                step(4, f"study {study.slug!r} ({study.kind}, {len(study.items)} items, {state})")
    finally:
        engine.dispose()
    return out


def admin_user(db: str) -> None:
    from sqlalchemy import select
    from werkzeug.security import generate_password_hash

    from study.db import make_engine, session_factory, transaction
    from study.models import AdminUser

    engine = make_engine(db)
    try:
        with transaction(session_factory(engine)) as s:
            if s.scalar(select(AdminUser).where(AdminUser.name == ADMIN)) is not None:
                step(4, f"admin user {ADMIN!r} exists (its password was printed when it was created)")
                return
            password = secrets.token_urlsafe(12)
            s.add(AdminUser(name=ADMIN, password_hash=generate_password_hash(password)))
    finally:
        engine.dispose()
    step(4, f"admin user {ADMIN!r}, password {password}  (shown once; only its hash is stored)")


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(db: str, out: Path, host: str, port: int, stops: StopSignals) -> subprocess.Popen:
    """Start the server and wait until it listens (or a stop signal arrives)."""
    env = {**os.environ, "CAMSTUDY_DATABASE_URL": db, "CAMSTUDY_INSTANCE": str(out / "instance")}
    camstudy = Path(sys.executable).with_name("camstudy")
    log = open(out / "server.log", "a")  # noqa: SIM115 - the server's own file, kept open for it
    proc = subprocess.Popen(
        [str(camstudy), "serve", "--host", host, "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(proc, host, port, cancelled=lambda: stops.stopped)
    except RuntimeError as e:
        if not stops.stopped:  # a server that a stop signal ended is no error
            stop(proc)
            raise UserError(f"{e}; see {out / 'server.log'}") from None
    return proc


def simulate_and_analyze(base: str, db: str, out: Path, slugs: list[tuple[str, str, str]], n: int) -> None:
    from analysis.api import analyze_study
    from bots import audit, simulate

    for slug, kind, _debug in slugs:
        print(f"      simulating {n} participants (profile 'paper', mode debug) in {slug!r}", flush=True)
        report = simulate(base, slug, n, concurrency=min(n, 10), profile="paper", db_url=db, mode="debug")
        print("      " + report.summary().replace("\n", "\n      "))
        print("      " + audit(db, slug, report.results).line())
        target = out / "analysis" / slug
        analyze_study(db, slug, target, mode="debug")
        print(f"      {kind} report: {target / 'report.html'}", flush=True)


def run(args: argparse.Namespace) -> int:
    # SIGINT and SIGTERM stop the demo whatever disposition it inherited (a background job
    # of a non-interactive shell inherits SIGINT ignored): during the setup they interrupt
    # it, while serving they end the server cleanly (exit 0).
    with StopSignals() as stops:
        with stops.raising():
            out = Path(args.out).resolve()
            out.mkdir(parents=True, exist_ok=True)
            if not args.no_serve and not port_free(args.host, args.port):
                raise UserError(f"{args.host}:{args.port} is in use (another demo?); pass --port")
            db = args.db or f"sqlite:///{out / 'camstudy.db'}"
            sheet(args, out)
            folder = stimuli(out)
            database(db)
            slugs = studies(db, folder)
            admin_user(db)
        if not args.simulate and args.no_serve:
            return 0
        return serve_until_stopped(args, stops, db, out, slugs)


def serve_until_stopped(
    args: argparse.Namespace, stops: StopSignals, db: str, out: Path, slugs: list[tuple[str, str, str]]
) -> int:
    """Serve (after the simulation, if asked) until a stop signal; 0 then, an error when the
    server stops on its own. The server is stopped on every way out."""
    port = args.port if not args.no_serve else free_port(args.host)
    proc = serve(db, out, args.host, port, stops)
    base = f"http://{args.host}:{port}"
    try:
        if args.simulate and not stops.stopped:
            step(5, f"server on {base}; simulated participants and the analysis")
            with stops.raising():
                simulate_and_analyze(base, db, out, slugs, args.simulate)
        if args.no_serve and not stops.stopped:
            return 0
        if not stops.stopped:
            step(5, f"serving on {base}  (Ctrl-C stops it)")
            print("      try each study as a participant (debug mode: kept apart from the data; the live")
            print("      links need the platform's worker ids and are on each study's admin page):")
            for _slug, kind, debug in slugs:
                print(f"      {kind:<21} {base}{debug}")
            print(f"      {'admin':<21} {base}/admin/  (user {ADMIN!r})", flush=True)
        if not stops.wait(proc):
            raise UserError(f"the server stopped (exit code {proc.returncode}); see {out / 'server.log'}")
        print("\nstopping the server", flush=True)
        return 0
    except KeyboardInterrupt:  # a stop signal inside stops.raising()
        print("\nstopping the server", flush=True)
        return 0
    finally:
        stop(proc)
        if not args.no_serve:
            print("server stopped", flush=True)


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on the defaults: stimuli, studies, server (and bots)")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when present)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--db", help="database URL (default: a SQLite file in the output folder)")
    p.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="run N simulated participants per study and write each study's analysis report",
    )
    p.add_argument("--no-serve", action="store_true", help="exit after the simulation instead of serving")
    p.set_defaults(func=run)
