"""Method comparisons that respect the study's clustering (statsmodels underneath).

Class discrimination (binary ``correct``; non-check answers with a result):

- :func:`method_comparisons_gee`: a population-averaged (marginal) logistic model fitted by
  GEE, clustered by *worker only*. Pairwise method odds ratios with Wald tests from the
  robust (sandwich) covariance, Holm-adjusted across the pairs.
- :func:`method_comparisons_mixed`: a logistic model with crossed random intercepts for the
  worker and the image, fitted by variational Bayes. Its effects are *conditional* (for a
  given worker and image) log-odds, larger in size than the marginal ones.

Trust (``score_stronger``: -2..2, positive favours the stronger model):

- :func:`trust_tests`: per method, the tests of the mean score against 0 (from
  :func:`analysis.accuracy.trust_summary`: the two-way cluster-robust t test, and the
  Wilcoxon and t tests of the per-worker means, which ignore the images), and paired
  comparisons between every two methods over the workers who rated both, Holm-adjusted
  across the pairs.
- :func:`trust_ordinal`: a proportional-odds (ordinal logit) model of the score on the method
  and the side the stronger model was shown on; the side coefficient checks counterbalancing.

A worker is a ``(mode, participant)`` pair throughout, as in :mod:`analysis.accuracy`. The
functions take analysed answers (after :func:`analysis.exclusions.apply_exclusions`);
attention-check rows, if present, are dropped, and so are rows without a result.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.accuracy import trust_summary
from analysis.kinds import is_scale
from analysis.stats import holm
from camstudy.errors import UserError

Z95 = float(stats.norm.ppf(0.975))

GEE_COLUMNS = [
    "method_a",
    "method_b",
    "log_or",
    "se",
    "odds_ratio",
    "ci_low",
    "ci_high",
    "z",
    "df",
    "p_value",
    "p_holm",
    "significant",
    "model",
]
MIXED_COLUMNS = [
    "method",
    "reference",
    "log_odds",
    "posterior_sd",
    "ci_low",
    "ci_high",
    "odds_ratio",
    "or_low",
    "or_high",
    "model",
]


def cluster_t_reference(n_clusters: int, level: float) -> tuple[float, float, float]:
    """(CR1 factor, df, critical value) for Wald tests on a sandwich covariance with
    ``n_clusters`` clusters: the factor G / (G - 1) that inflates the plain sandwich, and the
    t reference with G - 1 degrees of freedom and its two-sided ``level`` quantile.

    Why: the sandwich averages G cluster scores, so with a few dozen clusters it is biased
    down and noisy; a normal reference then rejects too often (measured in
    tests/analysis/test_null_rates.py). G - 1 df is the usual reference for CR1 errors
    (Cameron and Miller 2015, section VI), one rule for every model here.
    """
    df = float(n_clusters - 1) if n_clusters > 1 else math.nan
    factor = n_clusters / (n_clusters - 1) if n_clusters > 1 else math.nan
    return factor, df, float(stats.t.ppf(1 - (1 - level) / 2, df))


def _require(df: pd.DataFrame, cols: list[str], who: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise UserError(f"{who}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")


def _trials(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The non-check rows of ``df``, of ``columns`` only when given (selecting the columns
    first, so that a large frame's other columns are not copied)."""
    out = df if columns is None else df[[c for c in dict.fromkeys(columns) if c in df.columns]]
    if "is_attention_check" in df.columns:
        check = df["is_attention_check"].astype(bool).to_numpy()
        if check.any():
            return out[~check]
    return out


def _worker_key(df: pd.DataFrame) -> pd.Series:
    """One string per worker: ``mode/participant`` (``participant`` alone without ``mode``)."""
    if "mode" in df.columns:
        return df["mode"].astype(str) + "/" + df["participant"].astype(str)
    return df["participant"].astype(str)


def _worker_codes(rows: pd.DataFrame) -> np.ndarray:
    """One integer per worker, numbered in order of first appearance: the codes that
    ``pd.factorize(_worker_key(rows))`` gives, without building a string per row."""
    part = pd.factorize(rows["participant"], use_na_sentinel=False)[0].astype(np.int64)
    if "mode" not in rows.columns:
        return part
    mode = pd.factorize(rows["mode"], use_na_sentinel=False)[0].astype(np.int64)
    return pd.factorize(mode * (int(part.max(initial=0)) + 1) + part)[0]


def _cd_answers(df: pd.DataFrame, who: str, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Non-check class-discrimination answers with a result: y (0/1), method, role, worker
    (an integer per worker, see :func:`_worker_codes`), ..."""
    _require(df, ["participant", "method", "model_role", "correct", *extra], who)
    rows = _trials(df, ["mode", "participant", "method", "model_role", "correct", *extra])
    rows = rows[rows["correct"].notna() & rows["method"].notna() & rows["model_role"].notna()]
    if rows.empty:
        raise UserError(f"{who}: no class-discrimination answers with a result")
    out = pd.DataFrame(
        {
            "y": rows["correct"].astype(bool).astype("float64").to_numpy(),
            "method": rows["method"].astype(str).reset_index(drop=True),
            "model_role": rows["model_role"].astype(str).reset_index(drop=True),
            "worker": _worker_codes(rows),
        }
    )
    for c in extra:
        out[c] = rows[c].astype(str).to_numpy()
    if out["method"].nunique() < 2:
        raise UserError(f"{who}: need answers for at least two methods")
    return out


def _reference(d: pd.DataFrame, reference: str | None, who: str) -> str:
    """The given reference method, or the one with the lowest observed accuracy (ties: by name)."""
    acc = d.groupby("method")["y"].mean()
    if reference is None:
        return str(acc.sort_index().idxmin())
    if reference not in acc.index:
        raise UserError(
            f"{who}: reference method {reference!r} has no answers (methods: {', '.join(sorted(acc.index))})"
        )
    return reference


def _design(d: pd.DataFrame, reference: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Intercept, method dummies (treatment coding against ``reference``) and model-role
    dummies (against the first role by name). Returns (X, column names, non-reference methods)."""
    method_code, methods = pd.factorize(d["method"])
    role_code, roles = pd.factorize(d["model_role"])
    others = sorted(m for m in methods if m != reference)
    roles_sorted = sorted(roles)
    names = ["const", *(f"method[{m}]" for m in others), *(f"model_role[{r}]" for r in roles_sorted[1:])]
    # column of each method / role code (0 = none: the reference method, the first role)
    method_col = np.array([1 + others.index(m) if m != reference else 0 for m in methods], dtype=np.int64)
    role_col = np.array([roles_sorted.index(r) for r in roles], dtype=np.int64)
    role_col = np.where(role_col > 0, len(others) + role_col, 0)
    X = np.zeros((len(d), len(names)))
    X[:, 0] = 1.0
    rows = np.arange(len(d))
    X[rows, method_col[method_code]] = 1.0
    X[rows, role_col[role_code]] = 1.0
    X[:, 0] = 1.0  # rows of the reference method and first role set column 0 again
    return X, names, others


@dataclass(frozen=True)
class GEEFit:
    """What :func:`gee_exchangeable` estimates: ``params``, the robust (sandwich) covariance
    ``cov_robust`` (statsmodels' ``cov_params()`` with ``cov_type="robust"``), the naive one
    ``cov_naive``, the exchangeable correlation ``dep_params``, ``converged``, ``n_iter``."""

    params: np.ndarray
    cov_robust: np.ndarray
    cov_naive: np.ndarray
    dep_params: float
    converged: bool
    n_iter: int


def gee_exchangeable(
    endog: np.ndarray,
    exog: np.ndarray,
    groups: np.ndarray,
    family,
    start_params: np.ndarray | None = None,
    maxiter: int = 60,
    ctol: float = 1e-6,
) -> GEEFit:
    """statsmodels ``GEE(endog, exog, groups, family, cov_struct=Exchangeable()).fit()``
    (no weights, offset or constraint; robust covariance), computed from per-cluster sums.

    The same algorithm, step for step, as statsmodels 0.14/0.15 ``GEE.fit``: start from
    ``start_params`` (default: the independence GLM, ``GEE._starting_params``, see
    :func:`_glm_start`), then per iteration a Fisher scoring update of the mean parameters
    with the current working correlation; stop when the score's L2 norm is below ``ctol``
    once the correlation has been updated at least once, else update the correlation
    (``Exchangeable.update``: the moment estimator from the Pearson residuals, ``ddof_scale``
    = the number of columns); at most ``maxiter`` iterations; then the naive and robust
    (sandwich) covariances (``GEE._covmat``).

    Why sums suffice: the exchangeable inverse is closed form, V_i^-1 = A^-1/2 [I / (1 - r)
    - c J] A^-1/2 with c = r / (1 - r) / (1 + r (n_i - 1)) and A the variances, so with
    x = D / sd and e = (y - mu) / sd row by row, cluster i contributes
    D_i' V_i^-1 D_i = x_i'x_i / (1 - r) - c S_i S_i' and D_i' V_i^-1 r_i = x_i'e_i / (1 - r)
    - c S_i sum(e_i) (S_i = sum of x over the cluster), and the correlation update needs
    sum(e_i) and sum(e_i^2). Rows with the same covariates in a cluster share mu, D and sd,
    so all of these are sums over the cluster's (covariate row) cells of the cell's count
    N, sum of y and within-cell sum of squares: exactly the same equations as statsmodels'
    loop over rows, evaluated in far fewer terms (a class-discrimination study with a few
    methods and roles has a few cells per worker). The link, its derivative and the
    variance are the family's own functions; only the rounding of the sums differs from
    statsmodels (tests compare the two).
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, IterationLimitWarning

    y = np.asarray(endog, dtype=float)
    X = np.asarray(exog, dtype=float)
    nobs, p = X.shape
    link, variance = family.link, family.variance
    pattern, first = _distinct_rows(X)
    if start_params is None:
        params = _glm_start(y, X, family, pattern)
    else:
        params = np.asarray(start_params, dtype=float).copy()

    # Cells: (cluster, distinct covariate row), sorted by cluster (statsmodels' cluster order).
    _, cluster = np.unique(np.asarray(groups), return_inverse=True)
    cells, cell = np.unique(cluster.ravel().astype(np.int64) * len(first) + pattern, return_inverse=True)
    cell = cell.ravel()
    xc = X[first][cells % len(first)]  # cells x p
    count = np.bincount(cell).astype(float)
    ybar = np.bincount(cell, weights=y) / count
    ss_within = np.bincount(cell, weights=(y - ybar[cell]) ** 2)
    cell_cluster = cells // len(first)
    starts = np.flatnonzero(np.r_[True, cell_cluster[1:] != cell_cluster[:-1]])
    sizes = np.add.reduceat(count, starts)

    def solve(b: np.ndarray, dep: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """sum_i D_i' V_i^-1 D_i, sum_i D_i' V_i^-1 r_i and the clusters' D_i' V_i^-1 r_i."""
        lpr = xc @ b
        mu = link.inverse(lpr)
        sdev = np.sqrt(variance(mu))
        x1 = xc * (link.inverse_deriv(lpr) / sdev)[:, None]  # x of every row of the cell
        e_sum = count * (ybar - mu) / sdev  # sum of e over the cell's rows
        c = dep / (1.0 - dep) / (1.0 + dep * (sizes - 1))
        big_s = np.add.reduceat(x1 * count[:, None], starts, axis=0)
        small_s = np.add.reduceat(e_sum, starts)
        bmat = (x1 * count[:, None]).T @ x1 / (1.0 - dep) - (big_s * c[:, None]).T @ big_s
        per_cluster = (
            np.add.reduceat(x1 * e_sum[:, None], starts, axis=0) / (1.0 - dep) - big_s * (c * small_s)[:, None]
        )
        return bmat, per_cluster.sum(axis=0), per_cluster

    def update_dep(b: np.ndarray) -> float:
        """``Exchangeable.update`` (unweighted)."""
        mu = link.inverse(xc @ b)
        var = variance(mu)
        ssr = np.add.reduceat((ss_within + count * (ybar - mu) ** 2) / var, starts)
        e_sum = np.add.reduceat(count * (ybar - mu) / np.sqrt(var), starts)
        residsq_sum = float(np.sum((e_sum**2 - ssr) / 2))
        n_pairs = float(np.sum(0.5 * sizes * (sizes - 1)))
        scale = float(np.sum(ssr)) / (nobs * (nobs - p) / float(nobs))
        return residsq_sum / scale / (n_pairs * (n_pairs - p) / n_pairs)

    dep, del_params, n_assoc, itr = 0.0, -1.0, 0, 0
    for itr in range(maxiter):  # noqa: B007 - the count is reported
        bmat, score, _ = solve(params, dep)
        try:
            update = np.linalg.solve(bmat, score)
        except np.linalg.LinAlgError:
            update = np.linalg.pinv(bmat) @ score
        params += update
        del_params = float(np.sqrt(np.sum(score**2)))
        if del_params < ctol and n_assoc > 0:
            break
        dep = update_dep(params)
        n_assoc += 1
    if del_params >= ctol:
        warnings.warn("Iteration limit reached prior to convergence", IterationLimitWarning, stacklevel=2)

    bmat, _, per_cluster = solve(params, dep)
    cmat = per_cluster.T @ per_cluster
    try:
        bmati = np.linalg.inv(bmat)
    except np.linalg.LinAlgError:
        warnings.warn("Singular matrix in the GEE covariance", ConvergenceWarning, stacklevel=2)
        bmati = np.linalg.pinv(bmat)
    if _scale_is_one(family):
        scale = 1.0
    else:  # GEE.estimate_scale: Pearson chi^2 / (n - p)
        mu = link.inverse(xc @ params)
        scale = float(np.sum((ss_within + count * (ybar - mu) ** 2) / variance(mu))) / (nobs - p)
    return GEEFit(
        params=params,
        cov_robust=bmati @ (cmat @ bmati),
        cov_naive=bmati * scale,
        dep_params=float(dep),
        converged=del_params < ctol,
        n_iter=itr + 1,
    )


def _scale_is_one(family) -> bool:
    """statsmodels GEE fixes the scale at 1 for these families (``GEE.estimate_scale``)."""
    from statsmodels.genmod import families

    return isinstance(family, families.Binomial | families.Poisson | families.NegativeBinomial)


def _distinct_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, first row of each code) for the distinct rows of a 2-D array; codes
    are numbered in order of first appearance."""
    key = np.zeros(m.shape[0], dtype=np.int64)
    size = 1
    for col in m.T:
        col_codes, uniques = pd.factorize(col)
        if size * len(uniques) >= 2**62:  # renumber before the combined key could overflow
            key = pd.factorize(key)[0].astype(np.int64)
            size = int(key.max(initial=0)) + 1
        key, size = key * len(uniques) + col_codes, size * len(uniques)
    key = pd.factorize(key)[0]
    first = pd.Series(key).drop_duplicates().index.to_numpy()
    return key, first


def _glm_start(y: np.ndarray, X: np.ndarray, family, x_codes: np.ndarray | None = None) -> np.ndarray:
    """GEE's own starting values (``GEE._starting_params``: the independence GLM fitted by
    IRLS on every row), fitted on the distinct (x, y) rows with their counts as frequency
    weights: the same log-likelihood, deviance and IRLS iterates (sums of the same terms,
    grouped), so the same estimates to rounding, from a handful of rows. ``x_codes``: the
    rows' codes from :func:`_distinct_rows` of ``X``, when known."""
    from statsmodels.genmod.generalized_linear_model import GLM

    if x_codes is None:
        x_codes = _distinct_rows(X)[0]
    code, first = _distinct_rows(np.column_stack([x_codes, y]))
    counts = np.bincount(code, minlength=len(first)).astype(float)
    return np.asarray(GLM(y[first], X[first], family=family, freq_weights=counts).fit().params, dtype=float)


def method_comparisons_gee(df: pd.DataFrame, reference: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Pairwise method comparisons of class-discrimination accuracy by GEE.

    Model: ``logit P(correct) = b0 + b_method + b_role`` (treatment coding; the reference
    method is ``reference`` or the one with the lowest observed accuracy; the model role
    enters additively), fitted by GEE with ``families.Binomial()`` (logit link), an
    exchangeable working correlation within each worker, and the robust (sandwich)
    covariance: statsmodels ``GEE(...).fit()``'s algorithm, computed from per-worker sums by
    :func:`gee_exchangeable` (same estimates to rounding; the tests compare it with
    statsmodels). The coefficients are population-averaged (marginal) log odds ratios.

    Clustering: GEE clusters by **worker only**. Answers about the same image by different
    workers are treated as independent; with image effects the standard errors are somewhat
    too small (more so when few images are shown many times); :func:`method_comparisons_mixed`
    models both the worker and the image.

    Small-sample inference: the plain sandwich is biased down with a few dozen workers, so
    the SEs use the CR1 factor G / (G - 1) (G workers) and the tests and intervals a t
    reference with G - 1 df (:func:`cluster_t_reference`). Measured null rates (two methods
    at 0.5, between design, worker and image SD 0.5; tests/analysis/test_null_rates.py):
    30 workers x 20 trials, 1000 seeds: 5.8% with the plain sandwich and a normal reference,
    4.9% (95% CI 3.6-6.4) with the correction; 60 x 40 (each image seen about 24 times, so
    the ignored image effect weighs more), 400 seeds: 6.8% before, 6.0% (3.9-8.8) after;
    within design, 60 x 40: 3.0% after (image effects cancel within a worker).

    Every pair of methods is compared by a Wald contrast of the fitted coefficients
    (``b_a - b_b``, variance ``V_aa + V_bb - 2 V_ab``; the reference's coefficient is 0), so
    the result does not depend on the reference. Pairs are ``method_a`` vs ``method_b`` with
    ``method_a`` the one of higher observed accuracy, so ``odds_ratio`` = odds(a) / odds(b)
    is usually >= 1. Columns: ``log_or, se`` (CR1), ``odds_ratio``, the Wald ``1 - alpha``
    interval of the odds ratio ``ci_low, ci_high`` (t critical value), ``z`` (the Wald ratio
    ``log_or / se``, referred to t), ``df`` (G - 1), two-sided ``p_value`` from t(df),
    ``p_holm`` (Holm across all pairs, :func:`analysis.stats.holm`), ``significant``
    (``p_holm < alpha``) and ``model`` (a one-line description). ``df.attrs``: ``reference``,
    ``params`` (Series), ``cov`` (DataFrame: statsmodels' robust covariance, *before* the
    CR1 factor), ``cov_factor`` (G / (G - 1): ``se**2 = cov_factor * c' cov c``),
    ``n_answers``, ``n_workers``, ``correlation`` (the estimated exchangeable within-worker
    correlation, on the working scale), ``inference`` (the correction and reference, in words).
    """
    from statsmodels.genmod.families import Binomial

    who = "method_comparisons_gee"
    d = _cd_answers(df, who)
    ref = _reference(d, reference, who)
    X, names, others = _design(d, ref)
    groups = pd.factorize(d["worker"])[0]
    y = d["y"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        fit = gee_exchangeable(y, X, groups, Binomial())
    params = pd.Series(fit.params, index=names)
    cov = pd.DataFrame(fit.cov_robust, index=names, columns=names)
    n_workers = int(groups.max()) + 1
    factor, t_df, t_crit = cluster_t_reference(n_workers, 1 - alpha)

    acc = d.groupby("method")["y"].mean()
    order = sorted(acc.index, key=lambda m: (-acc[m], m))  # highest accuracy first
    col = {m: f"method[{m}]" for m in others}
    desc = (
        "GEE logistic: correct ~ method + model_role; exchangeable within worker; robust SE (CR1), t reference; "
        f"reference {ref}; clustered by worker only"
    )
    records = []
    for a, b in itertools.combinations(order, 2):
        c = pd.Series(0.0, index=names)
        if a in col:
            c[col[a]] += 1.0
        if b in col:
            c[col[b]] -= 1.0
        est = float(c @ params)
        se = float(math.sqrt(max(factor * float(c @ cov @ c), 0.0)))
        z = est / se if se > 0 else math.nan
        p = float(2 * stats.t.sf(abs(z), t_df)) if se > 0 else math.nan
        records.append(
            {
                "method_a": a,
                "method_b": b,
                "log_or": est,
                "se": se,
                "odds_ratio": math.exp(est),
                "ci_low": math.exp(est - t_crit * se),
                "ci_high": math.exp(est + t_crit * se),
                "z": z,
                "df": t_df,
                "p_value": p,
                "model": desc,
            }
        )
    out = pd.DataFrame.from_records(records)
    _, adjusted = holm(out["p_value"].fillna(1.0).to_numpy(), alpha=alpha)
    out["p_holm"] = adjusted
    out["significant"] = out["p_holm"] < alpha
    out = out[GEE_COLUMNS]
    out.attrs.update(
        {
            "reference": ref,
            "params": params,
            "cov": cov,
            "cov_factor": factor,
            "n_answers": len(d),
            "n_workers": n_workers,
            "correlation": float(fit.dep_params),
            "inference": (
                f"robust (sandwich) standard errors by worker with the CR1 factor "
                f"G/(G-1), G = {n_workers} workers; Wald tests and intervals "
                f"against t with {n_workers - 1} df"
            ),
        }
    )
    return out


def method_comparisons_mixed(df: pd.DataFrame, reference: str | None = None, level: float = 0.95) -> pd.DataFrame:
    """Method effects on class-discrimination accuracy with crossed worker and image effects.

    Model: ``logit P(correct) = b0 + b_method + b_role + u_worker + v_image`` with independent
    ``u ~ N(0, s_w^2)`` and ``v ~ N(0, s_i^2)``, fitted by statsmodels
    ``BinomialBayesMixedGLM`` (``vc_formulas`` {"worker": "0 + C(participant)", "image":
    "0 + C(image_id)"}; the participant column is the worker key) with ``fit_vb``: a
    **variational Bayes** (mean-field Gaussian) approximation to the posterior, under the
    package's default priors (fixed effects N(0, 10^2); log random-effect SDs N(0, 1)). It is
    fast (seconds for thousands of answers) but approximate: mean-field posterior SDs tend to
    be somewhat too small, and the intervals below are ``mean +- z * posterior SD``, not exact
    credible intervals. No p-values: use it to check the direction and size of the effects.

    Known property (measured on simulations, tests/analysis/test_model_calibration.py; two
    methods, 30 workers x 20 trials, worker and image SD 0.5): the intervals are markedly
    too narrow, so "the interval excludes 0" is not a 5% test. Within design: the posterior
    SD is about 0.69 of the estimate's sampling SD, a null difference was excluded from the
    95% interval in 33 of 200 seeds (16.5%), and the true conditional log odds ratio was
    covered in 160 of 200 (80%); the point estimates were unbiased. Between design (each
    worker sees one method): ratio about 0.50, null excluded in 29 of 100 seeds (29%). Use
    :func:`method_comparisons_gee` for the tests.

    The effects are conditional (for a typical worker and image), so they are larger in size
    than GEE's marginal ones (roughly by ``sqrt(1 + 0.346 (s_w^2 + s_i^2))``).

    Returns one row per non-reference method: ``log_odds`` (vs ``reference``: the given one,
    or the method with the lowest observed accuracy), ``posterior_sd``, the approximate
    ``level`` interval ``ci_low, ci_high``, ``odds_ratio`` and its interval ``or_low,
    or_high``, ``model``; sorted by ``log_odds``. ``df.attrs``: ``reference``, ``worker_sd``
    and ``image_sd`` (posterior means of the random-effect SDs, ``exp`` of the mean log SD),
    ``fixed`` (posterior means of every fixed effect).
    """
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    who = "method_comparisons_mixed"
    d = _cd_answers(df, who, extra=("image_id",))
    ref = _reference(d, reference, who)
    others = sorted(m for m in d["method"].unique() if m != ref)
    d["method"] = pd.Categorical(d["method"], categories=[ref, *others])
    d["participant"] = pd.factorize(d["worker"])[0]
    d["image_id"] = pd.factorize(d["image_id"])[0]
    vc = {"worker": "0 + C(participant)", "image": "0 + C(image_id)"}
    model = BinomialBayesMixedGLM.from_formula("y ~ C(method) + C(model_role)", vc, d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        res = model.fit_vb()
    fe = pd.Series(res.fe_mean, index=model.exog_names)
    fe_sd = pd.Series(res.fe_sd, index=model.exog_names)
    vcp = pd.Series(res.vcp_mean, index=model.vcp_names)
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    desc = (
        "Bayesian mixed logistic (variational Bayes): correct ~ method + model_role "
        f"+ (1|worker) + (1|image); reference {ref}"
    )
    records = []
    for m in others:
        name = f"C(method)[T.{m}]"
        est, sd = float(fe[name]), float(fe_sd[name])
        records.append(
            {
                "method": m,
                "reference": ref,
                "log_odds": est,
                "posterior_sd": sd,
                "ci_low": est - z * sd,
                "ci_high": est + z * sd,
                "odds_ratio": math.exp(est),
                "or_low": math.exp(est - z * sd),
                "or_high": math.exp(est + z * sd),
                "model": desc,
            }
        )
    out = pd.DataFrame.from_records(records, columns=MIXED_COLUMNS).sort_values("log_odds", ignore_index=True)
    out.attrs.update(
        {
            "reference": ref,
            "worker_sd": float(np.exp(vcp["worker"])),
            "image_sd": float(np.exp(vcp["image"])),
            "fixed": fe,
        }
    )
    return out


PAIR_COLUMNS = [
    "method_a",
    "method_b",
    "n_workers",
    "mean_diff",
    "wilcoxon_stat",
    "wilcoxon_p",
    "wilcoxon_p_holm",
    "t_stat",
    "t_p",
    "t_p_holm",
]


def trust_tests(df: pd.DataFrame, alpha: float = 0.05) -> dict[str, pd.DataFrame]:
    """Trust scores per method against 0, and every two methods against each other.

    Except the one-sample ``p_value`` (the two-way clustered test of the mean over answers),
    the worker is the independent unit: the tests run on per-worker mean ``score_stronger``.

    - ``"one_sample"``: :func:`analysis.accuracy.trust_summary` by method (``p_value``: the
      two-way (worker, image) cluster-robust t test of the mean against 0, the test of its
      interval; on per-worker means, ignoring the images: Wilcoxon signed-rank with
      zero_method="wilcox" and the one-sample t-test against 0), plus ``p_value_holm``,
      ``wilcoxon_p_holm`` and ``t_p_holm``: Holm across the methods.
    - ``"pairwise"``: for every two methods (``method_a`` before ``method_b`` in name order)
      the workers who rated both; ``mean_diff`` is the mean over them of (worker's mean for
      a - worker's mean for b); Wilcoxon signed-rank on those differences (``scipy.stats.
      wilcoxon``, two-sided, zero differences dropped) and the paired t-test
      (``scipy.stats.ttest_rel``); ``*_p_holm`` Holm across the pairs, per test. NaN where
      fewer than 2 workers (t) or no non-zero difference (Wilcoxon) remain.
    """
    _require(df, ["participant", "method", "score_stronger"], "trust_tests")
    rows = _trials(df)
    rows = rows[rows["score_stronger"].notna() & rows["method"].notna()]
    if rows.empty:
        raise UserError("trust_tests: no trust answers with a score")
    rows = rows.assign(mode=rows["mode"] if "mode" in rows.columns else "")
    one = trust_summary(rows, "method", alpha=alpha)
    _add_holm(one, ("p_value", "wilcoxon_p", "t_p"), alpha)

    means = rows.assign(worker=_worker_key(rows), score=rows["score_stronger"].astype("float64")).pivot_table(
        index="worker", columns="method", values="score", aggfunc="mean"
    )
    records = []
    for a, b in itertools.combinations(sorted(means.columns), 2):
        both = means[[a, b]].dropna()
        diff = (both[a] - both[b]).to_numpy()
        r = {
            "method_a": a,
            "method_b": b,
            "n_workers": len(diff),
            "mean_diff": float(diff.mean()) if len(diff) else math.nan,
            "wilcoxon_stat": math.nan,
            "wilcoxon_p": math.nan,
            "t_stat": math.nan,
            "t_p": math.nan,
        }
        if np.count_nonzero(diff) >= 1:
            w = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
            r["wilcoxon_stat"], r["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
        if len(diff) > 1 and np.std(diff) > 0:
            t = stats.ttest_rel(both[a].to_numpy(), both[b].to_numpy())
            r["t_stat"], r["t_p"] = float(t.statistic), float(t.pvalue)
        records.append(r)
    pairs = pd.DataFrame.from_records(records, columns=[c for c in PAIR_COLUMNS if not c.endswith("_holm")])
    _add_holm(pairs, ("wilcoxon_p", "t_p"), alpha)
    pairs = pairs[PAIR_COLUMNS].astype({"n_workers": "int64"})
    return {"one_sample": one, "pairwise": pairs}


def _add_holm(frame: pd.DataFrame, columns: Sequence[str], alpha: float) -> None:
    """Add ``<col>_holm``: Holm-adjusted p-values over the rows where ``col`` is not NaN."""
    for col in columns:
        p = frame[col].to_numpy(dtype=float)
        adj = np.full(len(p), np.nan)
        ok = ~np.isnan(p)
        if ok.any():
            adj[ok] = holm(p[ok], alpha=alpha)[1]
        frame[f"{col}_holm"] = adj


ORDINAL_COLUMNS = ["term", "coef", "se", "ci_low", "ci_high", "z", "df", "p_value", "odds_ratio"]


def trust_ordinal(
    df: pd.DataFrame, reference: str | None = None, cluster: bool = True, level: float = 0.95
) -> pd.DataFrame:
    """Proportional-odds model of the trust score on the method and the side.

    Model: ``P(score_stronger <= k) = expit(t_k - x'b)``, ``k`` in -2..1 (statsmodels
    ``OrderedModel``, distr="logit", maximum likelihood; the score is an ordered categorical
    -2 < -1 < 0 < 1 < 2), with ``x``: method dummies (treatment coding against
    ``reference``: the given method or the one with the lowest mean score; the thresholds
    take the intercept's place) and ``stronger_left`` (1 when the stronger model was on the
    left: ``model_left`` starts with "stronger"). A positive coefficient shifts answers
    towards the stronger model. Because ``score_stronger`` is re-signed to favour the
    stronger model, a left-side bias shows up as a positive ``stronger_left`` coefficient;
    with counterbalanced sides and no bias it is near 0, which is what it checks.

    Assumes proportional odds (one shift per term for every threshold) and answers
    independent given ``x``: the model has no worker effect. With ``cluster=True`` (default)
    the covariance is cluster-robust by worker (sandwich, statsmodels' CR1 factor G / (G - 1)
    (N - 1) / (N - K)), which keeps the tests valid under within-worker correlation, and the
    tests and intervals use a t reference with G - 1 df (G workers): with a normal reference
    the CR1 errors of 30 workers were liberal (below). ``cluster=False`` gives the
    model-based covariance and a normal reference.

    Returns one row per term (methods as ``method[m]``, then ``stronger_left``): ``coef``,
    ``se``, Wald ``level`` interval ``ci_low, ci_high`` (``coef +- q se``, ``q`` the same
    t(df) quantile as the test), ``z`` (the Wald ratio coef / se), ``df`` (G - 1; infinite
    for the normal reference), two-sided ``p_value`` and ``odds_ratio`` = exp(coef).
    ``df.attrs``: ``reference``, ``thresholds`` (the cut points t_k on the latent scale),
    ``n_answers``, ``n_workers``, ``converged``, ``inference`` (the covariance and
    reference, in words).

    Only the scores that occur are categories: a score nobody gave (no -2 answers is common
    with mean scores near 1 and a few hundred answers; about 7% of simulated 30 x 20 studies
    at mean scores 1.0 and 1.27) has no threshold, and declaring it made the fit fail
    silently (``converged`` False, coefficients 0, NaN SEs) before this was fixed. The
    categories used are in ``df.attrs["categories"]``; check ``df.attrs["converged"]``.
    Calibration (simulated, 30 x 20, worker SD 0.5, two methods at mean 0.5, counterbalanced
    sides, seeds 0-999, all converged; tests/analysis/test_null_rates.py): with the normal
    reference p < 0.05 in 6.5% (95% CI 5.1-8.2) of the studies for the method and 6.3% for
    the side (seeds 0-399: 7.0% and 6.0%); with t(29), 5.7% (4.3-7.3) and 5.0% (3.7-6.5).
    Under a method effect (means 0.3 vs 0.7, seeds 0-399) the t(29) interval covered the
    logit pseudo-true coefficient in 93.3% and the side's interval covered 0 in 94.3%.
    """
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    who = "trust_ordinal"
    _require(df, ["participant", "method", "score_stronger", "model_left"], who)
    rows = _trials(df)
    rows = rows[rows["score_stronger"].notna() & rows["method"].notna() & rows["model_left"].notna()]
    if rows.empty:
        raise UserError(f"{who}: no trust answers with a score")
    score = rows["score_stronger"].astype("int64").to_numpy()
    method = rows["method"].astype(str).to_numpy()
    means = pd.Series(score, dtype=float).groupby(method).mean()
    if reference is None:
        reference = str(means.sort_index().idxmin())
    elif reference not in means.index:
        raise UserError(f"{who}: reference method {reference!r} has no answers")
    others = sorted(m for m in means.index if m != reference)
    exog = pd.DataFrame({f"method[{m}]": (method == m).astype(float) for m in others})
    left = rows["model_left"].astype(str).str.startswith("stronger").to_numpy()
    if left.all() or not left.any():
        raise UserError(f"{who}: the stronger model was always on the same side; the side is not estimable")
    exog["stronger_left"] = left.astype(float)
    # The observed scores only: a category nobody used (often -2) has no threshold to
    # estimate, and OrderedModel fails silently (coefficients 0, NaN SEs) if it is declared.
    observed = sorted(set(score.tolist()))
    if len(observed) < 2:
        raise UserError(f"{who}: every answer has the score {observed[0]}; an ordinal model needs two or more")
    endog = pd.Series(pd.Categorical(score, categories=observed, ordered=True))
    workers = pd.factorize(_worker_key(rows))[0]
    model = OrderedModel(endog, exog, distr="logit")
    kwargs: dict = {"method": "bfgs", "disp": False, "maxiter": 500}
    if cluster:
        kwargs.update(cov_type="cluster", cov_kwds={"groups": workers})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        res = model.fit(**kwargs)
    k = exog.shape[1]
    params = np.asarray(res.params)[:k]
    se = np.asarray(res.bse)[:k]
    n_workers = int(workers.max() + 1)
    df_ref, crit, inference = _ordinal_reference(cluster, n_workers, len(score), len(np.asarray(res.params)), level)
    z = params / se
    p_value = 2 * (stats.t.sf(np.abs(z), df_ref) if cluster else stats.norm.sf(np.abs(z)))
    out = pd.DataFrame(
        {
            "term": list(exog.columns),
            "coef": params,
            "se": se,
            "ci_low": params - crit * se,
            "ci_high": params + crit * se,
            "z": z,
            "df": df_ref,
            "p_value": p_value,
            "odds_ratio": np.exp(params),
        }
    )
    out.attrs.update(
        {
            "reference": reference,
            "categories": observed,
            "thresholds": model.transform_threshold_params(np.asarray(res.params))[1:-1],
            "n_answers": len(score),
            "n_workers": n_workers,
            "inference": inference,
            "converged": bool(res.mle_retvals.get("converged", True)),
        }
    )
    return out[ORDINAL_COLUMNS]


def _ordinal_reference(
    cluster: bool, n_workers: int, n_answers: int, n_params: int, level: float
) -> tuple[float, float, str]:
    """(df, critical value, description) of :func:`trust_ordinal`'s tests and intervals.

    statsmodels' cluster covariance already carries the CR1 factor G / (G - 1) (N - 1) /
    (N - K) (``use_correction=True``), so only the reference changes: t with G - 1 df, as
    :func:`cluster_t_reference` gives. The model-based covariance keeps the normal
    reference (df infinite).
    """
    if not cluster:
        return math.inf, float(stats.norm.ppf(1 - (1 - level) / 2)), "model-based standard errors; normal reference"
    _, df_ref, crit = cluster_t_reference(n_workers, level)
    return (
        df_ref,
        crit,
        (
            f"cluster-robust standard errors by worker (CR1: G/(G-1) (N-1)/(N-K), "
            f"G = {n_workers} workers, N = {n_answers} answers, K = {n_params} parameters); "
            f"Wald tests and intervals against t with {n_workers - 1} df"
        ),
    )


def report_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The clustered tables the report shows, for the task of ``df`` (the analysed answers).

    A kind scored right or wrong (class discrimination): GEE pairwise method comparisons
    (clustered by worker, Holm) and the crossed worker x image mixed model. A scale kind
    (trust): one-sample and paired tests per method (Holm) and the ordinal model with the
    stronger model's side.
    """
    if len(df) and is_scale(df["study_kind"].iloc[0]):
        tests = trust_tests(df)
        return {
            "trust_one_sample": tests["one_sample"],
            "trust_pairwise": tests["pairwise"],
            "trust_ordinal": trust_ordinal(df),
        }
    return {
        "gee_method_comparisons": method_comparisons_gee(df),
        "mixed_model_method_effects": method_comparisons_mixed(df),
    }
