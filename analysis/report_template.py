"""The analysis report's page: ``report.html`` rendered from the Jinja2 template
``analysis/templates/report.html.j2`` (autoescaped; figures embedded as base64 ``data:``
URIs; no external links, no scripts), with the assumptions and methods notes it lists and
the versions of the libraries that computed it. :func:`analysis.report.analyze` computes
the tables and figures and calls :func:`render_html`.
"""

from __future__ import annotations

import base64
import platform
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.agreement import variable_words
from analysis.kinds import is_accuracy, known
from analysis.report_tables import (
    NOT_COMPUTABLE,
    Display,
    display,
    method_name,
    parts,
)
from camstudy.kinds import Outcome, kind_of

SignificanceHook = Callable[[pd.DataFrame], Mapping[str, pd.DataFrame]]
PreregistrationHook = Callable[[dict], dict]


RULE_LABELS = {
    "max_failed_attention_checks": "Most failed attention checks allowed",
    "min_median_rt_ms": "Least median reaction time (ms)",
    "require_complete": "Must have completed the study",
}


def status_of(name: str, status: Mapping[str, str]) -> str:
    """The status of table ``name`` (exploratory unless listed)."""
    return status.get(name) or status.get(name.removeprefix("significance_")) or "exploratory"


def _environment():
    """The Jinja2 environment of the report's template (autoescaped), made once."""
    global _ENV
    if _ENV is None:
        from jinja2 import Environment, PackageLoader, StrictUndefined

        _ENV = Environment(
            loader=PackageLoader("analysis", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _ENV


_ENV = None


def versions() -> dict[str, str]:
    """The versions of the software the numbers come from."""
    import jinja2
    import matplotlib
    import scipy
    import statsmodels

    import camstudy

    out = {
        "python": sys.version.split()[0],
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "matplotlib": matplotlib.__version__,
        "jinja2": jinja2.__version__,
        "camstudy": camstudy.__version__,
    }
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
    return {
        "d": d,
        "parts": parts(d),
        "id": anchor or d.name.replace("_", "-"),
        "files": _files(d.name),
        "status": status_of(d.name, status) if status is not None else None,
    }


def _counts(kind: str, df: pd.DataFrame, kept: pd.DataFrame, flow: Mapping[str, int]) -> Display:
    """The data-source counts; the methods are those of the analysed answers (attention
    checks are not a method)."""
    # unique() before any conversion, and masks on single columns: df may hold a million rows.
    checks = df["is_attention_check"].astype(bool).to_numpy()

    def distinct(column: str, frame: pd.DataFrame = df) -> list[str]:
        return sorted({str(v) for v in frame[column].unique() if not pd.isna(v)})

    methods = sorted((method_name(m) for m in distinct("method", kept)), key=str.lower)
    study_kind = known(kind)
    counts = pd.DataFrame(
        {
            "quantity": [
                "Study kind",
                "Studies",
                "Modes",
                "Participants",
                "Answers",
                "Attention-check answers",
                "Items (no checks)",
                "Images (no checks)",
                "Methods (analysed)",
            ],
            "value": [
                study_kind.words if study_kind is not None else kind,
                ", ".join(distinct("study")),
                ", ".join(distinct("mode")),
                f"{flow['enrolled']:,}",
                f"{len(df):,}",
                f"{int(checks.sum()):,}",
                f"{df['item_id'][~checks].nunique():,}",
                f"{df['image_id'][~checks].nunique():,}",
                ", ".join(methods),
            ],
        }
    )
    return display("counts", counts, kind="generic", title="Counts")


def _prereg_view(
    preregistration: PreregistrationHook | None, prereg: Mapping[str, Any] | None, error: str | None
) -> dict[str, Any]:
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
    return {
        "state": "ok",
        "sha256": str(p.get("sha256") or "not given"),
        "frozen_at": str(p.get("frozen_at") or "not given"),
        "hypotheses": hypotheses,
        "deviations": deviations,
    }


_STAT_SPACE = re.compile(r"\b(p|W|OR|t\(\d+\)) ([<=>]) ")


def _nobreak(text: str) -> str:
    """The words for HTML: no line break inside "p < .001", "W = 12", "t(37) = 2.88", "OR 1.95"
    (non-breaking spaces; results_in_words.md keeps plain ones)."""
    text = _STAT_SPACE.sub(lambda m: f"{m.group(1)}\u00a0{m.group(2)}\u00a0", text)
    return re.sub(r"\b(OR|CI) (?=[\d\[])", "\\1\u00a0", text)


def render_html(
    *,
    kind: str,
    title: str,
    source: str,
    df: pd.DataFrame,
    kept: pd.DataFrame,
    flow: Mapping[str, int],
    rules: Mapping[str, Any],
    rules_source: str,
    shown: Mapping[str, Display],
    sig_names: list[str],
    figures: Mapping[str, tuple[Path, str]],
    significance: SignificanceHook | None,
    sig_error: str | None,
    words: list[str],
    preregistration: PreregistrationHook | None,
    prereg: Mapping[str, Any] | None,
    prereg_error: str | None,
    status: Mapping[str, str],
    n_boot: int,
    seed: int,
    chance: float,
    tables: Mapping[str, pd.DataFrame],
) -> str:
    """The report page (the template ``analysis/templates/report.html.j2``)."""
    rules_df = pd.DataFrame({"rule": [RULE_LABELS.get(k, k) for k in rules], "value": [str(v) for v in rules.values()]})
    results = [*kind_of(kind).analysis.tables, "rt_by_method"]
    figs = [
        {
            "name": name,
            "caption": caption,
            "src": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii"),
        }
        for name, (path, caption) in figures.items()
    ]
    v = versions()
    context = {
        "title": title,
        "source": source,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "counts": _view(_counts(kind, df, kept, flow), None, "counts"),
        "rules_source": rules_source,
        "rules": _view(display("rules", rules_df, kind="generic", title="Exclusion rules"), None, "rules"),
        "flow": _view(shown["exclusion_flow"], None, "exclusion-flow"),
        "words": [_nobreak(w) for w in words],
        "prereg": _prereg_view(preregistration, prereg, prereg_error),
        "results": [_view(shown[n], status) for n in results],
        "figures": figs,
        "agreement": _view(shown["agreement"], status, "agreement") if len(tables["agreement"]) else None,
        "not_computable": NOT_COMPUTABLE,
        "significance": {
            "state": (
                "none"
                if significance is None
                else "error"
                if sig_error is not None
                else "empty"
                if not sig_names
                else "ok"
            ),
            "error": sig_error,
            "hook": getattr(significance, "__qualname__", type(significance).__name__),
            "tables": [_view(shown[n], status, n.replace("_", "-")) for n in sig_names],
        },
        "assumptions": assumptions(kind, n_boot, seed, chance, significance, tables),
        "versions": _view(
            display(
                "versions",
                pd.DataFrame({"software": list(v), "version": list(v.values())}),
                kind="generic",
                title="Software versions",
            ),
            None,
            "versions",
        ),
    }
    return _environment().get_template("report.html.j2").render(**context)


def _agreement_words(kind: str) -> str:
    """The variable and level agreement uses for this kind, in the agreement table's words."""
    k = kind_of(kind)
    column = "correct" if k.analysis.outcome is Outcome.ACCURACY else str(k.analysis.score_column)
    return f"{k.words}: {k.analysis.agreement_level} level, rated: {variable_words(column, kind)}"


def assumptions(
    kind: str,
    n_boot: int,
    seed: int,
    chance: float,
    significance: SignificanceHook | None,
    tables: Mapping[str, pd.DataFrame],
) -> list[str]:
    """The "Tests and assumptions" list: how each table's numbers were computed."""
    items = []
    if is_accuracy(kind):
        acc = tables["accuracy_by_method"]
        if "ci_method" in acc.columns:
            ci = acc["ci_method"].dropna().astype(str).unique()
            items += [
                "Accuracy (accuracy_by_*.csv): k correct of n analysed answers. 95% CI and p vs chance "
                f"(chance = {chance:g}) respect the clustering of answers by worker and by image: "
                + ("; ".join(ci) if len(ci) else "see the ci_method column")
                + ".",
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
        items.append(
            "Workers and images per row count the distinct workers ((mode, participant) pairs) and "
            "images among the row's answers."
        )
    else:
        summary = tables["trust_by_method"]
        items.append(
            "Trust scores (trust_by_method.csv): score_stronger, the answer re-signed so that positive "
            "favours the stronger model. Mean/SD over answers; mean/SD of worker means over per-worker "
            "means (a worker is a (mode, participant) pair, the independent unit)."
        )
        if "ci_method" in summary.columns:
            ci = summary["ci_method"].dropna().astype(str).unique()
            items.append(
                "95% CI: "
                + ("; ".join(ci) if len(ci) else "see the ci_method column")
                + ": the mean over answers ± t × the square root of its two-way cluster-robust "
                "variance (Cameron, Gelbach & Miller 2011: by worker plus by image minus the worker-image "
                "cells, each with the factor G/(G − 1); at least the independent-answers SD²/n). The t "
                "interval of the mean of the per-worker means is shown beside it; it treats workers as "
                "independent and ignores the images."
            )
            if "p_value" in summary.columns:
                items.append(
                    "p vs 0 (clustered): the two-sided t test of mean = 0 with the same two-way cluster-robust "
                    "standard error and the same t reference as the 95% CI, so it respects the clustering by "
                    "worker and image and p < .05 exactly when the interval excludes 0."
                )
        else:
            items.append(
                "95% CI: t interval of the mean of the per-worker means (assumes the per-worker means "
                "are independent and roughly normal)."
            )
        items += [
            "Wilcoxon: signed-rank test of the per-worker means against 0 (scipy.stats.wilcoxon, two-sided, "
            "zero_method='wilcox': exact zeros dropped; assumes symmetry about the median). t-test: "
            "one-sample t-test of the per-worker means against 0 (scipy.stats.ttest_1samp).",
            "These ignore the clustering by image (items): workers who rated the same images share the "
            "images' effects, so they reject too often when images differ; they also ignore the ordinal "
            "nature of the scale. The ordinal model is in 'Clustered comparisons' when run.",
        ]
    items += [
        "Reaction times (rt_by_method.csv, rt_histogram.csv): descriptive only, no test.",
        "Agreement (agreement.csv): Fleiss' kappa (statsmodels, over the items with the most common number "
        "of raters; z test of kappa = 0 with the Fleiss-Nee-Landis null variance), Krippendorff's alpha "
        f"(krippendorff package; {_agreement_words(kind)}) with a percentile "
        f"bootstrap over items ({n_boot} resamples, seed {seed}), and the mean of Cohen's kappa over "
        "participant pairs sharing at least 5 items. The bootstrap resamples items only (not raters).",
    ]
    if significance is None:
        items.append("No clustered model was fitted.")
    else:
        items.append(
            "Clustered comparisons: the tables come from the significance hook (GEE with exchangeable "
            "working correlation clustered by worker, and/or mixed models with random effects for "
            "worker and image, as each table says); GEE standard errors are cluster-robust (sandwich) "
            "and need many clusters; mixed models assume normal random effects. The crossed worker x "
            "image model (BinomialBayesMixedGLM) is fitted by variational Bayes, whose intervals are too "
            "narrow: in simulations a null difference fell outside its 95% interval in 16.5% of "
            "within-design and 29% of between-design studies. It shows the direction and size of the "
            "effects; it is not a test. The tests are the GEE comparisons. The ordinal trust model "
            "uses the scores that occur as its categories. Each model table gives the answers, workers "
            "and images it was fitted on."
        )
    items.append(
        "Per-method p-values in 'Results' are not corrected for multiple comparisons; the clustered "
        "comparisons give Holm-adjusted p-values where their column says so."
    )
    return items
