"""Significance tests and intervals for the study's answers (scipy and statsmodels underneath).

Each function is a thin, documented wrapper that fixes the choices (which interval, which
correction, which p-value) and returns plain floats or a small frozen dataclass. None of them
accounts for clustering by worker or image: they are the per-cell descriptive tests; the
method comparisons that respect clustering live elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (statsmodels ``proportion_confint``,
    method="wilson").

    (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = Phi^-1(1 - (1-level)/2).
    Returns (low, high); stays inside [0, 1] and is sensible at k = 0 or k = n.
    """
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= k <= n:
        raise ValueError("k must lie in 0..n")
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return float(low), float(high)


@dataclass(frozen=True)
class BinomialResult:
    """Exact binomial test of k successes in n against ``p0``.

    ``ci_low..ci_high``: the Clopper-Pearson (exact) interval for the proportion.
    """

    k: int
    n: int
    p0: float
    estimate: float
    pvalue: float
    ci_low: float
    ci_high: float
    alternative: str


def binomial_test(
    k: int, n: int, p: float = 0.5, alternative: str = "two-sided", level: float = 0.95
) -> BinomialResult:
    """Exact binomial test (scipy ``binomtest``) with the Clopper-Pearson interval.

    The two-sided p sums the probabilities of outcomes no more likely than k (scipy's
    definition). Treats the n answers as independent: it ignores clustering by worker.
    """
    from scipy.stats import binomtest

    r = binomtest(k, n, p=p, alternative=alternative)
    ci = r.proportion_ci(confidence_level=level, method="exact")
    return BinomialResult(k, n, p, k / n, float(r.pvalue), float(ci.low), float(ci.high), alternative)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test of paired binary outcomes: chi-square statistic (1 df) and p."""

    statistic: float
    pvalue: float
    correction: bool


def mcnemar(table: np.ndarray | Sequence[Sequence[int]], correction: bool = True) -> McNemarResult:
    """McNemar's chi-square test of a 2 x 2 paired table (statsmodels, ``exact=False``).

    With b, c the off-diagonal cells: chi2 = (|b - c| - 1)^2 / (b + c) with the continuity
    correction, (b - c)^2 / (b + c) without; p from chi-square with 1 df.
    """
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    t = np.asarray(table)
    if t.shape != (2, 2):
        raise ValueError("McNemar's test needs a 2 x 2 table")
    r = sm_mcnemar(t, exact=False, correction=correction)
    return McNemarResult(float(r.statistic), float(r.pvalue), correction)


@dataclass(frozen=True)
class WilcoxonResult:
    """Wilcoxon signed-rank test: ``statistic`` is scipy's W (for two-sided: the smaller of
    the positive- and negative-rank sums), ``n`` the number of differences given."""

    statistic: float
    pvalue: float
    n: int
    alternative: str
    method: str


def wilcoxon_signed_rank(
    d: Sequence[float] | np.ndarray, alternative: str = "two-sided", method: str = "auto", zero_method: str = "wilcox"
) -> WilcoxonResult:
    """Wilcoxon signed-rank test of paired differences ``d`` against 0 (scipy ``wilcoxon``).

    ``method``: "auto" (scipy: exact null distribution for small samples without ties or
    zeros, else the normal approximation), "exact" or "approx". ``zero_method`` "wilcox"
    drops zero differences. Returns W, p and the choices made.
    """
    from scipy.stats import wilcoxon

    x = np.asarray(d, dtype=float)
    r = wilcoxon(x, alternative=alternative, method=method, zero_method=zero_method)
    return WilcoxonResult(float(r.statistic), float(r.pvalue), int(x.size), alternative, method)


def holm(pvalues: Sequence[float] | np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction: statsmodels ``multipletests(method="holm")``, step for step.

    Sorted p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)),
    controlling the family-wise error rate at ``alpha``. Returns (reject, adjusted p), in the
    input order. Written out (the same operations, so the same numbers, as statsmodels,
    which tests check) because ``multipletests`` runs a full ``gc.collect()`` for Holm,
    which costs seconds in a process holding a large answer frame.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    order = np.argsort(p)
    ps = np.take(p, order)
    m = len(ps)
    notreject = ps > alpha / np.arange(m, 0, -1)
    nr_index = np.nonzero(notreject)[0]
    notreject[(np.min(nr_index) if nr_index.size else m) :] = True
    corrected = np.maximum.accumulate(ps * np.arange(m, 0, -1))
    corrected[corrected > 1] = 1
    reject, adjusted = np.empty(m, dtype=bool), np.empty(m)
    reject[order], adjusted[order] = ~notreject, corrected
    return reject, adjusted
