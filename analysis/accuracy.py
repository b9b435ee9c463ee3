"""Per-method summaries: class-discrimination accuracy against chance, and trust scores.

Answers are clustered by worker and by image, so the intervals and the tests against chance
here account for both (:mod:`analysis.clustered`: the two-way cluster-robust variance of
Cameron, Gelbach & Miller 2011, with CR1 factors and t(min(workers, images) - 1)):

- accuracy: the Wilson score interval computed on the effective sample size ``n / deff``
  (``deff``, the design effect, is the clustered variance over the independent-answers
  variance ``p(1 - p) / n``, at least 1) with the t quantile in place of z, and the score
  test against chance on the same effective sample size and t: the test rejects at
  ``alpha`` exactly when the interval excludes chance. The plain Wilson interval
  (``wilson_low, wilson_high``) and the exact binomial test (``binom_p``) stay beside them;
  they treat every answer as independent and are too narrow / too small when workers or
  images differ.
- trust: the mean score over answers with the two-way clustered t interval (``ci_low,
  ci_high``) and the matching t test against 0 (``p_value``: the same standard error and
  degrees of freedom, so it rejects at ``alpha`` exactly when the interval excludes 0); the
  t interval of the per-worker means (``worker_t_low, worker_t_high``) and the Wilcoxon and
  t tests of the per-worker means against 0 (``wilcoxon_p``, ``t_p``) stay as they were
  (they treat workers as independent and ignore the images, so they are liberal when
  images differ).

``docs/analysis.md`` ("Why this interval") gives the coverage measured on simulated studies.
The method comparisons (GEE, mixed and ordinal models) live in ``analysis/significance.py``.

Both functions take analysed answers (after :func:`analysis.exclusions.apply_exclusions`);
attention-check rows, if still present, are ignored, and so are rows without a result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from analysis.clustered import (
    BY_IMAGE,
    BY_WORKER,
    INDEPENDENT,
    TWO_WAY,
    group_variance,
    image_codes,
    worker_codes,
)
from camstudy.errors import UserError

ACCURACY_COLUMNS = [
    "n",
    "n_workers",
    "n_images",
    "k",
    "accuracy",
    "ci_low",
    "ci_high",
    "p_value",
    "wilson_low",
    "wilson_high",
    "binom_p",
    "ci_method",
]

# ci_method per row, by what could be clustered on (a single worker or image cannot be).
ACCURACY_CI_METHODS = {
    TWO_WAY: "two-way cluster-robust (worker and image) Wilson interval on n / design effect, "
    "t with min(workers, images) − 1 df",
    BY_WORKER: "cluster-robust by worker only (one image or no image ids) Wilson interval on n / design "
    "effect, t with workers − 1 df",
    BY_IMAGE: "cluster-robust by image only (one worker) Wilson interval on n / design effect, t with images − 1 df",
    INDEPENDENT: "Wilson score interval (one worker and one image: nothing to cluster on)",
}
TRUST_CI_METHODS = {
    TWO_WAY: "two-way cluster-robust (worker and image) t interval of the mean over answers, "
    "t with min(workers, images) − 1 df",
    BY_WORKER: "cluster-robust by worker only (one image or no image ids) t interval of the mean over "
    "answers, t with workers − 1 df",
    BY_IMAGE: "cluster-robust by image only (one worker) t interval of the mean over answers, t with images − 1 df",
    INDEPENDENT: "t interval of the mean over answers (one worker and one image: nothing to cluster on)",
}


def accuracy(
    df: pd.DataFrame, by: str | Sequence[str] = "method", chance: float = 0.5, alpha: float = 0.05
) -> pd.DataFrame:
    """Accuracy per group of ``by`` (e.g. "method", "model_role", ["method", "model_role"]).

    Columns: the ``by`` columns, then ``n`` answers, ``n_workers`` (distinct ``(mode,
    participant)`` pairs), ``n_images`` (distinct ``image_id``; absent without that column),
    ``k`` correct, ``accuracy`` = k/n;

    - ``ci_low, ci_high``: the clustered ``1 - alpha`` interval: Wilson's score interval
      with ``n`` replaced by ``n_eff = n / deff`` and z by the t quantile with ``df =
      min(n_workers, n_images) - 1``, where ``deff = max(1, V / (p(1-p)/n))`` and ``V`` is
      the two-way (worker, image) cluster-robust variance of the accuracy
      (:func:`analysis.clustered.group_variance`);
    - ``p_value``: the matching two-sided score test against ``chance``, ``T = (p - chance)
      / sqrt(chance (1 - chance) / n_eff)`` referred to t(df): below ``alpha`` exactly when
      the interval excludes chance;
    - ``wilson_low, wilson_high``: the plain Wilson interval (statsmodels
      ``proportion_confint``, method="wilson") and ``binom_p``: the exact two-sided binomial
      test of k out of n (``scipy.stats.binomtest``); both ignore the clustering;
    - ``ci_method``: how the row's interval was computed (one worker or one image in a group
      leaves only the other dimension to cluster on; one of each: plain Wilson and a z test).
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, "correct", "participant"] if c not in df.columns]
    if missing:
        raise UserError(f"accuracy: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    extra = [c for c in ("mode", "participant", "image_id") if c in df.columns]
    rows = _trials(df, [*by, "correct", *extra])
    rows = rows[rows["correct"].notna().to_numpy()]
    y = rows["correct"].astype(bool).to_numpy(dtype=np.float64)
    grouped = rows.groupby(by, sort=True, dropna=False)
    group = grouped.ngroup().to_numpy(dtype=np.int64)
    keys = grouped.size().index
    out = keys.to_frame(index=False) if len(by) > 1 else pd.DataFrame({by[0]: keys})
    image = image_codes(rows)
    v = group_variance(group, y, worker_codes(rows), image, len(out))
    out["n"] = v.n
    out["n_workers"] = v.n_workers
    if image is not None:
        out["n_images"] = v.n_images
    k = np.rint(v.mean * v.n).astype(np.int64)
    out["k"] = k
    p = v.mean
    out["accuracy"] = p
    out["ci_low"], out["ci_high"], out["p_value"] = _clustered_wilson(p, v.n, v.v_cluster, v.df, v.how, chance, alpha)
    low, high = proportion_confint(k, v.n, alpha=alpha, method="wilson")
    out["wilson_low"], out["wilson_high"] = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    out["binom_p"] = [
        stats.binomtest(int(a), int(b), chance, alternative="two-sided").pvalue for a, b in zip(k, v.n, strict=True)
    ]
    out["ci_method"] = [ACCURACY_CI_METHODS[h] for h in v.how]
    out = out.astype(
        {"n": "int64", "n_workers": "int64", "k": "int64", **({"n_images": "int64"} if image is not None else {})}
    )
    return out[[*by, *(c for c in ACCURACY_COLUMNS if c in out.columns)]]


def _clustered_wilson(
    p: np.ndarray, n: np.ndarray, v: np.ndarray, df: np.ndarray, how: np.ndarray, chance: float, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The design-effect Wilson interval and the matching score test (see :func:`accuracy`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v_iid = p * (1 - p) / n
        deff = np.where(v_iid > 0, v / v_iid, 1.0)
        deff = np.maximum(np.nan_to_num(deff, nan=1.0), 1.0)
        n_eff = n / deff
        independent = how == INDEPENDENT
        q = np.where(independent, stats.norm.ppf(1 - alpha / 2), stats.t.ppf(1 - alpha / 2, np.maximum(df, 1)))
        q2 = q * q
        denom = 1 + q2 / n_eff
        centre = (p + q2 / (2 * n_eff)) / denom
        half = q / denom * np.sqrt(p * (1 - p) / n_eff + q2 / (4 * n_eff * n_eff))
        low, high = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
        tstat = (p - chance) / np.sqrt(chance * (1 - chance) / n_eff)
        pval = np.where(independent, 2 * stats.norm.sf(np.abs(tstat)), 2 * stats.t.sf(np.abs(tstat), np.maximum(df, 1)))
    bad = n < 1
    untestable = bad | (not 0 < chance < 1)
    return (
        np.where(bad, np.nan, low),
        np.where(bad, np.nan, high),
        np.where(untestable, np.nan, np.minimum(pval, 1.0)),
    )


def class_discrimination_accuracy(
    df: pd.DataFrame, chance: float = 0.5, alpha: float = 0.05
) -> dict[str, pd.DataFrame]:
    """The three accuracy tables: ``method``, ``model_role`` and ``method_model_role``."""
    return {
        "method": accuracy(df, "method", chance, alpha),
        "model_role": accuracy(df, "model_role", chance, alpha),
        "method_model_role": accuracy(df, ["method", "model_role"], chance, alpha),
    }


TRUST_COLUMNS = [
    "n_answers",
    "n_workers",
    "n_images",
    "mean",
    "sd",
    "worker_mean",
    "worker_sd",
    "ci_low",
    "ci_high",
    "p_value",
    "worker_t_low",
    "worker_t_high",
    "n_nonzero",
    "wilcoxon_stat",
    "wilcoxon_p",
    "t_stat",
    "t_p",
    "ci_method",
]


def trust_summary(df: pd.DataFrame, by: str | Sequence[str] = "method", alpha: float = 0.05) -> pd.DataFrame:
    """Trust scores (``score_stronger``: positive favours the stronger model) per ``by`` group.

    Columns: ``n_answers``, ``n_workers``, ``n_images`` (absent without ``image_id``);
    ``mean`` and ``sd`` (ddof=1) over answers; ``worker_mean`` and ``worker_sd`` over the
    per-worker means (a worker is a ``(mode, participant)`` pair);

    - ``ci_low, ci_high``: the clustered ``1 - alpha`` interval of ``mean``: ``mean +- q
      sqrt(V)`` with V the two-way (worker, image) cluster-robust variance of the mean
      (:func:`analysis.clustered.group_variance`; at least the independent-answers
      ``sd^2 / n``) and q the t quantile with ``min(n_workers, n_images) - 1`` df;
      ``ci_method`` says what was clustered on (one worker or image leaves the other);
    - ``p_value``: the matching two-sided t test of ``mean = 0``, ``T = mean / sqrt(V)`` (the
      same standard error) referred to t with the same df: below ``alpha`` exactly when the
      interval excludes 0; NaN where the interval is;
    - ``worker_t_low, worker_t_high``: the t interval of the mean of the per-worker means
      (workers independent; ignores the images);

    and the tests against 0 of the per-worker means (the worker is the independent unit; they
    ignore the clustering by image, so they reject too often when images differ):

    - Wilcoxon signed-rank (``scipy.stats.wilcoxon``, two-sided) with zero_method="wilcox":
      workers whose mean is exactly 0 are dropped before ranking, the classical test
      (``n_nonzero`` says how many remain). "pratt" would rank the zeros too; with per-worker
      means of several answers exact zeros are rare, and "wilcox" is scipy's default and the
      textbook test. scipy picks the exact distribution for small samples without ties and
      the normal approximation otherwise. NaN when fewer than one non-zero mean remains.
    - one-sample t-test (``scipy.stats.ttest_1samp``, two-sided); NaN with fewer than 2
      workers.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, "score_stronger", "mode", "participant"] if c not in df.columns]
    if missing:
        raise UserError(f"trust_summary: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    extra = ["image_id"] if "image_id" in df.columns else []
    rows = _trials(df, [*by, "score_stronger", "mode", "participant", *extra])
    rows = rows[rows["score_stronger"].notna()].assign(score=lambda d: d["score_stronger"].astype("float64"))
    records = []
    for key, g in rows.groupby(by, sort=True, dropna=False):
        per_worker = g.groupby(["mode", "participant"], sort=False)["score"].mean().to_numpy()
        records.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                **_trust_stats(g["score"].to_numpy(), per_worker, alpha),
            }
        )
    columns = [c for c in TRUST_COLUMNS if c != "n_images" or extra]
    out = pd.DataFrame.from_records(records, columns=[*by, *columns])
    if len(rows):
        group = rows.groupby(by, sort=True, dropna=False).ngroup().to_numpy(dtype=np.int64)
        image = image_codes(rows)
        v = group_variance(group, rows["score"].to_numpy(), worker_codes(rows), image, len(out))
        if image is not None:
            out["n_images"] = v.n_images
        se = np.sqrt(np.maximum(v.v_cluster, out["sd"].to_numpy(dtype=float) ** 2 / np.maximum(v.n, 1)))
        q = stats.t.ppf(1 - alpha / 2, np.maximum(v.df, 1))
        ok = (v.n > 1) & (v.df >= 1)
        out["ci_low"] = np.where(ok, v.mean - q * se, np.nan)
        out["ci_high"] = np.where(ok, v.mean + q * se, np.nan)
        out["p_value"] = np.where(ok, _t_test_p(v.mean, se, np.maximum(v.df, 1)), np.nan)
        out["ci_method"] = [TRUST_CI_METHODS[h] for h in v.how]
    else:
        out["ci_method"] = pd.Series(dtype=object)
    return out.astype(
        {"n_answers": "int64", "n_workers": "int64", "n_nonzero": "int64", **({"n_images": "int64"} if extra else {})}
    )


def _t_test_p(mean: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p of ``mean = 0`` with standard error ``se`` against t(``df``): the test
    whose acceptance region is the interval ``mean +- t_(1 - alpha/2, df) se``. A zero
    ``se`` (every score alike) gives p 1 at a mean of 0 and 0 elsewhere, as that interval says."""
    mean, se = np.asarray(mean, dtype=float), np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(mean) / se, np.where(mean == 0, 0.0, np.inf))
    return np.minimum(2 * stats.t.sf(t, df), 1.0)


def _trust_stats(scores: np.ndarray, per_worker: np.ndarray, alpha: float) -> dict[str, float]:
    n = len(per_worker)
    nan = math.nan
    out: dict[str, float] = {
        "n_answers": len(scores),
        "n_workers": n,
        "mean": float(scores.mean()) if len(scores) else nan,
        "sd": float(scores.std(ddof=1)) if len(scores) > 1 else nan,
        "worker_mean": float(per_worker.mean()) if n else nan,
        "worker_sd": float(per_worker.std(ddof=1)) if n > 1 else nan,
        "ci_low": nan,
        "ci_high": nan,
        "p_value": nan,
        "worker_t_low": nan,
        "worker_t_high": nan,
        "n_nonzero": int(np.count_nonzero(per_worker)),
        "wilcoxon_stat": nan,
        "wilcoxon_p": nan,
        "t_stat": nan,
        "t_p": nan,
    }
    if n > 1:
        half = stats.t.ppf(1 - alpha / 2, n - 1) * out["worker_sd"] / math.sqrt(n)
        out["worker_t_low"], out["worker_t_high"] = out["worker_mean"] - half, out["worker_mean"] + half
        if out["worker_sd"] > 0:
            t = stats.ttest_1samp(per_worker, 0.0)
            out["t_stat"], out["t_p"] = float(t.statistic), float(t.pvalue)
    if out["n_nonzero"] >= 1:
        w = stats.wilcoxon(per_worker, zero_method="wilcox", alternative="two-sided")
        out["wilcoxon_stat"], out["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
    return out


def _trials(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The non-check rows of ``df``, of ``columns`` only when given (selecting the columns
    first, so that a large frame's other columns are not copied)."""
    out = df if columns is None else df[list(dict.fromkeys(columns))]
    if "is_attention_check" in df.columns:
        check = df["is_attention_check"].astype(bool).to_numpy()
        if check.any():
            return out[~check]
    return out
