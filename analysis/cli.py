"""``camstudy analyze``: the analysis report of an export file or of a study in the database.

``camstudy analyze (STUDY | EXPORT_FILE) --out DIR [--db URL] [--mode live|sandbox|debug|all]``

An existing ``.csv`` / ``.parquet`` file (or any target ending in those suffixes) is read as an
export; its exclusion rules are the defaults of :class:`study.settings.Exclusions` (an export
does not carry the study's settings), and the report says so. Anything else is a study slug:
its answers come from the database (``--mode``, default live) and its rules from the study's
stored settings. Every user mistake is a one-line :class:`camstudy.errors.UserError`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from camstudy.errors import UserError

EXPORT_SUFFIXES = (".csv", ".parquet", ".pq")
MODE_CHOICES = ("live", "sandbox", "debug", "all")


def add_analyze_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``analyze`` on the ``camstudy`` subparsers ``sub``; returns its parser."""
    p = sub.add_parser("analyze", help="the analysis report (HTML, CSV, PNG) of a study or an export file")
    p.add_argument("target", metavar="STUDY|EXPORT_FILE", help="a study's slug, or an export (.csv or .parquet)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (report.html, tables, figures)")
    p.add_argument("--db", help="database URL (a study only; default: the configured one)")
    p.add_argument("--mode", choices=MODE_CHOICES, default="live",
                   help="a study only: live (default), sandbox, debug or all")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap resamples for Krippendorff's alpha (default 1000)")
    p.set_defaults(func=run_analyze)
    return p


def is_export_file(target: str) -> bool:
    """True when ``target`` names an export file (an existing file, or an export suffix)."""
    path = Path(target)
    return path.suffix.lower() in EXPORT_SUFFIXES or path.is_file()


def study_settings(db_url: str | None, slug: str) -> dict:
    """The stored settings (the validated study config as JSON) of study ``slug``."""
    from study.db import make_engine, session_factory
    from study.export import find_study

    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            study = find_study(session, slug)
            return {"title": study.title, **dict(study.settings or {})}
    finally:
        engine.dispose()


def run_analyze(args: argparse.Namespace) -> int:
    """Load the answers, run :func:`analysis.report.analyze`, print where the report is."""
    from analysis.load import load_export, load_study
    from analysis.report import analyze
    from study.settings import Exclusions

    target = str(args.target)
    n_boot = int(getattr(args, "n_boot", 1000))
    if n_boot < 1:
        raise UserError(f"--n-boot must be at least 1, not {n_boot}")
    if is_export_file(target):
        df = load_export(target)
        rules: Any = Exclusions()
        rules_source = ("the defaults of study.settings.Exclusions: an export file does not carry the "
                        "study's declared rules")
        source = f"export file {target}"
        title = f"Analysis of {Path(target).name}"
    else:
        mode = getattr(args, "mode", "live") or "live"
        db = getattr(args, "db", None)
        df = load_study(db, target, None if mode == "all" else mode)
        settings = study_settings(db, target)
        stored = settings.get("exclusions")
        if isinstance(stored, dict):
            rules, rules_source = stored, f"the study's stored settings ({target})"
        else:
            rules = Exclusions()
            rules_source = f"the defaults of study.settings.Exclusions: study {target!r} stores none"
        source = f"study {target!r} in the database (mode {mode})"
        title = f"Analysis of {settings.get('title') or target}"
    result = analyze(df, rules, args.out, title=title, source=source, significance=_default_significance(),
                     rules_source=rules_source, n_boot=n_boot)
    flow = result["flow"]
    print(f"analysed {flow['analysed_answers']} answers of {flow['analysed_participants']} participants "
          f"({flow['excluded']} of {flow['enrolled']} excluded; rules: {asdict(Exclusions(**result['rules']))})")
    print(f"report: {result['html']}")
    return 0


def _default_significance() -> Any:
    """The report's clustered section: :func:`analysis.significance.report_tables`."""
    from analysis.significance import report_tables

    return report_tables
