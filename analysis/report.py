"""The analysis report: exclusions, tables (CSV, Markdown, LaTeX), figures (PNG), results in words
and one self-contained HTML page.

:func:`analyze` is the whole pipeline after loading: it applies the declared exclusion rules,
computes the per-method tables (class discrimination: accuracy per method and model role;
trust: per-worker score summaries with Wilcoxon and t tests), the reaction-time distributions
and the inter-rater agreement, adds to every model table the sample it was computed on
(answers, workers, images: :mod:`analysis.report_models`), writes every table as
``<name>.csv`` (the identifiers and full precision: the data), ``<name>.md`` and ``<name>.tex``
(word headers and formatted numbers: :mod:`analysis.report_tables`), draws every figure *from
those tables* (:mod:`analysis.report_figures`; each caption names the CSV), writes the "Results in words" (:mod:`analysis.words`) also as
``results_in_words.md``, and renders ``report.html`` (:mod:`analysis.report_template`: the
Jinja2 template ``analysis/templates/report.html.j2``, autoescaped, figures embedded as
base64 ``data:`` URIs, no external links, no scripts).

Two optional hooks:

- ``significance``, ``(kept_df) -> dict[str, DataFrame]``, adds the clustered method
  comparisons (GEE / mixed / ordinal models, ``analysis.significance``); its tables are shown
  in a "Clustered comparisons" section and written as ``significance_<name>.*``. What the
  models store in ``df.attrs`` becomes tables too: the mixed model's random-effect SDs
  (``..._random_effects``) and the ordinal model's cut points (``..._cut_points``); the paired
  trust differences get their t interval over the workers who rated both.
- ``preregistration``, ``(dict) -> dict``, is called with ``{"kind", "flow", "rules",
  "tables"}`` once the tables are computed; its answer (``sha256``, ``frozen_at``,
  ``hypotheses``, ``deviations``, ``table_status``) fills the "Pre-registration" section and
  marks each table confirmatory or exploratory.

A hook that raises is reported in its section instead of ending the analysis.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.accuracy import class_discrimination_accuracy, trust_summary
from analysis.agreement import agreement_table
from analysis.exclusions import apply_exclusions, as_rules, flow_table
from analysis.kinds import chance_level, is_accuracy
from analysis.load import study_kind
from analysis.report_figures import SCORES, draw_figures
from analysis.report_models import model_tables, sample_codes, trials, with_samples
from analysis.report_tables import (
    display,
    to_latex,
    to_markdown,
)
from analysis.report_template import render_html
from analysis.words import results_in_words
from camstudy.errors import UserError
from study.settings import Exclusions

SignificanceHook = Callable[[pd.DataFrame], Mapping[str, pd.DataFrame]]
PreregistrationHook = Callable[[dict], dict]

STATUSES = ("confirmatory", "exploratory")


# --------------------------------------------------------------------------------------
# The pipeline


def analyze(
    df: pd.DataFrame,
    rules: Exclusions | Mapping[str, Any] | None,
    out_dir: str | Path,
    *,
    title: str,
    source: str,
    significance: SignificanceHook | None = None,
    preregistration: PreregistrationHook | None = None,
    rules_source: str = "given by the caller",
    n_boot: int = 1000,
    seed: int = 0,
    chance: float | None = None,
) -> dict[str, Any]:
    """Analyse the answers ``df`` (a normalized export) and write the report into ``out_dir``.

    ``rules``: the exclusion rules (:class:`study.settings.Exclusions` or a dict; None = the
    defaults); ``rules_source`` says in the report where they came from. ``title``: the
    report's title; ``source``: where the answers came from (a file, a study). ``n_boot``,
    ``seed``: the bootstrap of Krippendorff's alpha. ``chance``: the accuracy of guessing;
    None: the kind's (``analysis.chance``, or one over each item's number of options, see
    :func:`analysis.kinds.chance_level`: 0.5 for class discrimination's two options per
    item). ``significance``, ``preregistration``: the hooks of the module doc.

    Returns a dict: ``kind``, ``flow`` (the exclusion flow dict), ``rules`` (as a dict),
    ``tables`` (name -> DataFrame, every one also written as ``<name>.csv``, ``.md`` and
    ``.tex``), ``csv``, ``md``, ``tex`` (name -> path), ``figures`` (name -> PNG path),
    ``words`` (the "Results in words" paragraphs, also in ``results_in_words.md``),
    ``significance_error`` (None or the hook's error line), ``preregistration`` (the hook's
    answer, or None), ``preregistration_error`` (None or the hook's error line), ``html``
    (the report's path) and ``timings`` (seconds per part).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = study_kind(df, source)
    rule_set = as_rules(rules)
    kept, flow = apply_exclusions(df, rule_set)
    timings["exclusions"] = time.perf_counter() - t0
    if len(kept) == 0:
        raise UserError(
            f"{source}: no answers left to analyse after the exclusions "
            f"({flow['excluded']} of {flow['enrolled']} participants excluded)"
        )

    tables: dict[str, pd.DataFrame] = {"exclusion_flow": flow_table(flow)}
    t = time.perf_counter()
    if chance is None:
        chance = chance_level(kind, kept)
        if is_accuracy(kind) and not 0 < chance < 1:
            raise UserError(
                f"{source}: no chance level in (0, 1) to test the accuracy against "
                f"(from the items' options: {chance:g}); give chance"
            )
    if is_accuracy(kind):
        acc = class_discrimination_accuracy(kept, chance=chance)
        answered, codes = None, None
        for name, by in (
            ("method", ["method"]),
            ("model_role", ["model_role"]),
            ("method_model_role", ["method", "model_role"]),
        ):
            table = acc[name]
            if not {"n_workers", "n_images"} <= set(table.columns):  # accuracy.py counts them where it can
                if answered is None:
                    answered = trials(kept, "correct")
                    codes = sample_codes(answered) if "image_id" in answered.columns else None
                table = with_samples(table, answered, by, after="n", codes=codes)
            tables[f"accuracy_by_{name}"] = table
    else:
        summary = trust_summary(kept, "method")
        if "n_images" not in summary.columns:
            summary = with_samples(summary, trials(kept, "score_stronger"), ["method"], after="n_workers")
        tables["trust_by_method"] = summary
        tables["trust_score_shares"] = score_shares(kept)
    timings["summaries"] = time.perf_counter() - t

    t = time.perf_counter()
    tables["rt_by_method"] = rt_summary(kept)
    tables["rt_histogram"] = rt_histogram(kept)
    timings["reaction_times"] = time.perf_counter() - t

    t = time.perf_counter()
    tables["agreement"] = agreement_table(kept, n_boot=n_boot, seed=seed)
    timings["agreement"] = time.perf_counter() - t

    t = time.perf_counter()
    sig_names: list[str] = []
    sig_error: str | None = None
    notes: dict[str, list[str]] = {}
    if significance is not None:
        raw, sig_error = _run_significance(significance, kept)
        for name, table in raw.items():
            for full, (enriched, extra) in model_tables(f"significance_{name}", table, kept).items():
                tables[full] = enriched
                notes[full] = extra
                sig_names.append(full)
    timings["significance"] = time.perf_counter() - t

    t = time.perf_counter()
    words = results_in_words(kind, tables, chance=chance)
    prereg, prereg_error = (None, None)
    if preregistration is not None:
        prereg, prereg_error = _run_preregistration(
            preregistration, {"kind": kind, "flow": dict(flow), "rules": asdict(rule_set), "tables": dict(tables)}
        )
    timings["words"] = time.perf_counter() - t

    t = time.perf_counter()
    shown = {name: display(name, table, notes=notes.get(name, ())) for name, table in tables.items()}
    paths: dict[str, dict[str, Path]] = {"csv": {}, "md": {}, "tex": {}}
    for name, table in tables.items():
        paths["csv"][name] = out / f"{name}.csv"
        table.to_csv(paths["csv"][name], index=False)
        paths["md"][name] = out / f"{name}.md"
        paths["md"][name].write_text(to_markdown(shown[name]), encoding="utf-8")
        paths["tex"][name] = out / f"{name}.tex"
        paths["tex"][name].write_text(to_latex(shown[name], label=name.replace("_", "-")), encoding="utf-8")
    (out / "results_in_words.md").write_text(
        f"# Results in words: {title}\n\n" + "\n\n".join(words) + "\n", encoding="utf-8"
    )
    timings["tables"] = time.perf_counter() - t

    t = time.perf_counter()
    figures = draw_figures(kind, tables, out, chance)
    timings["figures"] = time.perf_counter() - t

    t = time.perf_counter()
    report = out / "report.html"
    status = table_status(prereg)
    report.write_text(
        render_html(
            kind=kind,
            title=title,
            source=source,
            df=df,
            kept=kept,
            flow=flow,
            rules=asdict(rule_set),
            rules_source=rules_source,
            shown=shown,
            sig_names=sig_names,
            figures=figures,
            significance=significance,
            sig_error=sig_error,
            words=words,
            preregistration=preregistration,
            prereg=prereg,
            prereg_error=prereg_error,
            status=status,
            n_boot=n_boot,
            seed=seed,
            chance=chance,
            tables=tables,
        ),
        encoding="utf-8",
    )
    timings["html"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return {
        "kind": kind,
        "flow": flow,
        "rules": asdict(rule_set),
        "tables": tables,
        **paths,
        "figures": {name: path for name, (path, _) in figures.items()},
        "words": words,
        "significance_error": sig_error,
        "preregistration": prereg,
        "preregistration_error": prereg_error,
        "html": report,
        "timings": timings,
    }


def _error_line(e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _run_significance(hook: SignificanceHook, kept: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], str | None]:
    """Call the hook; any error becomes one line for the report instead of a crash."""
    try:
        result = hook(kept)
        if not isinstance(result, Mapping):
            raise TypeError(f"the significance hook returned {type(result).__name__}, not a dict of tables")
        tables = {}
        for name, table in result.items():
            if not isinstance(table, pd.DataFrame):
                raise TypeError(f"significance table {name!r} is a {type(table).__name__}, not a DataFrame")
            tables[_safe_name(str(name))] = table
        return tables, None
    except Exception as e:  # noqa: BLE001 - the report shows the error instead of crashing
        return {}, _error_line(e)


def _run_preregistration(hook: PreregistrationHook, context: dict) -> tuple[dict | None, str | None]:
    """Call the pre-registration hook; any error becomes one line for the report."""
    try:
        result = hook(context)
        if not isinstance(result, Mapping):
            raise TypeError(f"the pre-registration hook returned {type(result).__name__}, not a dict")
        return dict(result), None
    except Exception as e:  # noqa: BLE001 - the report shows the error instead of crashing
        return None, _error_line(e)


def _safe_name(name: str) -> str:
    """A file-name-safe version of a table name (letters, digits, '_' and '-')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "table"


def table_status(prereg: Mapping[str, Any] | None) -> dict[str, str]:
    """Table name -> "confirmatory" / "exploratory" from the hook's ``table_status`` (names
    with or without the ``significance_`` prefix); a table not listed is exploratory."""
    raw = (prereg or {}).get("table_status") or {}
    out = {}
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            word = str(value).strip().lower()
            out[str(name)] = word if word in STATUSES else "exploratory"
    return out


# --------------------------------------------------------------------------------------
# Tables beyond accuracy.py's


def score_shares(kept: pd.DataFrame) -> pd.DataFrame:
    """Trust: per method, the count and share of each ``score_stronger`` value -2..2.

    Columns: ``method, n, n_-2 .. n_2, share_-2 .. share_2`` (shares of the method's answers).
    """
    rows = kept[kept["score_stronger"].notna()]
    counts = (
        rows.assign(score=rows["score_stronger"].astype("int64"))
        .groupby(["method", "score"])
        .size()
        .unstack("score", fill_value=0)
        .reindex(columns=list(SCORES), fill_value=0)
    )
    out = pd.DataFrame({"method": counts.index.astype(str)})
    n = counts.sum(axis=1).to_numpy()
    out["n"] = n
    for s in SCORES:
        out[f"n_{s}"] = counts[s].to_numpy()
    for s in SCORES:
        out[f"share_{s}"] = counts[s].to_numpy() / np.where(n > 0, n, 1)
    return out


def rt_summary(kept: pd.DataFrame) -> pd.DataFrame:
    """Reaction time (``rt_ms``) per method: n, mean, and the 10/25/50/75/90 % quantiles."""
    g = kept.groupby("method", sort=True)["rt_ms"]
    q = g.quantile([0.1, 0.25, 0.5, 0.75, 0.9]).unstack()
    out = pd.DataFrame({"n": g.count(), "mean_ms": g.mean()})
    for p, name in zip(q.columns, ("q10_ms", "q25_ms", "median_ms", "q75_ms", "q90_ms"), strict=True):
        out[name] = q[p]
    return out.reset_index()


def rt_histogram(kept: pd.DataFrame, bins: int = 40) -> pd.DataFrame:
    """Reaction-time histogram per method on log-spaced bins shared by all methods.

    Columns: ``method, bin_low_ms, bin_high_ms, count, share`` (share of the method's answers).
    """
    rt = kept["rt_ms"].astype("float64")
    ok = rt.notna() & (rt > 0)
    if not ok.any():
        return pd.DataFrame(columns=["method", "bin_low_ms", "bin_high_ms", "count", "share"])
    lo, hi = float(rt[ok].min()), float(rt[ok].max())
    edges = np.geomspace(lo, hi if hi > lo else lo * 1.01, bins + 1)
    records = []
    for method, part in kept.loc[ok, ["method", "rt_ms"]].groupby("method", sort=True):
        counts, _ = np.histogram(part["rt_ms"].to_numpy(dtype=float), bins=edges)
        total = max(int(counts.sum()), 1)
        records.append(
            pd.DataFrame(
                {
                    "method": str(method),
                    "bin_low_ms": edges[:-1],
                    "bin_high_ms": edges[1:],
                    "count": counts.astype("int64"),
                    "share": counts / total,
                }
            )
        )
    return pd.concat(records, ignore_index=True)


# --------------------------------------------------------------------------------------
# HTML
