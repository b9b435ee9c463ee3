"""``camstudy analyze``: the analysis report of an export file or of a study in the database.

``camstudy analyze (STUDY | EXPORT_FILE) --out DIR [--db URL] [--mode live|sandbox|debug|all]
[--plan FROZEN.json]``

An existing ``.csv`` / ``.parquet`` file (or any target ending in those suffixes) is read as an
export; its exclusion rules are the defaults of :class:`study.settings.Exclusions` (an export
does not carry the study's settings), and the report says so. Anything else is a study slug:
its answers come from the database (``--mode``, default live) and its rules from the study's
stored settings. Every user mistake is a one-line :class:`camstudy.errors.UserError`.

Pre-registration (:mod:`analysis.preregistration`): a study with a frozen plan is analysed
against it (its stored JSON must hash to its stored sha256, else the analysis is refused); an
export is analysed against ``--plan FROZEN.json`` (the file ``camstudy preregister`` wrote),
whose exclusion rules then replace the defaults. Either way the report marks each table
confirmatory or exploratory, judges each hypothesis, lists the deviations from the plan, and
``preregistration.json`` (the frozen plan, byte for byte) is written beside it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

EXPORT_SUFFIXES = (".csv", ".parquet", ".pq")
MODE_CHOICES = ("live", "sandbox", "debug", "all")


def add_analyze_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``analyze`` on the ``camstudy`` subparsers ``sub``; returns its parser."""
    p = sub.add_parser("analyze", help="the analysis report (HTML, CSV, PNG) of a study or an export file")
    p.add_argument("target", metavar="STUDY|EXPORT_FILE", help="a study's slug, or an export (.csv or .parquet)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (report.html, tables, figures)")
    p.add_argument("--db", help="database URL (a study only; default: the configured one)")
    p.add_argument(
        "--mode", choices=MODE_CHOICES, default="live", help="a study only: live (default), sandbox, debug or all"
    )
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples for Krippendorff's alpha (default 1000)"
    )
    p.add_argument(
        "--plan",
        metavar="FROZEN.json",
        help="the frozen plan of `camstudy preregister` (an export; a study uses its stored plan)",
    )
    p.set_defaults(func=run_analyze)
    return p


def is_export_file(target: str) -> bool:
    """True when ``target`` names an export file (an existing file, or an export suffix)."""
    path = Path(target)
    return path.suffix.lower() in EXPORT_SUFFIXES or path.is_file()


def run_analyze(args: argparse.Namespace) -> int:
    """Run :func:`analysis.api.analyze_export` or :func:`analysis.api.analyze_study`; print where the report is."""
    from analysis.api import analyze_export, analyze_study
    from study.settings import Exclusions

    target = str(args.target)
    n_boot = int(getattr(args, "n_boot", 1000))
    plan_file = getattr(args, "plan", None)
    if is_export_file(target):
        result = analyze_export(target, args.out, n_boot=n_boot, plan_file=plan_file)
    else:
        result = analyze_study(
            getattr(args, "db", None),
            target,
            args.out,
            mode=getattr(args, "mode", "live") or "live",
            n_boot=n_boot,
            plan_file=plan_file,
        )
    flow = result["flow"]
    print(
        f"analysed {flow['analysed_answers']} answers of {flow['analysed_participants']} participants "
        f"({flow['excluded']} of {flow['enrolled']} excluded; rules: {asdict(Exclusions(**result['rules']))})"
    )
    frozen = result["frozen"]
    if frozen is not None:
        print(_prereg_line(frozen.sha256, result.get("preregistration"), result.get("preregistration_error")))
    print(f"report: {result['html']}")
    return 0


def _prereg_line(sha256: str, answer: dict | None, error: str | None) -> str:
    """One line on the pre-registration: hypotheses supported and deviations, or the error."""
    if error is not None or answer is None:
        return f"pre-registration {sha256}: could not be judged ({error})"
    hypotheses = answer.get("hypotheses") or []
    supported = sum(h.get("status") == "supported" for h in hypotheses)
    deviations = len(answer.get("deviations") or [])
    return (
        f"pre-registration {sha256}: {supported} of {len(hypotheses)} hypotheses supported; "
        f"{deviations} deviation{'s' if deviations != 1 else ''} from the plan"
    )
