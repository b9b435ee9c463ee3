"""The analysis as two calls: :func:`analyze_study` (a study in the database) and
:func:`analyze_export` (an export file). ``camstudy analyze`` and the demo both call them, so
neither needs the other, and a notebook gets the same report as the command line.

Each loads the answers, picks the exclusion rules (the study's stored ones, a frozen plan's,
or the defaults of :class:`study.settings.Exclusions`, and says which), judges the result
against a frozen pre-registration when there is one (:mod:`analysis.preregistration`), and
writes the report with :func:`analysis.report.analyze`. The returned dict is that function's,
plus ``frozen`` (the :class:`analysis.preregistration` record used, or None). Every user
mistake is a one-line :class:`camstudy.errors.UserError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camstudy.errors import UserError


def analyze_study(
    db_url: str | None,
    slug: str,
    out: str | Path,
    *,
    mode: str = "live",
    n_boot: int = 1000,
    plan_file: str | Path | None = None,
) -> dict[str, Any]:
    """Analyse study ``slug`` of database ``db_url`` (None: the configured one) into ``out``.

    ``mode`` is live, sandbox, debug or all. A study with a frozen plan is analysed against
    it; ``plan_file``, when given, must be that same plan (else a UserError).
    """
    from analysis.load import load_study
    from analysis.preregistration import read_frozen_file, stored_plan
    from study.settings import Exclusions

    _check_n_boot(n_boot)
    given = read_frozen_file(str(plan_file)) if plan_file else None
    df = load_study(db_url, slug, None if mode == "all" else mode)
    frozen = stored_plan(db_url, slug)
    if given is not None and (frozen is None or given.sha256 != frozen.sha256):
        raise UserError(
            f"--plan {plan_file} (sha256 {given.sha256}) is not study {slug!r}'s frozen plan "
            f"({'none stored' if frozen is None else 'sha256 ' + frozen.sha256}); a study is "
            "analysed against the plan frozen with it"
        )
    settings = study_settings(db_url, slug)
    stored = settings.get("exclusions")
    if isinstance(stored, dict):
        rules: Any = stored
        rules_source = f"the study's stored settings ({slug})"
    else:
        rules = Exclusions()
        rules_source = f"the defaults of study.settings.Exclusions: study {slug!r} stores none"
    return _report(
        df,
        rules,
        out,
        frozen=frozen,
        mode=mode,
        n_boot=n_boot,
        rules_source=rules_source,
        source=f"study {slug!r} in the database (mode {mode})",
        title=f"Analysis of {settings.get('title') or slug}",
    )


def analyze_export(
    path: str | Path, out: str | Path, *, n_boot: int = 1000, plan_file: str | Path | None = None
) -> dict[str, Any]:
    """Analyse the export file ``path`` (.csv or .parquet) into ``out``.

    An export does not carry the study's settings, so its rules are the defaults unless
    ``plan_file`` (a frozen plan of ``camstudy preregister``) supplies them.
    """
    from analysis.load import load_export
    from analysis.preregistration import read_frozen_file
    from study.settings import Exclusions

    _check_n_boot(n_boot)
    frozen = read_frozen_file(str(plan_file)) if plan_file else None
    df = load_export(str(path))
    rules: Any = Exclusions()
    rules_source = "the defaults of study.settings.Exclusions: an export file does not carry the study's declared rules"
    mode: str | None = None
    if frozen is not None:
        rules = frozen.plan["exclusions"]
        rules_source = f"the pre-registered plan {plan_file} (sha256 {frozen.sha256})"
        mode = ", ".join(sorted({str(m) for m in df["mode"].dropna().unique()})) or None
    return _report(
        df,
        rules,
        out,
        frozen=frozen,
        mode=mode,
        n_boot=n_boot,
        rules_source=rules_source,
        source=f"export file {path}",
        title=f"Analysis of {Path(path).name}",
    )


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


def _check_n_boot(n_boot: int) -> None:
    if n_boot < 1:
        raise UserError(f"--n-boot must be at least 1, not {n_boot}")


def _report(
    df: Any,
    rules: Any,
    out: str | Path,
    *,
    frozen: Any,
    mode: str | None,
    n_boot: int,
    rules_source: str,
    source: str,
    title: str,
) -> dict[str, Any]:
    from analysis.preregistration import preregistration_hook
    from analysis.report import analyze
    from analysis.significance import report_tables

    hook = preregistration_hook(frozen, answers=df, mode=mode) if frozen is not None else None
    result = analyze(
        df,
        rules,
        out,
        title=title,
        source=source,
        significance=report_tables,
        preregistration=hook,
        rules_source=rules_source,
        n_boot=n_boot,
    )
    if frozen is not None:
        # The frozen plan, byte for byte, beside the report it was judged against.
        (Path(out) / "preregistration.json").write_bytes(frozen.text.encode("utf-8"))
    return {**result, "frozen": frozen}
