"""Inter-rater agreement: Fleiss, Randolph and Cohen kappa, Krippendorff alpha, per method.

What is rated matters as much as the coefficient. In a class-discrimination study every item
offers its own two options, so agreement is on which of the item's options was chosen, coded
as correct (1) vs incorrect (0) within the item; the category *name* pooled over items would
count two raters as agreeing by chance far more often than the item's options allow (coin
flips then give alpha near 0.5). Trust answers are rated on ``score_stronger``, the score
re-signed so that both raters' scales point the same way. :func:`agreement_table` says per row
which variable and level each coefficient used.

The estimates come from the field's libraries (statsmodels ``inter_rater``, the
``krippendorff`` package); written here by hand are only what neither has: the z statistic
of Fleiss' kappa, the percentile bootstrap over units, the Landis & Koch labels and the
per-method table over a long-format export.

Agreement that cannot be computed (no item with two raters, every answer in one category)
is reported as NaN with a reason string, never as 0: a kappa of 0 means "chance agreement",
which is a finding, whereas NaN means "no evidence either way".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

LEVELS = ("nominal", "ordinal", "interval", "ratio")


# --------------------------------------------------------------------------------------
# Landis & Koch


def landis_koch(k: float) -> str:
    """The Landis & Koch (1977) label of an agreement coefficient ``k``.

    < 0 poor, 0-0.20 slight, 0.21-0.40 fair, 0.41-0.60 moderate, 0.61-0.80 substantial,
    0.81-1 almost perfect (upper bounds inclusive). NaN gives "not computable".
    """
    if k is None or not math.isfinite(k):
        return "not computable"
    if k < 0:
        return "poor"
    for upper, label in ((0.20, "slight"), (0.40, "fair"), (0.60, "moderate"), (0.80, "substantial")):
        if k <= upper:
            return label
    return "almost perfect"


# --------------------------------------------------------------------------------------
# Fleiss and Randolph kappa


@dataclass(frozen=True)
class FleissResult:
    """Fleiss' kappa over ``n_subjects`` subjects rated by ``n_raters`` raters each.

    ``z`` and ``p`` test kappa = 0 (two-sided, normal approximation); ``se0`` is the standard
    error under that null. ``category_totals``: how many ratings fell in each category.
    """

    kappa: float
    se0: float
    z: float
    p: float
    n_subjects: int
    n_raters: int
    category_totals: np.ndarray


def counts_from_ratings(ratings: np.ndarray | pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Subjects x raters codes -> (subjects x categories count table, the categories).

    statsmodels ``aggregate_raters``; the categories are the sorted unique codes, one column
    each, in that order.
    """
    from statsmodels.stats.inter_rater import aggregate_raters

    counts, categories = aggregate_raters(np.asarray(ratings))
    return counts, categories


def _check_counts(counts: np.ndarray | pd.DataFrame) -> np.ndarray:
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] < 1:
        raise ValueError("counts must be a subjects x categories table")
    per_subject = table.sum(axis=1)
    if not np.allclose(per_subject, per_subject[0]):
        raise ValueError("Fleiss' kappa needs the same number of raters for every subject")
    if per_subject[0] < 2:
        raise ValueError("Fleiss' kappa needs at least two raters per subject")
    return table


def fleiss_z(counts: np.ndarray | pd.DataFrame, kappa: float) -> tuple[float, float, float]:
    """Standard error under kappa = 0, z and two-sided p for Fleiss' kappa.

    The large-sample variance of Fleiss (1971) in its corrected form (Fleiss, Nee & Landis
    1979; the one R's ``irr::kappam.fleiss`` uses), with N subjects, n raters each and
    category proportions p_j, q_j = 1 - p_j::

        var0 = 2 / (N n (n - 1)) * [(sum p_j q_j)^2 - sum p_j q_j (q_j - p_j)] / (sum p_j q_j)^2

    Returns (se0, z = kappa / se0, p = 2 (1 - Phi(|z|))).
    """
    table = _check_counts(counts)
    n_subjects, n = table.shape[0], table.sum(axis=1)[0]
    p = table.sum(axis=0) / table.sum()
    q = 1 - p
    s = float((p * q).sum())
    if s == 0:
        return math.nan, math.nan, math.nan
    var0 = 2 / (s**2 * n_subjects * n * (n - 1)) * (s**2 - float((p * q * (q - p)).sum()))
    se0 = math.sqrt(var0)
    z = kappa / se0
    return se0, z, float(2 * sps.norm.sf(abs(z)))


def fleiss_kappa(counts: np.ndarray | pd.DataFrame) -> FleissResult:
    """Fleiss' kappa of a subjects x categories count table, with its z test.

    kappa = (P_bar - P_e) / (1 - P_e), P_bar the mean pairwise agreement within subjects,
    P_e = sum p_j^2 from the pooled category proportions (statsmodels
    ``fleiss_kappa(method="fleiss")``). Every subject must have the same number of raters.
    kappa is NaN (not 0) when all ratings fall in one category (P_e = 1).
    """
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    table = _check_counts(counts)
    totals = table.sum(axis=0)
    n_raters = int(round(table.sum(axis=1)[0]))
    if np.count_nonzero(totals) < 2:
        nan = math.nan
        return FleissResult(nan, nan, nan, nan, table.shape[0], n_raters, totals)
    kappa = float(sm_fleiss(table, method="fleiss"))
    se0, z, p = fleiss_z(table, kappa)
    return FleissResult(kappa, se0, z, p, table.shape[0], n_raters, totals)


def randolph_kappa(counts: np.ndarray | pd.DataFrame) -> float:
    """Randolph's (2005) free-marginal multirater kappa: chance agreement 1 / (categories).

    statsmodels ``fleiss_kappa(method="randolph")``; the number of categories is the number
    of columns of ``counts`` (include a zero column for a category nobody chose).
    """
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    return float(sm_fleiss(_check_counts(counts), method="randolph"))


# --------------------------------------------------------------------------------------
# Cohen kappa


@dataclass(frozen=True)
class CohenResult:
    """Cohen's kappa of a two-rater table.

    ``ase``: the asymptotic standard error of kappa (Fleiss, Cohen & Everitt 1969), giving the
    Wald interval ``ci_low..ci_high`` = kappa -/+ z_(1-alpha/2) ase. ``z`` and ``p`` test
    kappa = 0 with the standard error under that null (``ase0``), two-sided.
    """

    kappa: float
    ase: float
    ci_low: float
    ci_high: float
    ase0: float
    z: float
    p: float
    n: int
    weights: str | None


def cohen_kappa(table: np.ndarray | Sequence[Sequence[float]], weights: str | None = None,
                alpha: float = 0.05) -> CohenResult:
    """Cohen's kappa of a square rater-1 x rater-2 contingency table (statsmodels ``cohens_kappa``).

    ``weights``: None (unweighted), "linear" or "quadratic" (statsmodels' ``wt``; categories
    taken as equally spaced in table order). ``alpha``: 1 - the CI's coverage.
    When the expected agreement is 1 (both raters used a single, common category) kappa is
    undefined: every field is NaN.
    """
    from statsmodels.stats.inter_rater import cohens_kappa as sm_cohen

    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError("Cohen's kappa needs a square contingency table")
    n = int(round(t.sum()))
    pe = float((t.sum(axis=0) * t.sum(axis=1)).sum()) / t.sum() ** 2 if n else 1.0
    if n == 0 or math.isclose(pe, 1.0):
        nan = math.nan
        return CohenResult(nan, nan, nan, nan, nan, nan, nan, n, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 in the SEs of a perfect table
        r = sm_cohen(t, wt=weights)
    kappa, ase = float(r.kappa), float(r.std_kappa)
    half = float(sps.norm.ppf(1 - alpha / 2)) * ase  # statsmodels' own interval at alpha 0.05
    return CohenResult(kappa, ase, kappa - half, kappa + half, float(r.std_kappa0),
                       float(r.z_value), float(r.pvalue_two_sided), n, weights)


# --------------------------------------------------------------------------------------
# Krippendorff alpha and the bootstrap


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    return level


def _check_ratio_values(values: np.ndarray, level: str) -> None:
    """Ratio distances ((c - k) / (c + k))^2 assume a true zero: with negative values, -2 and 2
    would count as identical (c + k = 0), so they are refused rather than silently wrong."""
    if level == "ratio" and np.nanmin(values, initial=0.0) < 0:
        raise ValueError("ratio agreement needs non-negative values (a scale with a true zero)")


def krippendorff_alpha(reliability_data: np.ndarray | pd.DataFrame, level: str = "nominal",
                       value_domain: Sequence[float] | None = None) -> float:
    """Krippendorff's alpha of a raters x units table (NaN = not rated), ``krippendorff`` package.

    alpha = 1 - D_o / D_e with the distance of ``level`` (nominal, ordinal, interval, ratio).
    ``value_domain``: the ordered possible values (default: the values seen). Units with
    fewer than two ratings carry no pairable value and drop out. Returns NaN when it is not
    computable (no unit with two ratings, or a single value overall so D_e = 0). Ratio needs
    non-negative values (ValueError otherwise).
    """
    import krippendorff

    data = np.asarray(reliability_data, dtype=float)
    _check_ratio_values(data, _check_level(level))
    if not _alpha_computable(data):
        return math.nan
    domain = None if value_domain is None else np.asarray(value_domain, dtype=float)
    return float(krippendorff.alpha(reliability_data=data, value_domain=domain,
                                    level_of_measurement=_check_level(level)))


def _alpha_computable(data: np.ndarray) -> bool:
    """At least one unit with two ratings, and two distinct values among pairable units."""
    rated = ~np.isnan(data)
    pairable = rated.sum(axis=0) >= 2
    if not pairable.any():
        return False
    values = data[:, pairable][rated[:, pairable]]
    return np.unique(values).size >= 2


def _value_counts(data: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """units x values count table of a raters x units table over ``domain``."""
    if len(domain) == 0:
        return np.zeros((data.shape[1], 0), dtype=np.int64)
    return np.stack([(data == v).sum(axis=0) for v in domain], axis=1)


def _alpha_from_counts(counts: np.ndarray, domain: np.ndarray, level: str) -> float:
    """Krippendorff's alpha of a units x values count table (the ``krippendorff`` package,
    given the counts it would build itself from the raters x units table); NaN when not
    computable (no unit with two values, or one value overall among those units)."""
    import krippendorff

    counts = np.asarray(counts)
    pairable = counts[counts.sum(axis=1) >= 2]
    if pairable.shape[0] == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return math.nan
    return float(krippendorff.alpha(value_counts=pairable, value_domain=np.asarray(domain, dtype=float),
                                    level_of_measurement=_check_level(level)))


def bootstrap_ci(reliability_data: np.ndarray | pd.DataFrame,
                 statistic: Callable[[np.ndarray], float] | None = None, *,
                 level: str = "nominal", n_boot: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI over units (columns) of a raters x units table.

    Each replicate draws as many units as there are, with replacement (numpy
    ``default_rng(seed)``), and recomputes ``statistic`` (a function of a raters x units
    array); the interval is the (1 - confidence)/2 and (1 + confidence)/2 quantiles of the
    finite replicates (replicates where the statistic is undefined, e.g. a resample with a
    single value, are left out). Default statistic: Krippendorff's alpha at ``level``,
    computed from per-unit value counts over the full sample's value domain (same numbers,
    much faster). Returns (low, high); (NaN, NaN) when no replicate is finite.
    """
    data = np.asarray(reliability_data, dtype=float)
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")
    if statistic is None:
        level = _check_level(level)
        _check_ratio_values(data, level)
        domain = np.unique(data[~np.isnan(data)])
        return _bootstrap_alpha(_value_counts(data, domain), domain, level, n_boot=n_boot,
                                confidence=confidence, seed=seed)
    rng = np.random.default_rng(seed)
    n_units = data.shape[1]
    if n_units == 0:
        return math.nan, math.nan
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    reps = np.array([statistic(data[:, idx]) for idx in draws], dtype=float)
    return _percentile_interval(reps, confidence)


def _percentile_interval(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return float(low), float(high)


def _bootstrap_alpha(counts: np.ndarray, domain: np.ndarray, level: str, *, n_boot: int,
                     confidence: float, seed: int) -> tuple[float, float]:
    """:func:`bootstrap_ci` of Krippendorff's alpha from a units x values count table.

    The units are the table's rows, resampled exactly as :func:`bootstrap_ci` resamples the
    columns of the raters x units table they were counted from (same generator, same draws).
    """
    rng = np.random.default_rng(seed)
    n_units = counts.shape[0]
    if n_units == 0:
        return math.nan, math.nan
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    reps = _alpha_replicates_from_counts(np.asarray(counts, dtype=float), np.asarray(domain, dtype=float),
                                         draws, level)
    return _percentile_interval(reps, confidence)


def _alpha_replicates(data: np.ndarray, draws: np.ndarray, level: str) -> np.ndarray:
    """Krippendorff's alpha of every bootstrap replicate (rows of ``draws``: unit indices)
    of a raters x units table; see :func:`_alpha_replicates_from_counts`."""
    domain = np.unique(data[~np.isnan(data)])
    return _alpha_replicates_from_counts(_value_counts(data, domain).astype(float), domain, draws, level)


def _draw_weights(draws: np.ndarray, n_units: int) -> np.ndarray:
    """replicates x units: how often each replicate drew each unit (one bincount for all)."""
    n = draws.shape[0]
    flat = (np.arange(n, dtype=np.int64)[:, None] * n_units + draws).ravel()
    return np.bincount(flat, minlength=n * n_units).reshape(n, n_units).astype(float)


def _alpha_replicates_from_counts(counts: np.ndarray, domain: np.ndarray, draws: np.ndarray, level: str,
                                  chunk: int = 256) -> np.ndarray:
    """Krippendorff's alpha of every bootstrap replicate at once, from per-unit value counts.

    A unit u with m_u >= 2 values contributes C_u[c, k] = n_uc (n_uk - [c = k]) / (m_u - 1)
    to the coincidence matrix; a replicate that draws unit u w times has O = sum_u w C_u, so
    all replicates are matrix products of the draw counts W (replicates x units) with
    per-unit quantities. alpha = 1 - (n - 1) sum O * delta^2 / sum n_c n_k delta^2
    (Krippendorff 2011), n_c = sum_k O_ck = sum_u w n_uc.

    Nominal, interval and ratio: delta^2 does not depend on the replicate, so the observed
    disagreement is W @ D with the per-unit D_u = n_u' delta^2 n_u / (m_u - 1) (delta^2 has a
    zero diagonal), and only the V marginals W @ n need the values. Ordinal: delta^2 depends
    on the replicate's marginals, so the whole O = W @ [C_u] is formed. Same numbers (to
    rounding) as calling the ``krippendorff`` package on every replicate.
    """
    m = counts.sum(axis=1)
    ok = m >= 2
    counts = np.where(ok[:, None], counts, 0.0)  # units with < 2 values carry no pairable value
    seen = counts.sum(axis=0) > 0
    counts, domain = counts[:, seen], domain[seen]
    v = len(domain)
    out = np.empty(draws.shape[0])
    if level == "ordinal":
        contrib = np.zeros((len(m), v * v))
        if ok.any():
            cu = counts[ok]
            c = (cu[:, :, None] * cu[:, None, :] - cu[:, :, None] * np.eye(v)[None]) / (m[ok] - 1)[:, None, None]
            contrib[ok] = c.reshape(len(cu), v * v)
        for start in range(0, draws.shape[0], chunk):
            weights = _draw_weights(draws[start : start + chunk], len(m))
            o = (weights @ contrib).reshape(len(weights), v, v)
            out[start : start + chunk] = _alpha_from_coincidences(o, domain, level)
        return out
    delta = _fixed_delta(domain, level)
    per_unit = np.zeros(len(m))
    if ok.any():
        per_unit[ok] = ((counts[ok] @ delta) * counts[ok]).sum(axis=1) / (m[ok] - 1)
    stacked = np.column_stack([counts, per_unit])  # units x (V marginals + observed disagreement)
    for start in range(0, draws.shape[0], chunk):
        r = _draw_weights(draws[start : start + chunk], len(m)) @ stacked
        n_c, observed = r[:, :v], r[:, v]
        n = n_c.sum(axis=1)
        expected = ((n_c @ delta) * n_c).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = 1.0 - (n - 1) * observed / expected
        out[start : start + chunk] = np.where((expected > 0) & (n > 1), alpha, np.nan)
    return out


def _fixed_delta(domain: np.ndarray, level: str) -> np.ndarray:
    """V x V squared distances delta^2 of the levels whose distance depends on the values only.

    nominal [c != k]; interval (c - k)^2; ratio ((c - k) / (c + k))^2, 0 where c + k = 0 (as
    the ``krippendorff`` package sets it: two zeros are not apart).
    """
    if level == "nominal":
        return 1.0 - np.eye(len(domain))
    diff = domain[:, None] - domain[None, :]
    if level == "interval":
        return diff**2
    if level == "ratio":
        total = domain[:, None] + domain[None, :]
        return np.divide(diff, total, out=np.zeros_like(diff), where=total != 0) ** 2
    raise ValueError(f"{level} distances depend on the marginals; no fixed delta")


def _alpha_from_coincidences(o: np.ndarray, domain: np.ndarray, level: str) -> np.ndarray:
    """alpha for a stack of (..., V, V) coincidence matrices; NaN where not computable."""
    n_c = o.sum(axis=-1)
    n = n_c.sum(axis=-1)
    if level != "ordinal":
        delta = np.broadcast_to(_fixed_delta(domain, level), o.shape)
    else:  # ordinal: (sum of n_g from c to k - (n_c + n_k) / 2)^2
        cum = np.cumsum(n_c, axis=-1)
        lo = np.minimum.outer(np.arange(len(domain)), np.arange(len(domain)))
        hi = np.maximum.outer(np.arange(len(domain)), np.arange(len(domain)))
        between = cum[..., hi] - np.where(lo > 0, cum[..., np.maximum(lo - 1, 0)], 0.0)
        delta = (between - (n_c[..., :, None] + n_c[..., None, :]) / 2) ** 2
    observed = (o * delta).sum(axis=(-1, -2))
    expected = (n_c[..., :, None] * n_c[..., None, :] * delta).sum(axis=(-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (n - 1) * observed / expected
    return np.where((expected > 0) & (n > 1), alpha, np.nan)


# --------------------------------------------------------------------------------------
# The per-method table over a long-format export


@dataclass(frozen=True)
class _Ratings:
    """One method's answers, one per (item, participant) (a repeated answer keeps the first).

    ``item``, ``rater``: codes into the sorted item ids / participants that answered;
    ``code``: the category code 0..C-1 (see :func:`_method_row`); ``value``: the rating as a
    float (NaN where not numeric); ``n_items``, ``n_raters``, ``n_categories``: the sizes.
    """

    item: np.ndarray
    rater: np.ndarray
    code: np.ndarray
    value: np.ndarray
    n_items: int
    n_raters: int
    n_categories: int

    def counts(self, code: np.ndarray | None = None, width: int | None = None) -> np.ndarray:
        """items x categories: how many participants gave each category to each item. With
        ``code`` (values 0..``width``-1, one per answer) instead of the category codes:
        items x ``width``."""
        if code is None:
            code, width = self.code, self.n_categories
        flat = self.item.astype(np.int64) * width + code
        return np.bincount(flat, minlength=self.n_items * width).reshape(self.n_items, width)

    def dense(self, what: np.ndarray) -> np.ndarray:
        """items x participants table of ``what`` (NaN = not rated)."""
        out = np.full((self.n_items, self.n_raters), np.nan)
        out[self.item, self.rater] = what
        return out


def _fleiss_from_counts(counts: np.ndarray) -> dict:
    """Fleiss' kappa over the items with the most common rater count (>= 2; ties: the
    larger count), from the items x categories count table. Nominal by construction: the
    categories are only compared for equality, so the note says "nominal" at every level."""
    per_item = counts.sum(axis=1)
    multi = per_item[per_item >= 2]
    if multi.size == 0:
        return {"fleiss_kappa": math.nan, "fleiss_n_items": 0, "fleiss_n_raters": 0,
                "fleiss_note": "not computable: no item has two or more raters"}
    values, freq = np.unique(multi, return_counts=True)
    m = int(values[freq == freq.max()].max())
    used = counts[per_item == m]
    res = fleiss_kappa(used.astype(float))
    # Fleiss' kappa knows no order or distance between categories, whatever the table's level.
    note = f"nominal (categories unordered); {len(used)} of {len(per_item)} items (those with {m} raters)"
    if math.isnan(res.kappa):
        note = f"not computable: every answer in one category ({note})"
    return {"fleiss_kappa": res.kappa, "fleiss_z": res.z, "fleiss_p": res.p,
            "fleiss_n_items": len(used), "fleiss_n_raters": m, "fleiss_note": note}


def _alpha_cell(ratings: _Ratings, level: str, domain: np.ndarray, n_boot: int,
                confidence: float, seed: int) -> dict:
    """Krippendorff's alpha over the items with >= 2 raters, with its bootstrap CI.

    Nominal: the category codes over ``domain`` = 0..C-1; ordinal/interval/ratio: the ratings
    themselves over ``domain`` (the ordered values). Both from the items x values count
    table, which is what the ``krippendorff`` package builds from the raters x items table.
    """
    if level == "nominal":
        counts = ratings.counts()
    else:
        if np.isnan(ratings.value).any():
            raise ValueError(f"{level} agreement needs numeric ratings")
        _check_ratio_values(domain, level)
        counts = ratings.counts(np.searchsorted(domain, ratings.value), len(domain))
    pairable = counts.sum(axis=1) >= 2
    out = {"alpha_level": level, "alpha_n_items": int(pairable.sum()),
           "alpha": math.nan, "alpha_low": math.nan, "alpha_high": math.nan}
    if not pairable.any():
        return out | {"alpha_note": "not computable: no item has two or more raters"}
    counts = counts[pairable]
    if np.count_nonzero(counts.sum(axis=0)) < 2:
        return out | {"alpha_note": "not computable: every answer in one category"}
    alpha = _alpha_from_counts(counts, domain, level)
    low, high = _bootstrap_alpha(counts, domain, level, n_boot=n_boot, confidence=confidence, seed=seed)
    note = f"{int(pairable.sum())} of {len(pairable)} items; bootstrap {n_boot} x items, seed {seed}"
    return out | {"alpha": alpha, "alpha_low": low, "alpha_high": high, "alpha_note": note}


def _cohen_cell(codes: pd.DataFrame | np.ndarray, n_categories: int, weights: str | None,
                min_shared: int) -> dict:
    """Mean Cohen kappa over participant pairs sharing >= ``min_shared`` items, from an
    items x participants table of category codes (NaN = not rated); see :func:`_cohen_pairs`."""
    arr = np.asarray(codes, dtype=float)
    item, rater = np.nonzero(~np.isnan(arr))
    return _cohen_pairs(item, rater, arr[item, rater].astype(np.int64), arr.shape[0], arr.shape[1],
                        n_categories, weights, min_shared)


def _cohen_pairs(item: np.ndarray, rater: np.ndarray, code: np.ndarray, n_items: int, n_raters: int,
                 n_categories: int, weights: str | None, min_shared: int) -> dict:
    """Mean Cohen kappa over participant pairs sharing >= ``min_shared`` items.

    All pairs at once, from sparse one-hot matrices: R (items x participants; who rated
    what) and Z ((items x categories) x participants; Z[(i, c), a] = 1 when participant a
    gave item i category c). For the pair (a, b), over the items both rated: n_ab = (R'R)_ab
    = sum_c r[a, c, b] items; rater a's count of category c is r[a, c, b] = (X'R)[(a, c), b] with X the items x
    (participants x categories) one-hot, rater b's is r[b, c, a]; the weighted observed
    disagreement is (Z'G)_ab with G[(i, c), b] = d[c, code of b on i] (b rated i), which is
    n_ab - (Z'Z)_ab for the unweighted case; kappa = 1 - observed / expected, expected =
    sum_ck d_ck r[a, c, b] r[b, k, a] / n_ab, with the disagreement weights d (unweighted:
    [c != k]; linear: |c - k| / (V - 1); quadratic: its square): the same kappa as
    :func:`cohen_kappa` on each pair's contingency table T (that is 1 - sum d T / sum d E),
    without a loop over pairs or categories.
    """
    from scipy import sparse

    idx = np.arange(n_categories)
    if weights is None:
        d = (idx[:, None] != idx[None, :]).astype(float)
    else:
        lin = np.abs(idx[:, None] - idx[None, :]) / max(n_categories - 1, 1)
        d = lin if weights == "linear" else lin**2
    item = np.asarray(item, dtype=np.int64)
    rater = np.asarray(rater, dtype=np.int64)
    code = np.asarray(code, dtype=np.int64)
    ones = np.ones(len(item))
    r_mat = sparse.csr_matrix((ones, (item, rater)), shape=(n_items, n_raters))
    x_t = sparse.csr_matrix((ones, (rater * n_categories + code, item)), shape=(n_raters * n_categories, n_items))
    marg = (x_t @ r_mat).toarray().reshape(n_raters, n_categories, n_raters)
    n = marg.sum(axis=1)  # = R'R: a's counts over the items a and b share add up to their number
    z_t = sparse.csr_matrix((ones, (rater, item * n_categories + code)), shape=(n_raters, n_items * n_categories))
    if weights is None:
        observed = n - (z_t @ z_t.T).toarray()
    else:  # G: every rated (item, participant) once per category c, with weight d[c, code]
        cats = np.repeat(idx[None, :], len(item), axis=0).ravel()
        g = sparse.csr_matrix((d[cats, np.repeat(code, n_categories)],
                               (np.repeat(item, n_categories) * n_categories + cats, np.repeat(rater, n_categories))),
                              shape=(n_items * n_categories, n_raters))
        observed = (z_t @ g).toarray()
    iu = np.triu_indices(n_raters, k=1)
    eligible = n[iu] >= min_shared
    rows, cols = iu[0][eligible], iu[1][eligible]
    npair = n[rows, cols]
    ra = marg[rows, :, cols].T  # V x pairs: rater a's marginals over the shared items
    rb = marg[cols, :, rows].T  # rater b's
    expected = np.einsum("cp,ck,kp->p", ra, d, rb) / npair
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = 1.0 - observed[rows, cols] / expected
    kappas = kappa[np.isfinite(kappa)]
    base = {"cohen_weights": weights or "none", "cohen_n_pairs": int(kappas.size)}
    if kappas.size == 0:
        why = (f"no pair of participants shares {min_shared} or more items" if not eligible.any()
               else "every eligible pair used a single common category")
        return base | {"cohen_kappa": math.nan, "cohen_note": f"not computable: {why}"}
    skipped = int(eligible.sum()) - int(kappas.size)
    note = f"mean over {kappas.size} pairs sharing >= {min_shared} items"
    if skipped:
        note += f" ({skipped} pairs with a single common category left out)"
    return base | {"cohen_kappa": float(kappas.mean()), "cohen_note": note}


def _study_kind(df: pd.DataFrame) -> str | None:
    """The frame's one ``study_kind``, or None (column missing, or several kinds mixed)."""
    kinds = set(df["study_kind"].dropna().unique()) if "study_kind" in df else set()
    return kinds.pop() if len(kinds) == 1 else None


def _default_level(df: pd.DataFrame) -> str:
    return "ordinal" if _study_kind(df) == "trust" else "nominal"


def _default_column(df: pd.DataFrame, level: str) -> str:
    """The rating agreement is computed on when ``column`` is not given.

    Class discrimination: ``correct``, i.e. which of the item's own two options was chosen.
    Every item offers a different pair of categories, so the category name pooled over items
    would take chance from the pooled name frequencies (many names, each item allowing two)
    and read coin flips as agreement. Trust (non-nominal level): ``score_stronger``, the
    answer re-signed so that positive favours the stronger model, since left/right sides are
    randomised per participant and two raters' raw ``answer`` is then not on the same scale.
    Otherwise ``answer``.
    """
    kind = _study_kind(df)
    if kind == "class_discrimination" and "correct" in df:
        return "correct"
    if level != "nominal" and kind == "trust" and "score_stronger" in df:
        return "score_stronger"
    return "answer"


# What each rated column means, for a report to print (see ``variable`` in agreement_table).
_VARIABLE_WORDS = {
    "correct": "option chosen within the item (correct vs incorrect)",
    "score_stronger": "trust score, re-signed to favour the stronger model (-2..2)",
}
_ANSWER_WORDS = {
    "class_discrimination": "category name chosen, pooled over items (chance not from the item's own options)",
    "trust": "trust score as answered on screen (sides randomised per participant, not re-signed)",
}


def _variable_words(column: str, kind: str | None) -> str:
    """The rated variable of ``column`` in words."""
    if column in _VARIABLE_WORDS:
        return _VARIABLE_WORDS[column]
    if column == "answer" and kind in _ANSWER_WORDS:
        return _ANSWER_WORDS[kind]
    return f"column {column}"


def _ratings_column(data: pd.DataFrame, column: str) -> pd.Series:
    """The rating column ready to code: booleans (``correct``) become 1 (true) / 0 (false), so
    that the two categories are numbers at every level and sort incorrect before correct."""
    values = data[column]
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("int8")
    return values


def agreement_table(df: pd.DataFrame, *, level: str | None = None, column: str | None = None,
                    min_shared: int = 5, n_boot: int = 1000, confidence: float = 0.95,
                    seed: int = 0, exclude_attention_checks: bool = True) -> pd.DataFrame:
    """Inter-rater agreement per method of a long-format answer frame (one row per answer).

    Needs columns ``method, item_id, participant`` and the rating ``column``; rows with
    ``is_attention_check`` true are left out unless ``exclude_attention_checks`` is False,
    rows with a missing rating always.

    What is rated (``column``; None picks by ``study_kind``, see :func:`_default_column`):

    - class discrimination: ``correct``, which of the item's two options was chosen, coded
      correct (1) vs incorrect (0) within the item, so that chance comes from the item's own
      two options. ``column="answer", level="nominal"`` gives the old coding on the category
      name pooled over items, which inflates agreement (coin flips give alpha near 0.5);
    - trust: ``score_stronger`` (-2..2, re-signed to favour the stronger model) where the
      level is not nominal;
    - otherwise ``answer``. A boolean column is coded 0/1.

    ``level`` (Krippendorff's alpha and Cohen's weights): "nominal" (categories unordered),
    "ordinal", "interval" or "ratio"; None: ordinal when ``study_kind`` is "trust"
    throughout, else nominal (class discrimination: two unordered options per item).

    Per method, one row with:

    - ``variable``: the rated variable in words, ``column``: its column id, ``level``: the
      level asked for (``alpha_level``, ``cohen_weights`` say what each coefficient used);
    - ``fleiss_*``: Fleiss' kappa, nominal by construction at every ``level`` (categories
      are only compared for equality), over the items that have the most common number of
      raters (>= 2; ties go to the larger count), with how many items and raters per item
      were used, its z and two-sided p;
    - ``alpha*``: Krippendorff's alpha at ``level`` over every item with >= 2 raters, with a
      percentile bootstrap CI over items (``n_boot``, ``confidence``, ``seed``);
    - ``cohen_*``: Cohen's kappa averaged (unweighted mean) over participant pairs sharing at
      least ``min_shared`` items, linearly weighted unless the level is nominal (then
      unweighted); pairs where both used one common category only (kappa undefined) are
      left out;
    - ``*_label``: the Landis & Koch label of each; ``*_note``: items/pairs used, or why the
      value is not computable (NaN, never 0).
    """
    level = _default_level(df) if level is None else _check_level(level)
    column = _default_column(df, level) if column is None else column
    missing = {"method", "item_id", "participant", column} - set(df.columns)
    if missing:
        raise ValueError(f"agreement_table needs columns {sorted(missing)}")
    keep = df[column].notna().to_numpy().copy()
    if exclude_attention_checks and "is_attention_check" in df:
        keep &= ~df["is_attention_check"].astype(bool).to_numpy()
    data = df.loc[keep, ["method", "item_id", "participant", column]]
    variable = _variable_words(column, _study_kind(df))
    weights = None if level == "nominal" else "linear"
    # Code every column once for all methods (sorted codes: the order of groupby and pivot).
    method_code, methods = pd.factorize(data["method"], sort=True)
    item_code, _ = pd.factorize(data["item_id"], sort=True)
    rater_code, _ = pd.factorize(data["participant"], sort=True)
    value_code, values = pd.factorize(_ratings_column(data, column), sort=False)
    order = np.argsort(method_code, kind="stable")
    bounds = np.searchsorted(method_code[order], np.arange(len(methods) + 1))
    rows = []
    for j, method in enumerate(methods):
        sel = order[bounds[j] : bounds[j + 1]]
        ratings, domain_values = _method_ratings(item_code[sel], rater_code[sel], value_code[sel], values, level)
        row = _method_row(str(method), ratings, domain_values, column, level, weights, min_shared,
                          n_boot, confidence, seed)
        rows.append(row | {"variable": variable})
    return pd.DataFrame(rows, columns=_COLUMNS)


_COLUMNS = ["method", "variable", "level", "column", "n_items", "n_participants", "n_answers",
            "fleiss_kappa", "fleiss_z", "fleiss_p", "fleiss_n_items", "fleiss_n_raters",
            "fleiss_label", "fleiss_note",
            "alpha", "alpha_low", "alpha_high", "alpha_level", "alpha_n_items", "alpha_label",
            "alpha_note",
            "cohen_kappa", "cohen_weights", "cohen_n_pairs", "cohen_label", "cohen_note"]


def _method_ratings(item_code: np.ndarray, rater_code: np.ndarray, value_code: np.ndarray,
                    values: pd.Index | pd.api.extensions.ExtensionArray, level: str) -> tuple[_Ratings, list]:
    """One method's rows (global item / participant / value codes, in row order) as
    :class:`_Ratings` over the items and participants it has, and its ordered categories.

    A repeated (item, participant) keeps its first row, as ``drop_duplicates`` did before
    the pivot; item and participant codes are renumbered densely in sorted order.
    """
    items, item = np.unique(item_code, return_inverse=True)
    raters, rater = np.unique(rater_code, return_inverse=True)
    _, first = np.unique(item.astype(np.int64) * len(raters) + rater, return_index=True)
    item, rater, vcode = item[first], rater[first], value_code[first]
    present, vcode = np.unique(vcode, return_inverse=True)
    seen = values.take(present)
    domain_values = _domain(pd.Series(seen), level)
    code_of = {v: i for i, v in enumerate(domain_values)}
    seen_list = seen.tolist()
    code = np.array([code_of[v] for v in seen_list], dtype=np.int64)[vcode]
    numeric = [float(v) if isinstance(v, int | float) else math.nan for v in seen_list]
    value = np.asarray(numeric, dtype=float)[vcode]
    return _Ratings(item, rater, code, value, len(items), len(raters), len(domain_values)), domain_values


def _method_row(method: str, ratings: _Ratings, domain_values: list, column: str, level: str,
                weights: str | None, min_shared: int, n_boot: int, confidence: float, seed: int) -> dict:
    """One row of ``agreement_table``.

    Categories are coded 0..C-1 for the kappas (sorted values; for ordinal integer ratings
    the whole range min..max, so linear weights see the scale's spacing even where a value
    was never chosen). Krippendorff's alpha gets the codes (nominal) or the values themselves
    (ordinal/interval/ratio).
    """
    if level == "nominal":
        domain = np.arange(len(domain_values), dtype=float)
    else:
        domain = np.asarray(domain_values, dtype=float)
    row = {"method": method, "level": level, "column": column, "n_items": ratings.n_items,
           "n_participants": ratings.n_raters, "n_answers": len(ratings.item)}
    row |= _fleiss_from_counts(ratings.counts())
    row |= _alpha_cell(ratings, level, domain, n_boot, confidence, seed)
    row |= _cohen_pairs(ratings.item, ratings.rater, ratings.code, ratings.n_items, ratings.n_raters,
                        ratings.n_categories, weights, min_shared)
    for key in ("fleiss", "cohen"):
        row[f"{key}_label"] = landis_koch(row[f"{key}_kappa"])
    row["alpha_label"] = landis_koch(row["alpha"])
    return row


def _domain(ratings: pd.Series, level: str) -> list:
    """The ordered categories of one method's ratings."""
    seen = sorted(ratings.dropna().unique().tolist(), key=lambda v: (isinstance(v, str), v))
    numeric = seen and all(isinstance(v, int | float) and float(v).is_integer() for v in seen)
    if level != "nominal" and numeric:
        return list(range(int(min(seen)), int(max(seen)) + 1))
    return seen
