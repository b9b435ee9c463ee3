"""Results in words: the report's tables as APA-style sentences a researcher can paste into a paper.

Every number in a sentence is read from a table the report also writes (accuracy_by_method,
trust_by_method and the significance tables), so the words and the tables cannot disagree.
APA details: p without a leading zero and "p < .001" below that; percentages with one
decimal; intervals in brackets ("95% CI [57.5, 64.8]"); method names in words.

The verdicts follow the tests and nothing else: "more than" / "less than" / "above chance" /
"reliably above zero" only where the test's p (Holm-adjusted where the table has it) is below
``alpha``; otherwise "no reliable difference" / "not reliably different", whatever the
point estimates say. Where no clustered comparison was run, no method is said to differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from analysis.kinds import is_accuracy
from analysis.report_tables import method_name, table_kind
from camstudy.kinds import kind_of

ALPHA = 0.05


# --------------------------------------------------------------------------------------
# APA numbers


def apa_p(p: float) -> str:
    """ "p = .002", "p < .001", "p > .999"; "p not computable" for NaN."""
    if p is None or not math.isfinite(p):
        return "p not computable"
    if p < 0.001:
        return "p < .001"
    if p > 0.999:
        return "p > .999"
    return "p = " + f"{p:.3f}".removeprefix("0")


def pct(x: float) -> str:
    """A proportion as a percentage with one decimal: 0.6123 -> "61.2%"."""
    return f"{100 * x:.1f}%"


def ci_pct(low: float, high: float) -> str:
    """ "95% CI [57.5, 64.8]" from proportions."""
    return f"95% CI [{100 * low:.1f}, {100 * high:.1f}]"


def ci2(low: float, high: float, what: str = "95% CI") -> str:
    """ "95% CI [1.42, 2.68]" (two decimals)."""
    return f"{what} [{_f2(low)}, {_f2(high)}]"


def _f2(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _stat(x: float) -> str:
    """A rank statistic: whole numbers without decimals, else one decimal."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _count(n: object) -> str:
    return f"{int(n):,}"


def _sample(n: object, workers: object, images: object | None) -> str:
    """ "810 answers from 90 workers on 40 images" (images left out when unknown)."""
    text = f"{_count(n)} answers from {_count(workers)} workers"
    if images is not None and not (isinstance(images, float) and math.isnan(images)):
        text += f" on {_count(images)} images"
    return text


def _join(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _p_of(row: Mapping, *columns: str) -> tuple[float, bool]:
    """The first of ``columns`` the row has with a number, and whether it is Holm-adjusted."""
    for c in columns:
        if c in row and row[c] is not None and not pd.isna(row[c]):
            return float(row[c]), c.endswith("holm")
    return math.nan, False


def _significant(p: float, alpha: float) -> bool:
    return math.isfinite(p) and p < alpha


def _constant(df: pd.DataFrame, column: str) -> str | None:
    """The one value of a descriptive column, or None."""
    if column not in df.columns:
        return None
    values = df[column].dropna().astype(str).unique()
    return str(values[0]) if len(values) == 1 else None


def significance_of(tables: Mapping[str, pd.DataFrame], kind: str) -> pd.DataFrame | None:
    """The first significance table of ``kind`` (see :func:`analysis.report_tables.table_kind`)."""
    for name, t in tables.items():
        if name.startswith("significance_") and table_kind(name, t) == kind:
            return t
    return None


# --------------------------------------------------------------------------------------
# The paragraphs


def results_in_words(
    kind: str, tables: Mapping[str, pd.DataFrame], chance: float = 0.5, alpha: float = ALPHA
) -> list[str]:
    """The "Results in words" paragraphs of a study of ``kind`` from the report's ``tables``:
    accuracy against chance for a kind scored right or wrong, the scale's words otherwise."""
    if is_accuracy(kind):
        return class_discrimination_words(tables, chance, alpha, kind_of(kind).analysis.right_answer)
    return trust_words(tables, alpha)


def class_discrimination_words(
    tables: Mapping[str, pd.DataFrame],
    chance: float = 0.5,
    alpha: float = ALPHA,
    right_answer: str = "chose the right category",
) -> list[str]:
    """Accuracy per method with its interval and sample, the test against chance, and the
    GEE comparisons with every less accurate method; then the model roles, the mixed model
    and one sentence on the methods behind the numbers."""
    acc = tables["accuracy_by_method"]
    order = acc.sort_values(["accuracy", "method"], ascending=[False, True], kind="stable")
    gee = significance_of(tables, "gee")
    clustered = "ci_method" in acc.columns
    sentences = []
    ranked = [str(m) for m in order["method"]]
    for i, row in enumerate(order.to_dict("records")):
        m = str(row["method"])
        s = (
            f"With {method_name(m)}, workers {right_answer} in {pct(row['accuracy'])} of trials "
            f"({ci_pct(row['ci_low'], row['ci_high'])}; "
            f"{_sample(row['n'], row.get('n_workers'), row.get('n_images'))})"
        )
        p, _ = _p_of(row, "p_value")
        if _significant(p, alpha):
            s += f", {'above' if row['accuracy'] > chance else 'below'} chance ({apa_p(p)})"
        else:
            s += f", not reliably different from chance ({apa_p(p)})"
        if gee is not None:
            s += _comparisons(m, ranked[i + 1 :], gee, alpha)
        sentences.append(s + ".")
    paragraphs = [" ".join(sentences)]

    extra = []
    roles = tables.get("accuracy_by_model_role")
    if roles is not None and len(roles):
        parts = [
            f"with the {r['model_role']} model's explanations in {pct(r['accuracy'])} "
            f"({ci_pct(r['ci_low'], r['ci_high'])}; {_count(r['n'])} answers)"
            for r in roles.to_dict("records")
        ]
        extra.append(f"Over all methods, workers {right_answer} " + _join(parts) + ".")
    mixed = significance_of(tables, "mixed")
    if mixed is not None and len(mixed):
        ref = method_name(_constant(mixed, "reference") or mixed.attrs.get("reference", "the reference"))
        parts = [
            f"{_f2(r['odds_ratio'])} for {method_name(r['method'])} "
            f"({ci2(r['or_low'], r['or_high'], 'approximate 95% interval')})"
            for r in mixed.sort_values("odds_ratio", ascending=False).to_dict("records")
        ]
        s = (
            "A crossed worker × image mixed logistic model (variational Bayes: approximate intervals, "
            f"not a test) gave conditional odds ratios against {ref} of " + _join(parts)
        )
        random = significance_of(tables, "mixed_random")
        if random is not None and len(random):
            sds = dict(zip(random["effect"], random["sd_logit"], strict=True))
            if "worker" in sds and "image" in sds:
                s += (
                    f", with random-effect SDs of {_f2(sds['worker'])} (workers) and {_f2(sds['image'])} "
                    "(images) on the logit scale"
                )
        extra.append(s + ".")
    if clustered:
        extra.append(
            f"Accuracy intervals and tests against chance ({_chance(chance)}) respect the clustering "
            f"of answers: {_constant(acc, 'ci_method') or 'clustered by worker and image'}; the test "
            "against chance is the score test on the same effective sample size and t reference, so "
            "it rejects exactly when the interval excludes chance. The Wilson intervals and exact "
            "binomial tests beside them in the tables treat every answer as independent."
        )
    else:
        extra.append(
            f"Accuracy intervals are Wilson score intervals and the tests against chance "
            f"({_chance(chance)}) exact binomial tests; both ignore the clustering of answers by "
            "worker and image, so they are too narrow and too small when workers or images differ."
        )
    if gee is not None:
        holm = "p_holm" in gee.columns
        extra.append(
            "Odds ratios (OR) compare two methods in a GEE logistic model with the model role as a "
            "covariate, clustered by worker (robust standard errors)"
            + (f"; p-values are Holm-adjusted across the {_pairs(len(gee))} (the 95% CIs are not)" if holm else "")
            + f"; α = {_alpha(alpha)}."
        )
    else:
        extra.append("No clustered comparison between methods was run, so no method is said to differ from another.")
    paragraphs.append(" ".join(extra))
    return paragraphs


def _comparisons(m: str, lower: list[str], gee: pd.DataFrame, alpha: float) -> str:
    """ ", more than with X (OR ..., 95% CI [...], p = ...), but not reliably different from Y (...)"."""
    more, less, none = [], [], []
    for other in lower:
        pair = gee[
            ((gee["method_a"] == m) & (gee["method_b"] == other))
            | ((gee["method_a"] == other) & (gee["method_b"] == m))
        ]
        if pair.empty:
            continue
        r = pair.iloc[0]
        odds, low, high = float(r["odds_ratio"]), float(r["ci_low"]), float(r["ci_high"])
        if r["method_a"] != m:  # orient as m vs other
            odds, low, high = 1 / odds, 1 / high, 1 / low
        p, _ = _p_of(r, "p_holm", "p_value")
        text = f"{method_name(other)} (OR {_f2(odds)}, {ci2(low, high)}, {apa_p(p)})"
        if not _significant(p, alpha):
            none.append(text)
        elif odds > 1:
            more.append(text)
        else:
            less.append(text)
    found = []
    if more:
        found.append("more than with " + _join([more[0], *(f"with {x}" for x in more[1:])]))
    if less:
        found.append("less than with " + _join([less[0], *(f"with {x}" for x in less[1:])]))
    text = (", " + " and ".join(found)) if found else ""
    if none:
        text += (", but not reliably different from " if found else ", with no reliable difference from ") + _join(none)
    return text


def _pairs(n: int) -> str:
    return "1 pair" if n == 1 else f"{n} pairs"


def _chance(chance: float) -> str:
    """Chance as a percentage without needless decimals: 0.5 -> "50%"."""
    return f"{100 * chance:g}%"


def _alpha(alpha: float) -> str:
    return f"{alpha:.2f}".removeprefix("0")


def trust_estimate(summary: pd.DataFrame) -> str:
    """The column the trust summary's ``ci_low, ci_high`` are an interval of: ``worker_mean``
    (the t interval over per-worker means) unless the table carries a ``ci_method`` (the
    clustered interval, then of ``mean``: the mean over answers)."""
    return "mean" if "ci_method" in summary.columns else "worker_mean"


def trust_words(tables: Mapping[str, pd.DataFrame], alpha: float = ALPHA) -> list[str]:
    """The mean score per method in favour of the stronger model with its interval, sample and
    tests against 0; the paired differences between methods; the ordinal model.

    The verdict against 0 follows the clustered test (``p_value``: the two-way cluster-robust
    t test of the interval, Holm-adjusted where the one-sample table has ``p_value_holm``)
    when the summary has it, else the Wilcoxon signed-rank test of the per-worker means."""
    summary = tables["trust_by_method"]
    one = significance_of(tables, "trust_one_sample")
    est = trust_estimate(summary)
    order = summary.sort_values([est, "method"], ascending=[False, True], kind="stable")
    holm_rows = one.set_index("method") if one is not None and "method" in one.columns else None
    clustered = "p_value" in summary.columns
    sentences = []
    any_holm = False
    for row in order.to_dict("records"):
        m = str(row["method"])
        tests = dict(row)
        if holm_rows is not None and m in holm_rows.index:
            tests.update(holm_rows.loc[m].to_dict())
        p_c, holm_c = _p_of(tests, "p_value_holm", "p_value")
        p_w, holm_w = _p_of(tests, "wilcoxon_p_holm", "wilcoxon_p")
        p_t, holm_t = _p_of(tests, "t_p_holm", "t_p")
        any_holm |= holm_c or holm_w or holm_t
        value = float(row[est])
        if _significant(p_c if clustered else p_w, alpha):
            verdict = "reliably above zero" if value > 0 else "reliably below zero (in favour of the weaker model)"
        else:
            verdict = "not reliably different from zero"
        df_t = int(tests["t_df"]) if "t_df" in tests and pd.notna(tests.get("t_df")) else int(row["n_workers"]) - 1
        worker_tests = (
            f"Wilcoxon signed-rank W = {_stat(row['wilcoxon_stat'])}, {apa_p(p_w)}; "
            f"t({df_t}) = {_f2(row['t_stat'])}, {apa_p(p_t)}"
        )
        tests_said = (
            f"clustered t test, {apa_p(p_c)}; per-worker means, ignoring the images: {worker_tests}"
            if clustered
            else worker_tests
        )
        sentences.append(
            f"With {method_name(m)}, the mean score in favour of the stronger model was {_f2(value)} "
            f"({ci2(row['ci_low'], row['ci_high'])}; "
            f"{_sample(row['n_answers'], row['n_workers'], row.get('n_images'))}), {verdict} "
            f"({tests_said})."
        )
    paragraphs = [" ".join(sentences)]

    pairs = significance_of(tables, "trust_pairwise")
    if pairs is not None and len(pairs):
        paired = [_paired_sentence(r, alpha) for r in pairs.to_dict("records")]
        holm = "wilcoxon_p_holm" in pairs.columns
        paired.append(
            "A paired difference is the mean over the workers who rated both methods of each "
            "worker's mean score with the first minus that with the second, with a t interval over "
            "those workers"
            + (f"; the p-values are Holm-adjusted across the {_pairs(len(pairs))}" if holm else "")
            + f"; α = {_alpha(alpha)}."
        )
        paragraphs.append(" ".join(paired))

    extra = []
    ordinal = significance_of(tables, "ordinal")
    if ordinal is not None and len(ordinal):
        extra.append(_ordinal_sentence(ordinal, alpha))
    ci_words = (
        _constant(summary, "ci_method")
        if "ci_method" in summary.columns
        else "t intervals over the per-worker mean scores"
    )
    if clustered:
        extra.append(
            "Scores run from -2 (the weaker model's explanation is more trustworthy) to +2 (the "
            f"stronger model's); the intervals are {ci_words}; the clustered test of each mean against 0 "
            "uses the same standard error and t reference, so it respects the clustering of answers by "
            "worker and image and rejects exactly when the interval excludes 0"
            + (" (before the Holm adjustment)" if any_holm else "")
            + "; the Wilcoxon signed-rank and t tests beside it compare the per-worker mean scores with 0 "
            "(the worker is the independent unit; they ignore the clustering by image, so they reject too "
            "often when images differ)"
            + (
                "; the p-values are Holm-adjusted across the methods (the 95% CIs are not)"
                if any_holm
                else "; the p-values are not adjusted for multiple comparisons"
            )
            + "."
        )
    else:
        extra.append(
            "Scores run from -2 (the weaker model's explanation is more trustworthy) to +2 (the "
            f"stronger model's); the intervals are {ci_words}; the Wilcoxon signed-rank and t tests "
            "compare the per-worker mean scores with 0 (the worker is the independent unit"
            + ("; the tests ignore the clustering by image)" if "ci_method" in summary.columns else ")")
            + (
                "; their p-values are Holm-adjusted across the methods"
                if any_holm
                else "; their p-values are not adjusted for multiple comparisons"
            )
            + "."
        )
    if pairs is None and ordinal is None:
        extra.append("No clustered comparison between methods was run, so no method is said to differ from another.")
    paragraphs.append(" ".join(extra))
    return paragraphs


def _paired_sentence(r: Mapping, alpha: float) -> str:
    a, b = str(r["method_a"]), str(r["method_b"])
    d = float(r["mean_diff"])
    low, high = float(r.get("ci_low", math.nan)), float(r.get("ci_high", math.nan))
    t = float(r["t_stat"]) if pd.notna(r.get("t_stat")) else math.nan
    if d < 0:  # say it in the direction of the larger preference
        a, b, d, low, high, t = b, a, -d, -high, -low, -t
    p_w, _ = _p_of(r, "wilcoxon_p_holm", "wilcoxon_p")
    p_t, _ = _p_of(r, "t_p_holm", "t_p")
    n = int(r["n_workers"])
    numbers = (
        f"mean paired difference {_f2(d)}, {ci2(low, high)}, {_count(n)} workers; "
        f"Wilcoxon W = {_stat(r['wilcoxon_stat'])}, {apa_p(p_w)}; t({n - 1}) = {_f2(t)}, {apa_p(p_t)}"
    )
    if _significant(p_w, alpha):
        return (
            f"Workers who rated both favoured the stronger model more with {method_name(a)} than with "
            f"{method_name(b)} ({numbers})."
        )
    return f"Between {method_name(a)} and {method_name(b)} there was no reliable difference ({numbers})."


def _ordinal_sentence(ordinal: pd.DataFrame, alpha: float) -> str:
    ref = method_name(ordinal.attrs.get("reference", "the reference method"))
    methods, side = [], None
    for r in ordinal.to_dict("records"):
        term = str(r["term"])
        low = r.get("or_low", math.exp(r["ci_low"]))
        high = r.get("or_high", math.exp(r["ci_high"]))
        text = f"OR {_f2(r['odds_ratio'])}, {ci2(low, high)}, {apa_p(r['p_value'])}"
        if term.startswith("method[") and term.endswith("]"):
            methods.append(f"{method_name(term[7:-1])} ({text})")
        elif term == "stronger_left":
            bias = "a side bias" if _significant(r["p_value"], alpha) else "no reliable side bias"
            side = f"showing the stronger model on the left gave {text}: {bias}"
    inference = ordinal.attrs.get("inference")
    how = (
        f" ({inference.strip().rstrip('.')})"
        if isinstance(inference, str) and inference.strip()
        else ", with cluster-robust standard errors by worker,"
    )
    s = (
        "An ordinal (proportional-odds) logistic model of the score on the method and the stronger "
        f"model's side{how} gave odds ratios of a higher score against {ref} for " + _join(methods)
    )
    if side:
        s += f"; {side}"
    return s + "."
