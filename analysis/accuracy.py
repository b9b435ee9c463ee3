"""Per-method summaries: class-discrimination accuracy against chance, and trust scores.

These treat every answer (accuracy) or every worker (trust) as independent. Class
discrimination answers are clustered by worker and by image, so the Wilson intervals and the
binomial tests here are anti-conservative when workers or images differ; they are the
descriptive figures of the paper. The comparisons that respect the clustering (mixed and
cluster-robust models) live in ``analysis/stats.py``.

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

from camstudy.errors import UserError

ACCURACY_COLUMNS = ["n", "k", "accuracy", "ci_low", "ci_high", "p_value"]


def accuracy(df: pd.DataFrame, by: str | Sequence[str] = "method", chance: float = 0.5,
             alpha: float = 0.05) -> pd.DataFrame:
    """Accuracy per group of ``by`` (e.g. "method", "model_role", ["method", "model_role"]).

    Columns: the ``by`` columns, then ``n`` answers, ``k`` correct, ``accuracy`` = k/n, the
    Wilson ``1 - alpha`` interval (``ci_low, ci_high``; statsmodels ``proportion_confint``
    with method="wilson") and ``p_value`` of the exact two-sided binomial test of k out of n
    against ``chance`` (``scipy.stats.binomtest``; two options per item make 0.5 chance).
    Ignores clustering (see the module doc).
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, "correct"] if c not in df.columns]
    if missing:
        raise UserError(f"accuracy: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    rows = _trials(df, [*by, "correct"])
    rows = rows[rows["correct"].notna()]
    g = rows.assign(correct=rows["correct"].astype(bool)).groupby(by, sort=True, dropna=False)["correct"]
    out = pd.DataFrame({"n": g.size(), "k": g.sum()}).astype("int64").reset_index()
    out["accuracy"] = out["k"] / out["n"]
    low, high = proportion_confint(out["k"].to_numpy(), out["n"].to_numpy(), alpha=alpha, method="wilson")
    out["ci_low"], out["ci_high"] = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    out["p_value"] = [stats.binomtest(int(k), int(n), chance, alternative="two-sided").pvalue
                      for k, n in zip(out["k"], out["n"], strict=True)]
    return out[[*by, *ACCURACY_COLUMNS]]


def class_discrimination_accuracy(df: pd.DataFrame, chance: float = 0.5, alpha: float = 0.05
                                  ) -> dict[str, pd.DataFrame]:
    """The three accuracy tables: ``method``, ``model_role`` and ``method_model_role``."""
    return {
        "method": accuracy(df, "method", chance, alpha),
        "model_role": accuracy(df, "model_role", chance, alpha),
        "method_model_role": accuracy(df, ["method", "model_role"], chance, alpha),
    }


TRUST_COLUMNS = ["n_answers", "n_workers", "mean", "sd", "worker_mean", "worker_sd", "ci_low", "ci_high",
                 "n_nonzero", "wilcoxon_stat", "wilcoxon_p", "t_stat", "t_p"]


def trust_summary(df: pd.DataFrame, by: str | Sequence[str] = "method", alpha: float = 0.05) -> pd.DataFrame:
    """Trust scores (``score_stronger``: positive favours the stronger model) per ``by`` group.

    Columns: ``n_answers``, ``n_workers``; ``mean`` and ``sd`` (ddof=1) over answers;
    ``worker_mean`` and ``worker_sd`` over the per-worker means (a worker is a ``(mode,
    participant)`` pair); ``ci_low, ci_high``: the t interval of the mean of the per-worker
    means; the tests against 0 of the per-worker means (the worker is the independent unit):

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
    rows = _trials(df, [*by, "score_stronger", "mode", "participant"])
    rows = rows[rows["score_stronger"].notna()].assign(score=lambda d: d["score_stronger"].astype("float64"))
    records = []
    for key, g in rows.groupby(by, sort=True, dropna=False):
        per_worker = g.groupby(["mode", "participant"], sort=False)["score"].mean().to_numpy()
        records.append({**dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                        **_trust_stats(g["score"].to_numpy(), per_worker, alpha)})
    out = pd.DataFrame.from_records(records, columns=[*by, *TRUST_COLUMNS])
    return out.astype({"n_answers": "int64", "n_workers": "int64", "n_nonzero": "int64"})


def _trust_stats(scores: np.ndarray, per_worker: np.ndarray, alpha: float) -> dict[str, float]:
    n = len(per_worker)
    nan = math.nan
    out: dict[str, float] = {
        "n_answers": len(scores), "n_workers": n,
        "mean": float(scores.mean()) if len(scores) else nan,
        "sd": float(scores.std(ddof=1)) if len(scores) > 1 else nan,
        "worker_mean": float(per_worker.mean()) if n else nan,
        "worker_sd": float(per_worker.std(ddof=1)) if n > 1 else nan,
        "ci_low": nan, "ci_high": nan, "n_nonzero": int(np.count_nonzero(per_worker)),
        "wilcoxon_stat": nan, "wilcoxon_p": nan, "t_stat": nan, "t_p": nan,
    }
    if n > 1:
        half = stats.t.ppf(1 - alpha / 2, n - 1) * out["worker_sd"] / math.sqrt(n)
        out["ci_low"], out["ci_high"] = out["worker_mean"] - half, out["worker_mean"] + half
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
