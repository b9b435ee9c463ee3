"""Inter-rater agreement: Fleiss, Randolph and Cohen kappa, Krippendorff alpha, per method.

What is rated matters as much as the coefficient. In a class-discrimination study every item
offers its own two options, so agreement is on which of the item's options was chosen, coded
as correct (1) vs incorrect (0) within the item; the category *name* pooled over items would
count two raters as agreeing by chance far more often than the item's options allow (coin
flips then give alpha near 0.5). Trust answers are rated on ``score_stronger``, the score
re-signed so that both raters' scales point the same way. :func:`agreement_table` says per row
which variable and level each coefficient used.

The estimates come from the field's libraries (statsmodels ``inter_rater``, the
``krippendorff`` package), wrapped here; written by hand are only what neither has: the
Landis & Koch labels and the per-method table over a long-format export (this module), the
z statistic of Fleiss' kappa, the percentile bootstrap over units and the vectorised forms
of alpha and Cohen's kappa that the table uses (:mod:`analysis.agreement_kernels`).

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

from analysis.agreement_kernels import (
    LEVELS,
    _alpha_replicates,
    _bootstrap_alpha,
    _check_counts,
    _check_level,
    _check_ratio_values,
    _cohen_cell,
    _cohen_pairs,
    _percentile_interval,
    _Ratings,
    _value_counts,
    fleiss_z,
)
from analysis.kinds import known
from camstudy.kinds import Outcome

__all__ = [
    "LEVELS",
    "CohenResult",
    "FleissResult",
    "agreement_table",
    "bootstrap_ci",
    "cohen_kappa",
    "counts_from_ratings",
    "fleiss_kappa",
    "fleiss_z",
    "krippendorff_alpha",
    "landis_koch",
    "randolph_kappa",
    # kernels the tests reach through this module
    "_alpha_replicates",
    "_cohen_cell",
]


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


def cohen_kappa(
    table: np.ndarray | Sequence[Sequence[float]], weights: str | None = None, alpha: float = 0.05
) -> CohenResult:
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
    return CohenResult(
        kappa,
        ase,
        kappa - half,
        kappa + half,
        float(r.std_kappa0),
        float(r.z_value),
        float(r.pvalue_two_sided),
        n,
        weights,
    )


# --------------------------------------------------------------------------------------
# Krippendorff alpha and the bootstrap


def krippendorff_alpha(
    reliability_data: np.ndarray | pd.DataFrame, level: str = "nominal", value_domain: Sequence[float] | None = None
) -> float:
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
    return float(
        krippendorff.alpha(reliability_data=data, value_domain=domain, level_of_measurement=_check_level(level))
    )


def _alpha_computable(data: np.ndarray) -> bool:
    """At least one unit with two ratings, and two distinct values among pairable units."""
    rated = ~np.isnan(data)
    pairable = rated.sum(axis=0) >= 2
    if not pairable.any():
        return False
    values = data[:, pairable][rated[:, pairable]]
    return np.unique(values).size >= 2


def _alpha_from_counts(counts: np.ndarray, domain: np.ndarray, level: str) -> float:
    """Krippendorff's alpha of a units x values count table (the ``krippendorff`` package,
    given the counts it would build itself from the raters x units table); NaN when not
    computable (no unit with two values, or one value overall among those units)."""
    import krippendorff

    counts = np.asarray(counts)
    pairable = counts[counts.sum(axis=1) >= 2]
    if pairable.shape[0] == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return math.nan
    return float(
        krippendorff.alpha(
            value_counts=pairable,
            value_domain=np.asarray(domain, dtype=float),
            level_of_measurement=_check_level(level),
        )
    )


def bootstrap_ci(
    reliability_data: np.ndarray | pd.DataFrame,
    statistic: Callable[[np.ndarray], float] | None = None,
    *,
    level: str = "nominal",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
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
        return _bootstrap_alpha(
            _value_counts(data, domain), domain, level, n_boot=n_boot, confidence=confidence, seed=seed
        )
    rng = np.random.default_rng(seed)
    n_units = data.shape[1]
    if n_units == 0:
        return math.nan, math.nan
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    reps = np.array([statistic(data[:, idx]) for idx in draws], dtype=float)
    return _percentile_interval(reps, confidence)


# --------------------------------------------------------------------------------------
# The per-method table over a long-format export


def _fleiss_from_counts(counts: np.ndarray) -> dict:
    """Fleiss' kappa over the items with the most common rater count (>= 2; ties: the
    larger count), from the items x categories count table. Nominal by construction: the
    categories are only compared for equality, so the note says "nominal" at every level."""
    per_item = counts.sum(axis=1)
    multi = per_item[per_item >= 2]
    if multi.size == 0:
        return {
            "fleiss_kappa": math.nan,
            "fleiss_n_items": 0,
            "fleiss_n_raters": 0,
            "fleiss_note": "not computable: no item has two or more raters",
        }
    values, freq = np.unique(multi, return_counts=True)
    m = int(values[freq == freq.max()].max())
    used = counts[per_item == m]
    res = fleiss_kappa(used.astype(float))
    # Fleiss' kappa knows no order or distance between categories, whatever the table's level.
    note = f"nominal (categories unordered); {len(used)} of {len(per_item)} items (those with {m} raters)"
    if math.isnan(res.kappa):
        note = f"not computable: every answer in one category ({note})"
    return {
        "fleiss_kappa": res.kappa,
        "fleiss_z": res.z,
        "fleiss_p": res.p,
        "fleiss_n_items": len(used),
        "fleiss_n_raters": m,
        "fleiss_note": note,
    }


def _alpha_cell(ratings: _Ratings, level: str, domain: np.ndarray, n_boot: int, confidence: float, seed: int) -> dict:
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
    out = {
        "alpha_level": level,
        "alpha_n_items": int(pairable.sum()),
        "alpha": math.nan,
        "alpha_low": math.nan,
        "alpha_high": math.nan,
    }
    if not pairable.any():
        return out | {"alpha_note": "not computable: no item has two or more raters"}
    counts = counts[pairable]
    if np.count_nonzero(counts.sum(axis=0)) < 2:
        return out | {"alpha_note": "not computable: every answer in one category"}
    alpha = _alpha_from_counts(counts, domain, level)
    low, high = _bootstrap_alpha(counts, domain, level, n_boot=n_boot, confidence=confidence, seed=seed)
    note = f"{int(pairable.sum())} of {len(pairable)} items; bootstrap {n_boot} x items, seed {seed}"
    return out | {"alpha": alpha, "alpha_low": low, "alpha_high": high, "alpha_note": note}


def _study_kind(df: pd.DataFrame) -> str | None:
    """The frame's one ``study_kind``, or None (column missing, or several kinds mixed)."""
    kinds = set(df["study_kind"].dropna().unique()) if "study_kind" in df else set()
    return kinds.pop() if len(kinds) == 1 else None


def _default_level(df: pd.DataFrame) -> str:
    """The kind's level of measurement (``analysis.agreement_level``); nominal for no kind."""
    kind = known(_study_kind(df))
    return kind.analysis.agreement_level if kind is not None else "nominal"


def _default_column(df: pd.DataFrame, level: str) -> str:
    """The rating agreement is computed on when ``column`` is not given.

    A kind scored right or wrong (class discrimination): ``correct``, i.e. which of the
    item's own options was chosen. Every item offers a different pair of categories, so the
    category name pooled over items would take chance from the pooled name frequencies (many
    names, each item allowing two) and read coin flips as agreement. A scale kind (trust) at
    a non-nominal level: its ``analysis.score_column`` (``score_stronger``, the answer
    re-signed so that positive favours the stronger model, since left/right sides are
    randomised per participant and two raters' raw ``answer`` is then not on the same scale).
    Otherwise ``answer``.
    """
    kind = known(_study_kind(df))
    if kind is None:
        return "answer"
    analysis = kind.analysis
    if analysis.outcome is Outcome.ACCURACY and "correct" in df:
        return "correct"
    if level != "nominal" and analysis.outcome is Outcome.SCALE and analysis.score_column in df:
        return str(analysis.score_column)
    return "answer"


# What each rated column means, for a report to print (see ``variable`` in agreement_table).
_VARIABLE_WORDS = {
    "correct": "option chosen within the item (correct vs incorrect)",
    "score_stronger": "trust score, re-signed to favour the stronger model (-2..2)",
}
# The raw ``answer`` of a kind scored right or wrong: the option's name (a scale kind's is
# its ``analysis.agreement_variable``).
_OPTION_WORDS = "category name chosen, pooled over items (chance not from the item's own options)"


def variable_words(column: str, kind: str | None) -> str:
    """The rated variable of ``column`` in words."""
    study_kind = known(kind)
    if column == "correct" and study_kind is not None and study_kind.analysis.chance not in (None, 0.5):
        # More than two options: right vs wrong is not the option chosen; the kind says what it is.
        return study_kind.analysis.agreement_variable
    if column in _VARIABLE_WORDS:
        return _VARIABLE_WORDS[column]
    if column == "answer" and study_kind is not None:
        if study_kind.analysis.outcome is Outcome.ACCURACY:
            return _OPTION_WORDS
        return study_kind.analysis.agreement_variable
    return f"column {column}"


def _ratings_column(data: pd.DataFrame, column: str) -> pd.Series:
    """The rating column ready to code: booleans (``correct``) become 1 (true) / 0 (false), so
    that the two categories are numbers at every level and sort incorrect before correct."""
    values = data[column]
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("int8")
    return values


def agreement_table(
    df: pd.DataFrame,
    *,
    level: str | None = None,
    column: str | None = None,
    min_shared: int = 5,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    exclude_attention_checks: bool = True,
) -> pd.DataFrame:
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
    "ordinal", "interval" or "ratio"; None: the level of the one ``study_kind`` throughout
    (its ``analysis.agreement_level``: ordinal for trust, nominal for class discrimination,
    two unordered options per item), else nominal.

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
    variable = variable_words(column, _study_kind(df))
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
        row = _method_row(
            str(method), ratings, domain_values, column, level, weights, min_shared, n_boot, confidence, seed
        )
        rows.append(row | {"variable": variable})
    return pd.DataFrame(rows, columns=_COLUMNS)


_COLUMNS = [
    "method",
    "variable",
    "level",
    "column",
    "n_items",
    "n_participants",
    "n_answers",
    "fleiss_kappa",
    "fleiss_z",
    "fleiss_p",
    "fleiss_n_items",
    "fleiss_n_raters",
    "fleiss_label",
    "fleiss_note",
    "alpha",
    "alpha_low",
    "alpha_high",
    "alpha_level",
    "alpha_n_items",
    "alpha_label",
    "alpha_note",
    "cohen_kappa",
    "cohen_weights",
    "cohen_n_pairs",
    "cohen_label",
    "cohen_note",
]


def _method_ratings(
    item_code: np.ndarray,
    rater_code: np.ndarray,
    value_code: np.ndarray,
    values: pd.Index | pd.api.extensions.ExtensionArray,
    level: str,
) -> tuple[_Ratings, list]:
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


def _method_row(
    method: str,
    ratings: _Ratings,
    domain_values: list,
    column: str,
    level: str,
    weights: str | None,
    min_shared: int,
    n_boot: int,
    confidence: float,
    seed: int,
) -> dict:
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
    row = {
        "method": method,
        "level": level,
        "column": column,
        "n_items": ratings.n_items,
        "n_participants": ratings.n_raters,
        "n_answers": len(ratings.item),
    }
    row |= _fleiss_from_counts(ratings.counts())
    row |= _alpha_cell(ratings, level, domain, n_boot, confidence, seed)
    row |= _cohen_pairs(
        ratings.item,
        ratings.rater,
        ratings.code,
        ratings.n_items,
        ratings.n_raters,
        ratings.n_categories,
        weights,
        min_shared,
    )
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
