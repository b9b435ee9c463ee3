"""The analysis report: exclusions, tables (CSV), figures (PNG) and one self-contained HTML page.

:func:`analyze` is the whole pipeline after loading: it applies the declared exclusion rules,
computes the per-method tables (class discrimination: accuracy with Wilson intervals and exact
binomial tests against chance; trust: per-worker score summaries with Wilcoxon and t tests),
the reaction-time distributions and the inter-rater agreement, writes every table as CSV,
draws every figure *from those CSV tables* (so each figure is traceable: its caption names the
CSV it was drawn from), and writes ``report.html`` with the figures embedded as base64
``data:`` URIs (no external links, no scripts).

An optional ``significance`` hook, ``(kept_df) -> dict[str, DataFrame]``, adds the clustered
method comparisons (GEE / mixed models, ``analysis.significance``); its tables are rendered in
a "Clustered comparisons" section and written as ``significance_<name>.csv``. A hook that
raises is reported in that section instead of ending the analysis.
"""

from __future__ import annotations

import base64
import html
import math
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
from camstudy.errors import UserError
from study.settings import Exclusions

SignificanceHook = Callable[[pd.DataFrame], Mapping[str, pd.DataFrame]]

NOT_COMPUTABLE = "not computable"
SCORES = (-2, -1, 0, 1, 2)
AGREEMENT_VALUES = ("fleiss_kappa", "fleiss_z", "fleiss_p", "alpha", "alpha_low", "alpha_high", "cohen_kappa")
FLOW_LABELS = {
    "enrolled": "Enrolled (participants with at least one answer)",
    "completed": "Completed",
    "screened_out": "Screened out",
    "active": "Still active (stopped part-way)",
    "excluded_attention": "Excluded: failed attention checks",
    "excluded_too_fast": "Excluded: median reaction time too fast",
    "excluded_incomplete": "Excluded: incomplete",
    "excluded": "Excluded (each participant once)",
    "analysed_participants": "Analysed participants",
    "answers": "Answers (all rows, checks included)",
    "analysed_answers": "Analysed answers (no attention checks)",
}


# --------------------------------------------------------------------------------------
# The pipeline


def analyze(df: pd.DataFrame, rules: Exclusions | Mapping[str, Any] | None, out_dir: str | Path, *,
            title: str, source: str, significance: SignificanceHook | None = None,
            rules_source: str = "given by the caller", n_boot: int = 1000, seed: int = 0,
            chance: float = 0.5) -> dict[str, Any]:
    """Analyse the answers ``df`` (a normalized export) and write the report into ``out_dir``.

    ``rules``: the exclusion rules (:class:`study.settings.Exclusions` or a dict; None = the
    defaults); ``rules_source`` says in the report where they came from. ``title``: the
    report's title; ``source``: where the answers came from (a file, a study). ``n_boot``,
    ``seed``: the bootstrap of Krippendorff's alpha. ``chance``: the accuracy of guessing
    (two options per class-discrimination item: 0.5).

    Returns a dict: ``kind``, ``flow`` (the exclusion flow dict), ``rules`` (as a dict),
    ``tables`` (name -> DataFrame, every one also written as ``<name>.csv``), ``csv`` (name ->
    path), ``figures`` (name -> PNG path), ``significance_error`` (None or the hook's error
    line), ``html`` (the report's path) and ``timings`` (seconds per part).
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
        tables["accuracy_by_method"] = acc["method"]
        tables["accuracy_by_model_role"] = acc["model_role"]
        tables["accuracy_by_method_model_role"] = acc["method_model_role"]
    else:
        tables["trust_by_method"] = trust_summary(kept, "method")
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
    sig_tables: dict[str, pd.DataFrame] = {}
    sig_error: str | None = None
    if significance is not None:
        sig_tables, sig_error = _run_significance(significance, kept)
        for name, table in sig_tables.items():
            tables[f"significance_{name}"] = table
    timings["significance"] = time.perf_counter() - t

    t = time.perf_counter()
    csv = {}
    for name, table in tables.items():
        path = out / f"{name}.csv"
        table.to_csv(path, index=False)
        csv[name] = path
    timings["csv"] = time.perf_counter() - t

    t = time.perf_counter()
    figures = _draw_figures(kind, tables, out, chance)
    timings["figures"] = time.perf_counter() - t

    t = time.perf_counter()
    report = out / "report.html"
    report.write_text(_html(kind=kind, title=title, source=source, df=df, flow=flow, rules=asdict(rule_set),
                            rules_source=rules_source, tables=tables, figures=figures,
                            significance=significance, sig_tables=sig_tables, sig_error=sig_error,
                            n_boot=n_boot, seed=seed, chance=chance), encoding="utf-8")
    timings["html"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return {"kind": kind, "flow": flow, "rules": asdict(rule_set), "tables": tables, "csv": csv,
            "figures": {name: path for name, (path, _) in figures.items()},
            "significance_error": sig_error, "html": report, "timings": timings}


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
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return {}, f"{type(e).__name__}: {first}" if first else type(e).__name__


def _safe_name(name: str) -> str:
    """A file-name-safe version of a table name (letters, digits, '_' and '-')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "table"


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
# Figures (drawn from the tables, i.e. from the CSVs)


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    _pyplot().close(fig)
    return path


def _draw_figures(kind: str, tables: Mapping[str, pd.DataFrame], out: Path, chance: float
                  ) -> dict[str, tuple[Path, str]]:
    """name -> (PNG path, caption); every caption names the CSV the figure was drawn from."""
    figs: dict[str, tuple[Path, str]] = {}
    if kind == "class_discrimination":
        figs["accuracy_by_method"] = (
            _accuracy_figure(tables["accuracy_by_method"], out / "accuracy_by_method.png", chance),
            f"Accuracy per method with 95% Wilson intervals (error bars) and chance ({chance:g}, dashed). "
            "Drawn from accuracy_by_method.csv.")
    else:
        figs["trust_scores"] = (
            _trust_figure(tables["trust_score_shares"], tables["trust_by_method"], out / "trust_scores.png"),
            "Left: share of each score (-2..2, positive favours the stronger model) per method. Right: "
            "mean of the per-worker mean scores with its 95% t interval. Drawn from "
            "trust_score_shares.csv (left) and trust_by_method.csv (right).")
    figs["rt_by_method"] = (
        _rt_figure(tables["rt_histogram"], out / "rt_by_method.png"),
        "Reaction-time distribution per method (share of the method's analysed answers per log-spaced "
        "bin). Drawn from rt_histogram.csv (quantiles in rt_by_method.csv).")
    figs["agreement"] = (
        _agreement_figure(tables["agreement"], out / "agreement.png"),
        "Krippendorff's alpha per method with its percentile bootstrap 95% interval; methods where "
        "alpha is not computable are marked as such (not drawn as 0). Drawn from agreement.csv.")
    return figs


def _accuracy_figure(table: pd.DataFrame, path: Path, chance: float) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(table) + 2), 3.6))
    x = np.arange(len(table))
    acc = table["accuracy"].to_numpy(dtype=float)
    err = np.vstack([acc - table["ci_low"].to_numpy(dtype=float), table["ci_high"].to_numpy(dtype=float) - acc])
    ax.bar(x, acc, color="#4c78a8", width=0.6)
    ax.errorbar(x, acc, yerr=err, fmt="none", ecolor="black", capsize=4)
    ax.axhline(chance, color="#d62728", linestyle="--", linewidth=1, label=f"chance ({chance:g})")
    ax.set_xticks(x, [str(m) for m in table["method"]], rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _trust_figure(shares: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, max(3.0, 0.6 * len(shares) + 1.5)))
    y = np.arange(len(shares))
    colors = ["#b2182b", "#ef8a62", "#d9d9d9", "#67a9cf", "#2166ac"]
    start = np.zeros(len(shares))
    for s, c in zip(SCORES, colors, strict=True):
        w = shares[f"share_{s}"].to_numpy(dtype=float)
        left.barh(y, w, left=start, color=c, label=f"{s:+d}" if s else "0")
        start += w
    left.set_yticks(y, [str(m) for m in shares["method"]])
    left.set_xlim(0, 1)
    left.set_xlabel("share of answers")
    left.legend(ncol=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ys = np.arange(len(summary))
    mean = summary["worker_mean"].to_numpy(dtype=float)
    err = np.vstack([mean - summary["ci_low"].to_numpy(dtype=float), summary["ci_high"].to_numpy(dtype=float) - mean])
    right.errorbar(mean, ys, xerr=np.nan_to_num(err), fmt="o", color="#4c78a8", capsize=4)
    right.axvline(0, color="#d62728", linestyle="--", linewidth=1)
    right.set_yticks(ys, [str(m) for m in summary["method"]])
    right.set_xlim(-2, 2)
    right.set_ylim(-0.5, len(summary) - 0.5)
    right.set_xlabel("mean score (per-worker means)")
    return _save(fig, path)


def _rt_figure(hist: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for method, part in hist.groupby("method", sort=True):
        edges = np.append(part["bin_low_ms"].to_numpy(dtype=float), part["bin_high_ms"].to_numpy(dtype=float)[-1])
        ax.stairs(part["share"].to_numpy(dtype=float), edges, label=str(method))
    ax.set_xscale("log")
    ax.set_xlabel("reaction time (ms, log scale)")
    ax.set_ylabel("share of answers")
    if len(hist):
        ax.legend(fontsize=8)
    return _save(fig, path)


def _agreement_figure(table: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(table) + 2), 3.6))
    for i, row in enumerate(table.itertuples(index=False)):
        alpha = float(row.alpha)
        if math.isfinite(alpha):
            low, high = float(row.alpha_low), float(row.alpha_high)
            err = [[alpha - low], [high - alpha]] if math.isfinite(low) and math.isfinite(high) else None
            ax.errorbar([i], [alpha], yerr=err, fmt="o", color="#4c78a8", capsize=4)
        else:
            ax.text(i, 0.5, NOT_COMPUTABLE, ha="center", va="center", rotation=90, fontsize=8, color="#777777",
                    transform=ax.get_xaxis_transform())
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.set_xticks(np.arange(len(table)), [str(m) for m in table["method"]], rotation=20, ha="right")
    ax.set_xlim(-0.7, len(table) - 0.3)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("Krippendorff's alpha")
    return _save(fig, path)


# --------------------------------------------------------------------------------------
# HTML


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}
img{max-width:100%}
.error{color:#a00;background:#fee;padding:.5em;border:1px solid #dbb}
code{background:#f5f5f5;padding:0 .2em}
"""


def _table(df: pd.DataFrame, table_id: str = "", na_rep: str = "n/a") -> str:
    """``df`` as an escaped HTML table (every cell through ``to_html(escape=True)``)."""
    def fmt(v: float) -> str:
        return f"{v:.4g}"

    attrs = f' id="{html.escape(table_id)}"' if table_id else ""
    out = df.to_html(index=False, escape=True, na_rep=na_rep, float_format=fmt, border=0)
    return out.replace("<table", f"<table{attrs}", 1) if attrs else out


def _agreement_display(table: pd.DataFrame) -> pd.DataFrame:
    """The agreement table with every NaN estimate shown as "not computable" (never 0)."""
    out = table.astype({c: object for c in AGREEMENT_VALUES if c in table.columns})
    for c in AGREEMENT_VALUES:
        if c in out.columns:
            out[c] = [NOT_COMPUTABLE if v is None or (isinstance(v, float) and not math.isfinite(v))
                      else f"{float(v):.4g}" for v in table[c]]
    return out


def versions() -> dict[str, str]:
    """The versions of the software the numbers come from."""
    import matplotlib
    import scipy
    import statsmodels

    import camstudy

    out = {"python": sys.version.split()[0], "pandas": pd.__version__, "numpy": np.__version__,
           "scipy": scipy.__version__, "statsmodels": statsmodels.__version__,
           "matplotlib": matplotlib.__version__, "camstudy": camstudy.__version__}
    try:
        from importlib.metadata import version

        out["krippendorff"] = version("krippendorff")
    except Exception:  # noqa: BLE001 - optional detail
        pass
    out["platform"] = platform.platform()
    return out


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _html(*, kind: str, title: str, source: str, df: pd.DataFrame, flow: Mapping[str, int],
          rules: Mapping[str, Any], rules_source: str, tables: Mapping[str, pd.DataFrame],
          figures: Mapping[str, tuple[Path, str]], significance: SignificanceHook | None,
          sig_tables: Mapping[str, pd.DataFrame], sig_error: str | None, n_boot: int, seed: int,
          chance: float) -> str:
    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
             f"<style>{CSS}</style></head><body>\n<h1>{e(title)}</h1>\n"
             f"<p>Generated {e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))} by camstudy analyze.</p>\n"]

    # Data source and counts
    methods = sorted(df["method"].dropna().astype(str).unique())
    counts = pd.DataFrame({"quantity": ["study kind", "studies", "modes", "participants", "answers",
                                        "attention-check answers", "items", "images", "methods"],
                           "value": [kind, ", ".join(sorted(df["study"].dropna().astype(str).unique())),
                                     ", ".join(sorted(df["mode"].dropna().astype(str).unique())),
                                     str(flow["enrolled"]), str(len(df)),
                                     str(int(df["is_attention_check"].astype(bool).sum())),
                                     str(df["item_id"].nunique()), str(df["image_id"].nunique()),
                                     ", ".join(methods)]})
    parts.append(_section("Data source and counts", _p(f"Source: {source}") + _table(counts, "counts"),
                          "source"))

    # Exclusion flow
    flow_df = pd.DataFrame({"step": list(flow), "count": [int(v) for v in flow.values()],
                            "meaning": [FLOW_LABELS.get(k, k) for k in flow]})
    rules_df = pd.DataFrame({"rule": list(rules), "value": [str(v) for v in rules.values()]})
    parts.append(_section(
        "Exclusion flow",
        _p(f"Exclusion rules ({rules_source}); None switches a rule off. A participant failing several "
           "rules counts under each rule and once in 'excluded'. Attention-check answers are never "
           "analysed.") + _table(rules_df, "rules") + _table(flow_df, "exclusion-flow")
        + _p("Table: exclusion_flow.csv."), "exclusions"))

    # Results tables
    body = []
    if kind == "class_discrimination":
        for name, label in (("accuracy_by_method", "per method"), ("accuracy_by_model_role", "per model role"),
                            ("accuracy_by_method_model_role", "per method and model role")):
            body.append(f"<h3>Accuracy {e(label)} ({e(name)}.csv)</h3>" + _table(tables[name], name))
    else:
        body.append("<h3>Trust scores per method (trust_by_method.csv)</h3>"
                    + _table(tables["trust_by_method"], "trust_by_method"))
        body.append("<h3>Score shares per method (trust_score_shares.csv)</h3>"
                    + _table(tables["trust_score_shares"], "trust_score_shares"))
    body.append("<h3>Reaction times per method (rt_by_method.csv)</h3>" + _table(tables["rt_by_method"], "rt_by_method"))
    parts.append(_section("Results", "\n".join(body), "results"))

    # Figures
    figs = []
    for name, (path, caption) in figures.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        figs.append(f'<figure id="fig-{e(name)}"><img alt="{e(name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(caption)}</figcaption></figure>")
    parts.append(_section("Figures", "\n".join(figs), "figures"))

    # Agreement
    agreement = tables["agreement"]
    note = ("Per method over the analysed answers (agreement.csv). 'not computable' means no evidence "
            "either way (no item with two raters, or every answer in one category); it is never 0, "
            "which would mean chance agreement.")
    body = _p(note) + (_table(_agreement_display(agreement), "agreement", na_rep=NOT_COMPUTABLE)
                       if len(agreement) else _p(f"Agreement: {NOT_COMPUTABLE} (no rated items)."))
    parts.append(_section("Agreement", body, "agreement"))

    # Clustered comparisons
    if significance is None:
        body = _p("No clustered comparison was run (no significance hook was given). The tests in "
                  "'Results' ignore clustering by worker and image.")
    elif sig_error is not None:
        body = f'<p class="error">The clustered comparisons failed: {e(sig_error)}</p>'
    elif not sig_tables:
        body = _p("The significance hook returned no tables.")
    else:
        hook_name = getattr(significance, "__qualname__", type(significance).__name__)
        body = _p(f"From {hook_name}.") + "\n".join(
            f"<h3>{e(name)} (significance_{e(name)}.csv)</h3>" + _table(t, f"significance-{name}")
            for name, t in sig_tables.items())
    parts.append(_section("Clustered comparisons", body, "significance"))

    # Tests and assumptions
    parts.append(_section("Tests and assumptions", _assumptions(kind, n_boot, seed, chance, significance), "tests"))

    # Versions
    v = versions()
    parts.append(_section("Software versions", _table(pd.DataFrame({"software": list(v), "version": list(v.values())}),
                                                      "versions"), "versions"))
    parts.append("</body></html>\n")
    return "".join(parts)


def _assumptions(kind: str, n_boot: int, seed: int, chance: float, significance: SignificanceHook | None) -> str:
    items = []
    if kind == "class_discrimination":
        items += [
            "Accuracy (accuracy_by_*.csv): k correct of n analysed answers; interval: 95% Wilson score "
            "interval (statsmodels proportion_confint, method='wilson').",
            f"p_value: exact two-sided binomial test of k out of n against chance = {chance:g} "
            "(scipy.stats.binomtest; two options per item).",
            "Both treat every answer as independent: they ignore the clustering of answers by worker and by "
            "image, so the intervals are too narrow and the p-values too small when workers or images "
            "differ. They are descriptive; method comparisons that respect the clustering are in "
            "'Clustered comparisons'.",
        ]
    else:
        items += [
            "Trust scores (trust_by_method.csv): score_stronger, the answer re-signed so that positive "
            "favours the stronger model. mean/sd over answers; worker_mean/worker_sd over per-worker means "
            "(a worker is a (mode, participant) pair, the independent unit).",
            "ci_low/ci_high: 95% t interval of the mean of the per-worker means (assumes the per-worker "
            "means are independent and roughly normal).",
            "wilcoxon_*: Wilcoxon signed-rank test of the per-worker means against 0 (scipy.stats.wilcoxon, "
            "two-sided, zero_method='wilcox': exact zeros dropped; assumes symmetry about the median). "
            "t_*: one-sample t-test of the per-worker means against 0 (scipy.stats.ttest_1samp).",
            "These ignore the clustering by image (items), and the ordinal nature of the scale; the "
            "ordinal / mixed models are in 'Clustered comparisons' when run.",
        ]
    items += [
        "Reaction times (rt_by_method.csv, rt_histogram.csv): descriptive only, no test.",
        "Agreement (agreement.csv): Fleiss' kappa (statsmodels, over the items with the most common number "
        "of raters; z test of kappa = 0 with the Fleiss-Nee-Landis null variance), Krippendorff's alpha "
        f"(krippendorff package; nominal for class discrimination, ordinal for trust) with a percentile "
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
                     "uses the scores that occur as its categories.")
    items.append("No correction for multiple comparisons is applied to the per-method p-values above.")
    return "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in items) + "</ul>"
