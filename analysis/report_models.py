"""What each table of the report was computed on, and the tables a model keeps in ``df.attrs``.

The report shows with every model table the answers, workers and images it was fitted on. The
summaries and the significance functions return some of these counts (``n``, ``n_workers``,
``attrs["n_answers"]``...); what they do not return is counted here from the analysed answers,
with the same row filters as the function that made the table (non-check answers with the
columns it needs). A worker is a ``(mode, participant)`` pair, as everywhere in ``analysis``.

Besides the counts: the mixed model's random-effect SDs and the ordinal model's cut points
(``attrs``) become tables of their own, the ordinal model's coefficient intervals get their
odds-ratio scale, and the paired trust differences their t interval over the workers who rated
both (the same per-worker differences as the table's tests).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from analysis.clustered import worker_codes
from analysis.report_tables import table_kind


def trials(kept: pd.DataFrame, *required: str) -> pd.DataFrame:
    """The non-check rows of ``kept`` with every ``required`` column present (the rows the
    accuracy and significance functions use)."""
    rows = kept
    if "is_attention_check" in rows.columns and rows["is_attention_check"].astype(bool).any():
        rows = rows[~rows["is_attention_check"].astype(bool).to_numpy()]
    for c in required:
        if c in rows.columns and rows[c].isna().any():
            rows = rows[rows[c].notna().to_numpy()]
    return rows


def sample_codes(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(worker code, image code) per row of ``rows``: computed once, shared by the counts."""
    return worker_codes(rows), pd.factorize(rows["image_id"], use_na_sentinel=False)[0].astype(np.int64)


def _distinct_per_group(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """How many distinct ``values`` each group code 0..n_groups-1 has (hash-based, no sort:
    these run on every answer of a million-answer study)."""
    width = int(values.max(initial=0)) + 1
    pairs = pd.unique(group * width + values)
    return np.bincount(pairs // width, minlength=n_groups)


def sample_counts(
    rows: pd.DataFrame, by: list[str] | None = None, codes: tuple[np.ndarray, np.ndarray] | None = None
) -> pd.DataFrame:
    """Answers, workers and images of ``rows`` (per ``by`` group when given, sorted by the
    groups): ``[*by,] n_answers, n_workers, n_images``. ``codes``: :func:`sample_codes` of
    ``rows`` when already known."""
    worker, image = codes if codes is not None else sample_codes(rows)
    if not by:
        return pd.DataFrame(
            {"n_answers": [len(rows)], "n_workers": [len(pd.unique(worker))], "n_images": [len(pd.unique(image))]}
        )
    group = np.zeros(len(rows), dtype=np.int64)
    levels = []
    for c in by:
        code, uniques = pd.factorize(rows[c], sort=True, use_na_sentinel=False)
        group = group * len(uniques) + code
        levels.append(uniques)
    sizes = [len(u) for u in levels]
    n_groups = int(np.prod(sizes)) if sizes else 1
    answers = np.bincount(group, minlength=n_groups)
    present = np.flatnonzero(answers)
    out = {}
    rest = present.copy()
    for c, uniques, size in zip(reversed(by), reversed(levels), reversed(sizes), strict=True):
        out[c] = np.asarray(uniques)[rest % size]
        rest //= size
    frame = pd.DataFrame({c: out[c] for c in by})
    frame["n_answers"] = answers[present].astype("int64")
    frame["n_workers"] = _distinct_per_group(group, worker, n_groups)[present].astype("int64")
    frame["n_images"] = _distinct_per_group(group, image, n_groups)[present].astype("int64")
    return frame


def with_samples(
    table: pd.DataFrame,
    rows: pd.DataFrame,
    by: list[str],
    after: str,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """``table`` (one row per ``by`` group) with ``n_workers`` and ``n_images`` of ``rows``
    inserted after column ``after`` where the table lacks them (accuracy.py may add them itself).
    ``codes``: :func:`sample_codes` of ``rows`` when already known."""
    missing = [c for c in ("n_workers", "n_images") if c not in table.columns]
    if not missing or any(c not in table.columns for c in by):
        return table
    counts = sample_counts(rows, by, codes)[[*by, *missing]]
    merged = table.merge(counts, on=by, how="left", sort=False)
    for c in missing:
        merged[c] = merged[c].fillna(0).astype("int64")
    cols = list(table.columns)
    at = cols.index(after) + 1 if after in cols else len(cols)
    merged = merged[[*cols[:at], *missing, *cols[at:]]]
    merged.attrs.update(table.attrs)
    return merged


def model_tables(name: str, table: pd.DataFrame, kept: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """A significance table with the sample it was fitted on, and the tables its ``attrs``
    hold: name -> (table, notes for the report). The table itself comes first.

    GEE and mixed model: the class-discrimination answers with a result; ordinal model: the
    trust answers with a score and a side (``attrs`` n_answers / n_workers where the model
    stores them); one-sample trust tests: per method; paired trust tests: the answers of the
    workers who rated both methods, and the t interval of the mean paired difference.
    """
    kind = table_kind(name, table)
    out = table.copy()
    notes: list[str] = []
    if isinstance(table.attrs.get("inference"), str) and table.attrs["inference"].strip():
        notes.append(f"Inference: {table.attrs['inference'].strip().rstrip('.')}.")
    extra: dict[str, tuple[pd.DataFrame, list[str]]] = {}
    if kind in ("gee", "mixed"):
        out = _add_constant_sample(out, trials(kept, "correct", "method", "model_role"))
        if kind == "gee" and "correlation" in table.attrs:
            notes.append(
                f"Estimated within-worker (exchangeable) working correlation: {float(table.attrs['correlation']):.3f}."
            )
        if kind == "mixed":
            notes.append(
                "Variational Bayes (mean-field) posterior: the intervals are approximate and too "
                "narrow; this model shows the direction and size of the effects, it is not a test."
            )
            random = _random_effects(table)
            if random is not None:
                extra[f"{name}_random_effects"] = (
                    random,
                    [
                        "Posterior means of the random-intercept SDs on the logit scale (variational Bayes; "
                        "approximate, no interval reported by the fit)."
                    ],
                )
    elif kind == "ordinal":
        out = _add_constant_sample(out, trials(kept, "score_stronger", "method", "model_left"))
        if {"ci_low", "ci_high"} <= set(out.columns):
            for c, src in (("or_low", "ci_low"), ("or_high", "ci_high")):
                if c not in out.columns:
                    out[c] = np.exp(out[src].to_numpy(dtype=float))
        if table.attrs.get("converged") is False:
            notes.append("Warning: the ordinal model did not converge; its numbers are not reliable.")
        cuts = _cut_points(table)
        if cuts is not None:
            extra[f"{name}_cut_points"] = (
                cuts,
                [
                    "Thresholds t_k of P(score <= k) = expit(t_k - x'b), on the logit scale; only the scores "
                    "that occur are categories."
                ],
            )
    elif kind == "trust_one_sample" and "n_images" not in out.columns and "method" in out.columns:
        counts = sample_counts(trials(kept, "score_stronger", "method"), ["method"])[["method", "n_images"]]
        out = out.merge(counts.astype({"method": out["method"].dtype}), on="method", how="left")
        out.attrs.update(table.attrs)
    elif kind == "trust_pairwise":
        out = _paired_intervals(out, trials(kept, "score_stronger", "method"))
    return {name: (out, notes), **extra}


def _add_constant_sample(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Add ``n_answers, n_workers, n_images`` (the whole model's sample) where missing; the
    model's own ``attrs`` counts win over the recount."""
    counts = sample_counts(rows).iloc[0].to_dict()
    for c in ("n_answers", "n_workers", "n_images"):
        if c not in table.columns:
            value = table.attrs.get(c, counts[c])
            table[c] = np.full(len(table), int(value), dtype="int64")
    return table


def _random_effects(table: pd.DataFrame) -> pd.DataFrame | None:
    """The mixed model's random-effect SDs from ``attrs`` (worker_sd, image_sd), if stored."""
    effects = [(e, table.attrs[f"{e}_sd"]) for e in ("worker", "image") if f"{e}_sd" in table.attrs]
    if not effects:
        return None
    return pd.DataFrame({"effect": [e for e, _ in effects], "sd_logit": [float(v) for _, v in effects]})


def _cut_points(table: pd.DataFrame) -> pd.DataFrame | None:
    """The ordinal model's thresholds between successive observed scores, from ``attrs``."""
    thresholds, categories = table.attrs.get("thresholds"), table.attrs.get("categories")
    if thresholds is None or categories is None:
        return None
    thresholds = np.asarray(thresholds, dtype=float).ravel()
    categories = [int(c) for c in categories]
    if len(thresholds) != len(categories) - 1:
        return None
    return pd.DataFrame({"lower_score": categories[:-1], "upper_score": categories[1:], "cut_point": thresholds})


def _paired_intervals(pairs: pd.DataFrame, rows: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The paired trust table with, per pair, the answers and images behind it and the t
    interval of ``mean_diff`` over the workers who rated both (the same per-worker
    differences as the table's Wilcoxon and paired t tests)."""
    scored = pd.DataFrame(
        {
            "worker": worker_codes(rows),
            "method": rows["method"].astype(str).to_numpy(),
            "image": rows["image_id"].to_numpy(),
            "score": rows["score_stronger"].astype("float64").to_numpy(),
        }
    )
    means = scored.pivot_table(index="worker", columns="method", values="score", aggfunc="mean")
    add = {"n_answers": [], "n_images": [], "ci_low": [], "ci_high": []}
    for a, b in zip(pairs["method_a"].astype(str), pairs["method_b"].astype(str), strict=True):
        if a in means.columns and b in means.columns:
            both = means[[a, b]].dropna()
            diff = (both[a] - both[b]).to_numpy()
            used = scored[scored["worker"].isin(both.index) & scored["method"].isin([a, b])]
        else:
            diff, used = np.array([]), scored.iloc[:0]
        add["n_answers"].append(len(used))
        add["n_images"].append(used["image"].nunique())
        if len(diff) > 1:
            half = float(stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff)))
            add["ci_low"].append(float(diff.mean()) - half)
            add["ci_high"].append(float(diff.mean()) + half)
        else:
            add["ci_low"].append(math.nan)
            add["ci_high"].append(math.nan)
    for c, values in add.items():
        if c not in pairs.columns:
            pairs[c] = np.asarray(values, dtype="int64" if c.startswith("n_") else "float64")
    return pairs
