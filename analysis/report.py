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
``results_in_words.md``, and renders ``report.html`` from the Jinja2 template
``analysis/templates/report.html.j2`` (autoescaped; figures embedded as base64 ``data:`` URIs;
no external links, no scripts).

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

import base64
import platform
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.accuracy import class_discrimination_accuracy, trust_summary
from analysis.agreement import agreement_table
from analysis.exclusions import apply_exclusions, as_rules, flow_table
from analysis.load import study_kind
from analysis.report_figures import SCORES, draw_figures
from analysis.report_models import model_tables, sample_codes, trials, with_samples
from analysis.report_tables import (
    NOT_COMPUTABLE,
    Display,
    display,
    method_name,
    parts,
    to_latex,
    to_markdown,
)
from analysis.words import results_in_words
from camstudy.errors import UserError
from study.settings import Exclusions

SignificanceHook = Callable[[pd.DataFrame], Mapping[str, pd.DataFrame]]
PreregistrationHook = Callable[[dict], dict]

RULE_LABELS = {
    "max_failed_attention_checks": "Most failed attention checks allowed",
    "min_median_rt_ms": "Least median reaction time (ms)",
    "require_complete": "Must have completed the study",
}
KIND_WORDS = {"class_discrimination": "class discrimination", "trust": "trust"}
STATUSES = ("confirmatory", "exploratory")


# --------------------------------------------------------------------------------------
# The pipeline


def analyze(df: pd.DataFrame, rules: Exclusions | Mapping[str, Any] | None, out_dir: str | Path, *,
            title: str, source: str, significance: SignificanceHook | None = None,
            preregistration: PreregistrationHook | None = None,
            rules_source: str = "given by the caller", n_boot: int = 1000, seed: int = 0,
            chance: float = 0.5) -> dict[str, Any]:
    """Analyse the answers ``df`` (a normalized export) and write the report into ``out_dir``.

    ``rules``: the exclusion rules (:class:`study.settings.Exclusions` or a dict; None = the
    defaults); ``rules_source`` says in the report where they came from. ``title``: the
    report's title; ``source``: where the answers came from (a file, a study). ``n_boot``,
    ``seed``: the bootstrap of Krippendorff's alpha. ``chance``: the accuracy of guessing
    (two options per class-discrimination item: 0.5). ``significance``, ``preregistration``:
    the hooks of the module doc.

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
        raise UserError(f"{source}: no answers left to analyse after the exclusions "
                        f"({flow['excluded']} of {flow['enrolled']} participants excluded)")

    tables: dict[str, pd.DataFrame] = {"exclusion_flow": flow_table(flow)}
    t = time.perf_counter()
    if kind == "class_discrimination":
        acc = class_discrimination_accuracy(kept, chance=chance)
        answered, codes = None, None
        for name, by in (("method", ["method"]), ("model_role", ["model_role"]),
                         ("method_model_role", ["method", "model_role"])):
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
            preregistration, {"kind": kind, "flow": dict(flow), "rules": asdict(rule_set), "tables": dict(tables)})
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
    (out / "results_in_words.md").write_text(f"# Results in words: {title}\n\n" + "\n\n".join(words) + "\n",
                                             encoding="utf-8")
    timings["tables"] = time.perf_counter() - t

    t = time.perf_counter()
    figures = draw_figures(kind, tables, out, chance)
    timings["figures"] = time.perf_counter() - t

    t = time.perf_counter()
    report = out / "report.html"
    status = table_status(prereg)
    report.write_text(render_html(
        kind=kind, title=title, source=source, df=df, kept=kept, flow=flow, rules=asdict(rule_set),
        rules_source=rules_source, shown=shown, sig_names=sig_names, figures=figures,
        significance=significance, sig_error=sig_error, words=words, preregistration=preregistration,
        prereg=prereg, prereg_error=prereg_error, status=status, n_boot=n_boot, seed=seed, chance=chance,
        tables=tables), encoding="utf-8")
    timings["html"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return {"kind": kind, "flow": flow, "rules": asdict(rule_set), "tables": tables, **paths,
            "figures": {name: path for name, (path, _) in figures.items()}, "words": words,
            "significance_error": sig_error, "preregistration": prereg, "preregistration_error": prereg_error,
            "html": report, "timings": timings}


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


def status_of(name: str, status: Mapping[str, str]) -> str:
    """The status of table ``name`` (exploratory unless listed)."""
    return status.get(name) or status.get(name.removeprefix("significance_")) or "exploratory"


# --------------------------------------------------------------------------------------
# Tables beyond accuracy.py's


def score_shares(kept: pd.DataFrame) -> pd.DataFrame:
    """Trust: per method, the count and share of each ``score_stronger`` value -2..2.

    Columns: ``method, n, n_-2 .. n_2, share_-2 .. share_2`` (shares of the method's answers).
    """
    rows = kept[kept["score_stronger"].notna()]
    counts = (rows.assign(score=rows["score_stronger"].astype("int64"))
              .groupby(["method", "score"]).size().unstack("score", fill_value=0)
              .reindex(columns=list(SCORES), fill_value=0))
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
        records.append(pd.DataFrame({"method": str(method), "bin_low_ms": edges[:-1], "bin_high_ms": edges[1:],
                                     "count": counts.astype("int64"), "share": counts / total}))
    return pd.concat(records, ignore_index=True)


# --------------------------------------------------------------------------------------
# HTML


def _environment():
    """The Jinja2 environment of the report's template (autoescaped), made once."""
    global _ENV
    if _ENV is None:
        from jinja2 import Environment, PackageLoader, StrictUndefined

        _ENV = Environment(loader=PackageLoader("analysis", "templates"), autoescape=True,
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return _ENV


_ENV = None


def versions() -> dict[str, str]:
    """The versions of the software the numbers come from."""
    import jinja2
    import matplotlib
    import scipy
    import statsmodels

    import camstudy

    out = {"python": sys.version.split()[0], "pandas": pd.__version__, "numpy": np.__version__,
           "scipy": scipy.__version__, "statsmodels": statsmodels.__version__,
           "matplotlib": matplotlib.__version__, "jinja2": jinja2.__version__, "camstudy": camstudy.__version__}
    try:
        from importlib.metadata import version

        out["krippendorff"] = version("krippendorff")
    except Exception:  # noqa: BLE001 - optional detail
        pass
    out["platform"] = platform.platform()
    return out


def _files(name: str) -> str:
    return f"{name}.csv, {name}.md, {name}.tex"


def _view(d: Display, status: Mapping[str, str] | None, anchor: str | None = None) -> dict[str, Any]:
    """What the template's table macro needs: the display, its anchor, files and status."""
    return {"d": d, "parts": parts(d), "id": anchor or d.name.replace("_", "-"), "files": _files(d.name),
            "status": status_of(d.name, status) if status is not None else None}


def _counts(kind: str, df: pd.DataFrame, kept: pd.DataFrame, flow: Mapping[str, int]) -> Display:
    """The data-source counts; the methods are those of the analysed answers (attention
    checks are not a method)."""
    # unique() before any conversion, and masks on single columns: df may hold a million rows.
    checks = df["is_attention_check"].astype(bool).to_numpy()

    def distinct(column: str, frame: pd.DataFrame = df) -> list[str]:
        return sorted({str(v) for v in frame[column].unique() if not pd.isna(v)})

    methods = sorted((method_name(m) for m in distinct("method", kept)), key=str.lower)
    counts = pd.DataFrame({
        "quantity": ["Study kind", "Studies", "Modes", "Participants", "Answers", "Attention-check answers",
                     "Items (no checks)", "Images (no checks)", "Methods (analysed)"],
        "value": [KIND_WORDS.get(kind, kind), ", ".join(distinct("study")), ", ".join(distinct("mode")),
                  f"{flow['enrolled']:,}", f"{len(df):,}", f"{int(checks.sum()):,}",
                  f"{df['item_id'][~checks].nunique():,}", f"{df['image_id'][~checks].nunique():,}",
                  ", ".join(methods)]})
    return display("counts", counts, kind="generic", title="Counts")


def _prereg_view(preregistration: PreregistrationHook | None, prereg: Mapping[str, Any] | None,
                 error: str | None) -> dict[str, Any]:
    """The pre-registration section's content, from whatever the hook answered."""
    if preregistration is None:
        return {"state": "none"}
    if error is not None:
        return {"state": "error", "error": error}
    p = prereg or {}
    hypotheses = []
    for h in p.get("hypotheses") or []:
        h = h if isinstance(h, Mapping) else {"text": str(h)}
        hypotheses.append({k: "" if h.get(k) is None else str(h.get(k)) for k in ("id", "text", "test", "outcome")})
    deviations = []
    for dev in p.get("deviations") or []:
        if isinstance(dev, Mapping):
            deviations.append("; ".join(f"{k}: {v}" for k, v in dev.items()))
        else:
            deviations.append(str(dev))
    return {"state": "ok", "sha256": str(p.get("sha256") or "not given"),
            "frozen_at": str(p.get("frozen_at") or "not given"), "hypotheses": hypotheses,
            "deviations": deviations}


_STAT_SPACE = re.compile(r"\b(p|W|OR|t\(\d+\)) ([<=>]) ")


def _nobreak(text: str) -> str:
    """The words for HTML: no line break inside "p < .001", "W = 12", "t(37) = 2.88", "OR 1.95"
    (non-breaking spaces; results_in_words.md keeps plain ones)."""
    text = _STAT_SPACE.sub(lambda m: f"{m.group(1)}\u00a0{m.group(2)}\u00a0", text)
    return re.sub(r"\b(OR|CI) (?=[\d\[])", "\\1\u00a0", text)


def render_html(*, kind: str, title: str, source: str, df: pd.DataFrame, kept: pd.DataFrame,
                flow: Mapping[str, int], rules: Mapping[str, Any], rules_source: str,
                shown: Mapping[str, Display], sig_names: list[str], figures: Mapping[str, tuple[Path, str]],
                significance: SignificanceHook | None, sig_error: str | None, words: list[str],
                preregistration: PreregistrationHook | None, prereg: Mapping[str, Any] | None,
                prereg_error: str | None, status: Mapping[str, str], n_boot: int, seed: int, chance: float,
                tables: Mapping[str, pd.DataFrame]) -> str:
    """The report page (the template ``analysis/templates/report.html.j2``)."""
    rules_df = pd.DataFrame({"rule": [RULE_LABELS.get(k, k) for k in rules], "value": [str(v) for v in rules.values()]})
    results = (["accuracy_by_method", "accuracy_by_model_role", "accuracy_by_method_model_role"]
               if kind == "class_discrimination" else ["trust_by_method", "trust_score_shares"]) + ["rt_by_method"]
    figs = [{"name": name, "caption": caption,
             "src": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")}
            for name, (path, caption) in figures.items()]
    v = versions()
    context = {
        "title": title, "source": source, "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "counts": _view(_counts(kind, df, kept, flow), None, "counts"),
        "rules_source": rules_source,
        "rules": _view(display("rules", rules_df, kind="generic", title="Exclusion rules"), None, "rules"),
        "flow": _view(shown["exclusion_flow"], None, "exclusion-flow"),
        "words": [_nobreak(w) for w in words], "prereg": _prereg_view(preregistration, prereg, prereg_error),
        "results": [_view(shown[n], status) for n in results],
        "figures": figs,
        "agreement": _view(shown["agreement"], status, "agreement") if len(tables["agreement"]) else None,
        "not_computable": NOT_COMPUTABLE,
        "significance": {"state": ("none" if significance is None else "error" if sig_error is not None
                                   else "empty" if not sig_names else "ok"),
                         "error": sig_error,
                         "hook": getattr(significance, "__qualname__", type(significance).__name__),
                         "tables": [_view(shown[n], status, n.replace("_", "-")) for n in sig_names]},
        "assumptions": assumptions(kind, n_boot, seed, chance, significance, tables),
        "versions": _view(display("versions", pd.DataFrame({"software": list(v), "version": list(v.values())}),
                                  kind="generic", title="Software versions"), None, "versions"),
    }
    return _environment().get_template("report.html.j2").render(**context)


def assumptions(kind: str, n_boot: int, seed: int, chance: float, significance: SignificanceHook | None,
                tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """The "Tests and assumptions" list: how each table's numbers were computed."""
    items = []
    if kind == "class_discrimination":
        acc = tables["accuracy_by_method"]
        if "ci_method" in acc.columns:
            ci = acc["ci_method"].dropna().astype(str).unique()
            items += [
                "Accuracy (accuracy_by_*.csv): k correct of n analysed answers. 95% CI and p vs chance "
                f"(chance = {chance:g}) respect the clustering of answers by worker and by image: "
                + ("; ".join(ci) if len(ci) else "see the ci_method column") + ".",
                "How: the variance of the accuracy is the two-way cluster-robust one (Cameron, Gelbach & Miller "
                "2011): by worker plus by image minus their intersection (the worker-image cells), each with "
                "the small-sample factor G/(G − 1); the design effect is that variance over p(1 − p)/n (at "
                "least 1), and the interval is Wilson's score interval on the effective sample size n / design "
                "effect with the t quantile for min(workers, images) − 1 df. p vs chance is the score test on the "
                "same effective sample size and t reference, so p < .05 exactly when the interval excludes "
                "chance. In simulated studies with worker and image variation these intervals covered the true "
                "accuracy about 95% of the time and the Wilson intervals about 82% (docs/analysis.md).",
                "The Wilson interval (statsmodels proportion_confint, method='wilson') and the exact binomial "
                "test (scipy.stats.binomtest) are shown beside them for comparison; they treat every answer as "
                "independent, so they are too narrow and too small when workers or images differ.",
            ]
        else:
            items += [
                "Accuracy (accuracy_by_*.csv): k correct of n analysed answers; interval: 95% Wilson score "
                "interval (statsmodels proportion_confint, method='wilson').",
                f"p vs chance: exact two-sided binomial test of k out of n against chance = {chance:g} "
                "(scipy.stats.binomtest; two options per item).",
                "Both treat every answer as independent: they ignore the clustering of answers by worker and "
                "by image, so the intervals are too narrow and the p-values too small when workers or images "
                "differ. They are descriptive; method comparisons that respect the clustering are in "
                "'Clustered comparisons'.",
            ]
        items.append("Workers and images per row count the distinct workers ((mode, participant) pairs) and "
                     "images among the row's answers.")
    else:
        summary = tables["trust_by_method"]
        items.append("Trust scores (trust_by_method.csv): score_stronger, the answer re-signed so that positive "
                     "favours the stronger model. Mean/SD over answers; mean/SD of worker means over per-worker "
                     "means (a worker is a (mode, participant) pair, the independent unit).")
        if "ci_method" in summary.columns:
            ci = summary["ci_method"].dropna().astype(str).unique()
            items.append("95% CI: " + ("; ".join(ci) if len(ci) else "see the ci_method column")
                         + ": the mean over answers ± t × the square root of its two-way cluster-robust "
                         "variance (Cameron, Gelbach & Miller 2011: by worker plus by image minus the worker-image "
                         "cells, each with the factor G/(G − 1); at least the independent-answers SD²/n). The t "
                         "interval of the mean of the per-worker means is shown beside it; it treats workers as "
                         "independent and ignores the images.")
        else:
            items.append("95% CI: t interval of the mean of the per-worker means (assumes the per-worker means "
                         "are independent and roughly normal).")
        items += [
            "Wilcoxon: signed-rank test of the per-worker means against 0 (scipy.stats.wilcoxon, two-sided, "
            "zero_method='wilcox': exact zeros dropped; assumes symmetry about the median). t-test: "
            "one-sample t-test of the per-worker means against 0 (scipy.stats.ttest_1samp).",
            "These ignore the clustering by image (items), and the ordinal nature of the scale; the "
            "ordinal model is in 'Clustered comparisons' when run.",
        ]
    items += [
        "Reaction times (rt_by_method.csv, rt_histogram.csv): descriptive only, no test.",
        "Agreement (agreement.csv): Fleiss' kappa (statsmodels, over the items with the most common number "
        "of raters; z test of kappa = 0 with the Fleiss-Nee-Landis null variance), Krippendorff's alpha "
        f"(krippendorff package; class discrimination: nominal on the option chosen within each item, i.e. correct vs incorrect, chance from the item's own two options; trust: ordinal on the -2..2 score) with a percentile "
        f"bootstrap over items ({n_boot} resamples, seed {seed}), and the mean of Cohen's kappa over "
        "participant pairs sharing at least 5 items. The bootstrap resamples items only (not raters).",
    ]
    if significance is None:
        items.append("No clustered model was fitted.")
    else:
        items.append("Clustered comparisons: the tables come from the significance hook (GEE with exchangeable "
                     "working correlation clustered by worker, and/or mixed models with random effects for "
                     "worker and image, as each table says); GEE standard errors are cluster-robust (sandwich) "
                     "and need many clusters; mixed models assume normal random effects. The crossed worker x "
                     "image model (BinomialBayesMixedGLM) is fitted by variational Bayes, whose intervals are too "
                     "narrow: in simulations a null difference fell outside its 95% interval in 16.5% of "
                     "within-design and 29% of between-design studies. It shows the direction and size of the "
                     "effects; it is not a test. The tests are the GEE comparisons. The ordinal trust model "
                     "uses the scores that occur as its categories. Each model table gives the answers, workers "
                     "and images it was fitted on.")
    items.append("Per-method p-values in 'Results' are not corrected for multiple comparisons; the clustered "
                 "comparisons give Holm-adjusted p-values where their column says so.")
    return items
