"""Slow, obvious versions of the analysis' vectorized computations, for tests to compare with."""

import math

import numpy as np

from analysis.agreement import cohen_kappa


def pairwise_cohen(codes: np.ndarray, n_categories: int, weights, min_shared: int) -> list[float]:
    """Cohen's kappa of every pair of columns (raters) of ``codes`` (items x raters, category
    codes, NaN where missing) sharing at least ``min_shared`` items, one pair at a time."""
    kappas = []
    for a in range(codes.shape[1]):
        for b in range(a + 1, codes.shape[1]):
            shared = ~np.isnan(codes[:, a]) & ~np.isnan(codes[:, b])
            if shared.sum() < min_shared:
                continue
            table = np.zeros((n_categories, n_categories))
            np.add.at(table, (codes[shared, a].astype(int), codes[shared, b].astype(int)), 1)
            k = cohen_kappa(table, weights=weights).kappa
            if math.isfinite(k):
                kappas.append(k)
    return kappas
