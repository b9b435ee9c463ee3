"""The vectorised kernels behind :mod:`analysis.agreement`: numpy (and scipy) over count and
coincidence matrices, no loop over replicates, pairs or categories.

Krippendorff's alpha from coincidence matrices at every level (nominal, ordinal, interval,
ratio) and over all bootstrap replicates at once (the percentile bootstrap over items);
the z statistic of Fleiss' kappa from a subjects x categories count matrix; Cohen's kappa
of every pair of participants at once from sparse one-hot matrices; and :class:`_Ratings`,
one method's answers as codes, from which the count tables are built. Each gives the same
numbers (to rounding) as the libraries :mod:`analysis.agreement` wraps; the tests compare
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

LEVELS = ("nominal", "ordinal", "interval", "ratio")


# --------------------------------------------------------------------------------------
# Levels


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    return level


def _check_ratio_values(values: np.ndarray, level: str) -> None:
    """Ratio distances ((c - k) / (c + k))^2 assume a true zero: with negative values, -2 and 2
    would count as identical (c + k = 0), so they are refused rather than silently wrong."""
    if level == "ratio" and np.nanmin(values, initial=0.0) < 0:
        raise ValueError("ratio agreement needs non-negative values (a scale with a true zero)")


# --------------------------------------------------------------------------------------
# Fleiss from count matrices


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


# --------------------------------------------------------------------------------------
# Krippendorff alpha from coincidence matrices, and the bootstrap over items


def _value_counts(data: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """units x values count table of a raters x units table over ``domain``."""
    if len(domain) == 0:
        return np.zeros((data.shape[1], 0), dtype=np.int64)
    return np.stack([(data == v).sum(axis=0) for v in domain], axis=1)


def _percentile_interval(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return float(low), float(high)


def _bootstrap_alpha(
    counts: np.ndarray, domain: np.ndarray, level: str, *, n_boot: int, confidence: float, seed: int
) -> tuple[float, float]:
    """:func:`bootstrap_ci` of Krippendorff's alpha from a units x values count table.

    The units are the table's rows, resampled exactly as :func:`bootstrap_ci` resamples the
    columns of the raters x units table they were counted from (same generator, same draws).
    """
    rng = np.random.default_rng(seed)
    n_units = counts.shape[0]
    if n_units == 0:
        return math.nan, math.nan
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    reps = _alpha_replicates_from_counts(np.asarray(counts, dtype=float), np.asarray(domain, dtype=float), draws, level)
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


def _alpha_replicates_from_counts(
    counts: np.ndarray, domain: np.ndarray, draws: np.ndarray, level: str, chunk: int = 256
) -> np.ndarray:
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
# One method's ratings


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


# --------------------------------------------------------------------------------------
# Cohen kappa of every pair at once


def _cohen_cell(codes: pd.DataFrame | np.ndarray, n_categories: int, weights: str | None, min_shared: int) -> dict:
    """Mean Cohen kappa over participant pairs sharing >= ``min_shared`` items, from an
    items x participants table of category codes (NaN = not rated); see :func:`_cohen_pairs`."""
    arr = np.asarray(codes, dtype=float)
    item, rater = np.nonzero(~np.isnan(arr))
    return _cohen_pairs(
        item, rater, arr[item, rater].astype(np.int64), arr.shape[0], arr.shape[1], n_categories, weights, min_shared
    )


def _cohen_pairs(
    item: np.ndarray,
    rater: np.ndarray,
    code: np.ndarray,
    n_items: int,
    n_raters: int,
    n_categories: int,
    weights: str | None,
    min_shared: int,
) -> dict:
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
        g = sparse.csr_matrix(
            (
                d[cats, np.repeat(code, n_categories)],
                (np.repeat(item, n_categories) * n_categories + cats, np.repeat(rater, n_categories)),
            ),
            shape=(n_items * n_categories, n_raters),
        )
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
        why = (
            f"no pair of participants shares {min_shared} or more items"
            if not eligible.any()
            else "every eligible pair used a single common category"
        )
        return base | {"cohen_kappa": math.nan, "cohen_note": f"not computable: {why}"}
    skipped = int(eligible.sum()) - int(kappas.size)
    note = f"mean over {kappas.size} pairs sharing >= {min_shared} items"
    if skipped:
        note += f" ({skipped} pairs with a single common category left out)"
    return base | {"cohen_kappa": float(kappas.mean()), "cohen_note": note}
