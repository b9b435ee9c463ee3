"""Seed sweeps for the mixed model and the ordinal trust model (issue 5): under a null
simulation the rate of "significant" differences at 5%, and under a known effect the
coverage of the simulator's true value by the model's 95% interval.

The seeds are fixed, so every count below is deterministic; the bounds come from a binomial
calculation (stated at each test) on rates measured over long sweeps (hundreds of seeds, run
once when written, 30 workers x 20 trials, worker_sd = image_sd = 0.5), so they hold for any
reasonable run of seeds, not only for these. Small studies keep each fit well under a second.

BLAS threads: the variational fit (BFGS on a few hundred parameters) spends most of its time
in small matrix products, which are about 5x slower when OpenBLAS spreads them over threads
on a busy 2-core machine, so the fits run with one BLAS thread where threadpoolctl is
installed.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pytest
from scipy import optimize, special
from scipy.stats import norm

from analysis.significance import method_comparisons_mixed, trust_ordinal
from analysis.simulate import (
    marginal_logit_intercept,
    ordinal_location,
    simulate_class_discrimination,
    simulate_trust,
)

SD = 0.5  # worker_sd = image_sd (class discrimination), worker_sd (trust)
W, T = 30, 20  # workers x trials per worker
THRESHOLDS = (-1.5, -0.5, 0.5, 1.5)  # simulate_trust's default cut points


def one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - an optional speed-up only
        return contextlib.nullcontext()
    return threadpool_limits(1)


def mixed_sweep(accuracy: dict[str, float], seeds: range) -> list[dict]:
    """``method_comparisons_mixed`` of "b" against "a" on a within-worker simulation per seed."""
    rows = []
    with one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in seeds:
            df = simulate_class_discrimination(W, T, accuracy, worker_sd=SD, image_sd=SD, seed=seed, design="within")
            rows.append(method_comparisons_mixed(df, reference="a").iloc[0].to_dict())
    return rows


def ordinal_sweep(means: dict[str, float], seeds: range) -> list:
    """``trust_ordinal`` (cluster-robust, reference "a") per seed, indexed by term."""
    fits = []
    with one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in seeds:
            fits.append(
                trust_ordinal(simulate_trust(W, T, means, worker_sd=SD, seed=seed), reference="a").set_index("term")
            )
    return fits


def logit_pseudo_true(
    means: tuple[float, float], worker_sd: float = SD, thresholds: tuple[float, ...] = THRESHOLDS
) -> float:
    """The method coefficient that ``trust_ordinal`` estimates, for ``simulate_trust``.

    The simulator is an ordinal *probit* with a worker effect: marginally the latent score
    is N(mu_m, s^2), s = sqrt(1 + worker_sd^2), so P(score <= k) = Phi((t_k - mu_m) / s)
    exactly (mu_m from ``ordinal_location``); the probit coefficient would be
    (mu_b - mu_a) / s. ``trust_ordinal`` fits a *logit* model with no worker effect, so it
    estimates the logit model closest (in Kullback-Leibler terms) to those marginal
    probabilities, the maximizer of the expected log-likelihood over the balanced design:
    that is computed here (4 thresholds + 1 slope). The side has no effect in the simulator
    and the side term's pseudo-true value is 0 (the expected log-likelihood is concave and
    symmetric in it). Check when written: 0.5445 for means (1.0, 1.27), and a fit of
    3,000 workers x 40 trials gave 0.547 (SE 0.010).
    """
    s = math.hypot(1.0, worker_sd)
    t = np.asarray(thresholds, dtype=float)
    mu = np.array([ordinal_location(m, s, thresholds) for m in means])
    cdf = np.column_stack([np.zeros(2), norm.cdf((t[None, :] - mu[:, None]) / s), np.ones(2)])
    p = np.diff(cdf, axis=1)  # (method, category) true marginal probabilities

    def nll(theta: np.ndarray) -> float:
        cuts = np.cumsum(np.r_[theta[0], np.exp(theta[1:4])])
        shift = np.array([0.0, theta[4]])
        q = special.expit(cuts[None, :] - shift[:, None])
        q = np.diff(np.column_stack([np.zeros(2), q, np.ones(2)]), axis=1)
        return float(-(p * np.log(q)).sum())

    res = optimize.minimize(nll, np.array([-2.0, 0.0, 0.0, 0.0, 0.0]), method="BFGS", options={"gtol": 1e-10})
    return float(res.x[4])


def test_logit_pseudo_true_is_zero_under_the_null_and_about_1_7_probit_units():
    assert logit_pseudo_true((0.5, 0.5)) == pytest.approx(0.0, abs=1e-6)
    s = math.hypot(1.0, SD)
    probit = (ordinal_location(0.7, s, THRESHOLDS) - ordinal_location(0.3, s, THRESHOLDS)) / s
    assert logit_pseudo_true((0.3, 0.7)) == pytest.approx(0.6726, abs=1e-3)
    assert 1.5 < logit_pseudo_true((0.3, 0.7)) / probit < 1.8  # the usual logit/probit ratio


# --- the crossed worker x image mixed model (variational Bayes) --------------------------------


def test_mixed_model_null_interval_excludes_zero_too_often_as_documented():
    # Known property (documented in method_comparisons_mixed): the mean-field VB posterior
    # SD is too small, so "significant" (the 95% interval excludes 0) happens far more often
    # than 5% under the null. Measured when written, two methods at 0.5, within design,
    # 30 x 20: 33 of 200 seeds (16.5%); the spread of the estimates over seeds was 0.176,
    # the mean posterior SD 0.122 (ratio 0.69, so a nominal z of 1.96 is really about 1.36:
    # P(|Z| > 1.36) = 17%). With the between design (the app's default) it is worse: 29 of
    # 100 seeds, estimate spread 0.243 vs posterior SD 0.122 (ratio 0.50).
    #
    # The bound is set to the measured rate, not to 5%: with 16 seeds, P(X >= 7) is 0.95%
    # at a true 16.5% (so at most 6 hits), whereas at a nominal 5% P(X >= 3) would already
    # be 4.3%, and this model does not meet that. These seeds give 3 hits.
    rows = mixed_sweep({"a": 0.5, "b": 0.5}, range(16))
    hits = sum(r["ci_low"] > 0 or r["ci_high"] < 0 for r in rows)
    assert hits <= 6, hits
    # The point estimates are centred on the truth (0): mean over seeds within 3 SEs of it
    # (sampling SD 0.18 per seed, so |mean| < 0.135; these seeds: 0.10).
    est = np.array([r["log_odds"] for r in rows])
    assert abs(est.mean()) < 3 * 0.18 / math.sqrt(len(est))


def test_mixed_model_interval_covers_the_conditional_log_or_in_most_seeds():
    # The mixed model estimates the *conditional* log odds ratio (for a given worker and
    # image): the difference of the simulator's intercepts b(p), solved so that the marginal
    # accuracy E[expit(b + s Z)], s = hypot(worker_sd, image_sd), is p. For the paper's
    # 0.6123 vs 0.4444 that is 0.756 (the marginal log OR, which GEE estimates, is 0.680).
    # Measured when written, 30 x 20 within: mean estimate 0.755 over 200 seeds (unbiased),
    # coverage 160 of 200 (80%: the VB intervals are too narrow, see the null test above).
    # With 16 seeds, P(X <= 9) is 2.7% at a true 80%, so at least 10 must cover. These seeds: 14.
    pa, pb = 0.6123, 0.4444
    s = math.hypot(SD, SD)
    true = marginal_logit_intercept(pa, s) - marginal_logit_intercept(pb, s)
    assert true == pytest.approx(0.7564, abs=1e-3)
    rows = mixed_sweep({"a": pb, "b": pa}, range(100, 116))
    covered = sum(r["ci_low"] <= true <= r["ci_high"] for r in rows)
    assert covered >= 10, covered
    est = np.array([r["log_odds"] for r in rows])
    assert abs(est.mean() - true) < 3 * 0.18 / math.sqrt(len(est))  # sampling SD 0.18 per seed


# --- the ordinal trust model (OrderedModel, cluster-robust by worker) --------------------------


def test_ordinal_false_positive_rate_for_method_and_side_under_the_null():
    # Two methods with the same mean score (0.5) and counterbalanced sides (the simulator
    # has no side effect). Measured (issue 13), 30 x 20, seeds 0-999, all converged: with
    # the CR1 errors and a normal reference, method p < 0.05 in 65 (6.5%), side in 63
    # (6.3%): too often; with the t(29) reference trust_ordinal now uses, 57 (5.7%) and 50
    # (5.0%); tests/analysis/test_null_rates.py checks 200 of them. With 40 seeds, at a true
    # 5% P(X >= 6) = 1.4% per term (at 6%: 3%), so at most 5 hits each. These seeds: 1 and 2.
    # A mean of 0.5 keeps all five score categories populated (about 20 answers of -2
    # expected per study); at the paper's means (1.0 to 1.27) some studies have no -2 at all,
    # and the fit must then use the observed categories only (the test below).
    fits = ordinal_sweep({"a": 0.5, "b": 0.5}, range(40))
    assert all(f.attrs["converged"] for f in fits)
    method_hits = sum(f.loc["method[b]", "p_value"] < 0.05 for f in fits)
    side_hits = sum(f.loc["stronger_left", "p_value"] < 0.05 for f in fits)
    assert method_hits <= 5, method_hits
    assert side_hits <= 5, side_hits


def test_ordinal_interval_covers_the_true_method_coefficient():
    # Means 0.3 vs 0.7: the logit pseudo-true coefficient is 0.673 (logit_pseudo_true).
    # Measured when written, 30 x 20, 500 seeds (normal reference): coverage 465 (93.0%),
    # mean estimate 0.684, spread 0.141 vs mean SE 0.138 (the SEs are right; the small
    # shortfall is the usual small-sample bias of the MLE away from 0). With the t(29)
    # interval (issue 13), seeds 0-399: 373 (93.3%) for the method, 377 (94.3%) of the side
    # intervals cover 0. With 40 seeds P(X <= 34) is 1.4% at a true 95% (5.8% at 93%), so
    # at least 35 must cover. These seeds: 39 (side: 39).
    true = logit_pseudo_true((0.3, 0.7))
    fits = ordinal_sweep({"a": 0.3, "b": 0.7}, range(40))
    assert all(f.attrs["converged"] for f in fits)
    covered = sum(f.loc["method[b]", "ci_low"] <= true <= f.loc["method[b]", "ci_high"] for f in fits)
    assert covered >= 35, covered
    side_covers_zero = sum(f.loc["stronger_left", "ci_low"] <= 0 <= f.loc["stronger_left", "ci_high"] for f in fits)
    assert side_covers_zero >= 35, side_covers_zero


# Found by the seed sweep: with a category nobody used (no -2 answers; about 7% of 30 x 20
# studies at the paper's means 1.0 / 1.27) the fit failed silently (converged False,
# coefficients 0, SE NaN). trust_ordinal now fits the observed categories only.
def test_ordinal_fits_a_study_where_one_score_is_never_used():
    df = simulate_trust(W, T, {"a": 1.0, "b": 1.27}, worker_sd=SD, seed=25)
    trials = df[~df["is_attention_check"]]
    assert (trials["score_stronger"] == -2).sum() == 0  # the empty category
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        o = trust_ordinal(df, reference="a").set_index("term")
    assert o.attrs["converged"]
    assert np.isfinite(o["se"]).all() and o.loc["method[b]", "coef"] > 0
