"""``camstudy db | study | serve | admin``: the study server's commands (no torch needed)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from camstudy.errors import UserError


def run_db(args: argparse.Namespace) -> int:
    from study.db import database_url, upgrade

    head = upgrade(args.db)
    print(f"database {database_url(args.db).split('@')[-1]} is at revision {head}")
    return 0


def run_study_create(args: argparse.Namespace) -> int:
    from study.db import check_current, make_engine, session_factory, transaction
    from study.settings import load_study_config
    from study.setup import create_study

    cfg = load_study_config(args.config)
    stimuli = Path(args.stimuli) if args.stimuli else cfg.stimuli
    if stimuli is None:
        raise UserError("no stimuli folder: pass --stimuli DIR or set `stimuli` in the config")
    engine = make_engine(args.db)
    check_current(engine)
    with transaction(session_factory(engine)) as s:
        study = create_study(s, cfg, stimuli)
        n_items = len(study.items)
        slug = study.slug
    print(f"study {slug!r} ({cfg.task}, {n_items} items, conditions: {', '.join(study.settings['conditions'])})")
    print(f"participant link: /s/{slug}/")
    print(slug)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from study.app import create_app

    if args.db:
        os.environ["CAMSTUDY_DATABASE_URL"] = args.db
    if args.dev:
        create_app().run(host=args.host, port=args.port, debug=False)
        return 0
    create_app()  # fail here, with one line, on an unmigrated database
    gunicorn = Path(sys.executable).with_name("gunicorn")
    cmd = [
        str(gunicorn),
        "--bind",
        f"{args.host}:{args.port}",
        "--workers",
        str(args.workers),
        "--access-logfile",
        "-",
        "study.wsgi:app",
    ]
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover - execv does not return


def _new_password(name: str) -> str:
    password = os.environ.get("CAMSTUDY_ADMIN_PASSWORD") or getpass.getpass(f"password for {name}: ")
    if len(password) < 10:
        raise UserError("the password needs at least 10 characters")
    return password


def run_admin_create_user(args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from werkzeug.security import generate_password_hash

    from study.db import check_current, make_engine, session_factory, transaction
    from study.models import AdminUser

    password = _new_password(args.name)
    engine = make_engine(args.db)
    check_current(engine)
    with transaction(session_factory(engine)) as s:
        if s.scalar(select(AdminUser).where(AdminUser.name == args.name)) is not None:
            raise UserError(f"admin user {args.name!r} exists already")
        s.add(AdminUser(name=args.name, password_hash=generate_password_hash(password)))
    print(f"admin user {args.name!r} created")
    return 0


def run_admin_set_password(args: argparse.Namespace) -> int:
    """A new password; every session of the user ends (on every host: they live in the database)."""
    from sqlalchemy import select
    from werkzeug.security import generate_password_hash

    from study.admin_auth import end_sessions
    from study.db import check_current, make_engine, session_factory, transaction
    from study.models import AdminUser

    password = _new_password(args.name)
    engine = make_engine(args.db)
    check_current(engine)
    with transaction(session_factory(engine)) as s:
        user = s.scalar(select(AdminUser).where(AdminUser.name == args.name))
        if user is None:
            raise UserError(f"no admin user {args.name!r}")
        user.password_hash = generate_password_hash(password)
        end_sessions(s, user.id)
    print(f"password of {args.name!r} changed; its sessions have ended")
    return 0


def run_study_links(args: argparse.Namespace) -> int:
    """The participant links of a study: live, and the signed sandbox and debug links."""
    from study.db import check_current, make_engine, session_factory
    from study.export import find_study
    from study.links import participant_links

    engine = make_engine(args.db)
    check_current(engine)
    with session_factory(engine)() as s:
        study = find_study(s, args.slug)
        for link in participant_links(study, args.base_url):
            print(f"{link.mode:<8} {link.platform:<9} {link.url}")
    return 0


def add_parsers(sub) -> None:
    """Register the study server's subcommands on the ``camstudy`` parser."""
    p = sub.add_parser("db", help="database schema (Alembic)")
    p.add_argument("action", choices=["upgrade"])
    p.add_argument("--db", help="database URL (default: CAMSTUDY_DATABASE_URL or sqlite:///instance/camstudy.db)")
    p.set_defaults(func=run_db)

    p = sub.add_parser("study", help="create a study from a study config and a stimulus build")
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = act.add_parser("create", help="create a study")
    c.add_argument("config")
    c.add_argument("--stimuli", help="stimulus build folder (default: the config's `stimuli`)")
    c.add_argument("--db")
    c.set_defaults(func=run_study_create)
    c = act.add_parser("links", help="a study's participant links: live, and the signed sandbox and debug links")
    c.add_argument("slug")
    c.add_argument("--base-url", default="", help="the server's public URL, e.g. https://study.example.org")
    c.add_argument("--db")
    c.set_defaults(func=run_study_links)

    p = sub.add_parser("serve", help="serve the studies (gunicorn; --dev for Flask's server)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--dev", action="store_true", help="Flask's development server, one process")
    p.add_argument("--db")
    p.set_defaults(func=run_serve)

    p = sub.add_parser("admin", help="admin users")
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = act.add_parser("create-user", help="create an admin user (password from CAMSTUDY_ADMIN_PASSWORD or a prompt)")
    c.add_argument("name")
    c.add_argument("--db")
    c.set_defaults(func=run_admin_create_user)
    c = act.add_parser("set-password", help="change an admin user's password and end the user's sessions")
    c.add_argument("name")
    c.add_argument("--db")
    c.set_defaults(func=run_admin_set_password)

    from study.export import MODE_CHOICES, run_export

    p = sub.add_parser("export", help="a study's answers in long format, one row per answer (CSV or Parquet)")
    p.add_argument("study", metavar="STUDY", help="the study's slug")
    p.add_argument("--format", choices=["csv", "parquet"], help="default: from the --out suffix")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument(
        "--raw-ids", action="store_true", help="add the platforms' raw worker ids (default: pseudonyms only)"
    )
    p.add_argument("--mode", choices=MODE_CHOICES, default="live", help="live (default), sandbox, debug or all")
    p.add_argument("--db")
    p.set_defaults(func=run_export)


def run_simulate(args: argparse.Namespace) -> int:
    from bots import audit, simulate

    report = simulate(
        args.url,
        args.study,
        args.participants,
        concurrency=args.concurrency,
        profile=args.profile,
        seed=args.seed,
        db_url=args.db,
        mode=args.mode,
        pace_s=args.pace_ms / 1000,
        cafile=args.cafile,
    )
    print(report.summary())
    check = audit(args.db, args.study, report.results)
    print(check.line())
    return 0 if check.ok and not report.counts().get("failed") else 1


def add_simulate_parser(sub) -> None:
    from bots import PROFILES

    p = sub.add_parser("simulate", help="simulated participants that take a study through the server's HTTP flow")
    p.add_argument("url", metavar="URL", help="the server's base URL, e.g. http://127.0.0.1:5000")
    p.add_argument("--study", required=True, metavar="SLUG")
    p.add_argument("--participants", type=int, required=True, metavar="N")
    p.add_argument("--concurrency", type=int, default=10, metavar="C", help="bots at a time (default 10)")
    p.add_argument(
        "--profile",
        default="paper",
        choices=sorted(PROFILES),
        help="behaviour (default paper: the Grad-CAM paper's accuracies and trust scores)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mode",
        default="debug",
        choices=["live", "sandbox", "debug"],
        help="the participants' mode (default debug: kept apart from live data)",
    )
    p.add_argument("--pace-ms", type=float, default=0.0, help="wait this long before each answer (default 0)")
    p.add_argument(
        "--db",
        help="the study's database URL, read for its platform, signed test link and answer key "
        "(default: the configured one)",
    )
    p.add_argument("--cafile", help="CA certificate to trust for an https URL (e.g. a proxy's self-signed one)")
    p.set_defaults(func=run_simulate)
