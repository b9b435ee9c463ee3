"""Coverage of the clustered intervals on simulated studies with worker and image variation.

The accuracy tables' ``ci_low, ci_high`` and the trust summary's must hold when answers are
clustered by worker and by image (``analysis/clustered.py``). Each test simulates a few
hundred studies with fixed seeds (so every count is deterministic), computes the tables as
the report does, and counts how often the interval holds the true (configured, marginal)
value. Required: at least 93% for the clustered intervals; the intervals that ignore the
clustering (Wilson; the t interval over answers) are shown to miss far more often, so these
tests would fail for an interval that ignored the clustering. The figures (with Monte Carlo
95% CIs) are printed (``pytest -s``) and recorded in docs/analysis.md, "Why this interval";
1000-study runs of the same designs are there too.

A note on the Monte Carlo CIs: intervals of one study share its workers and images, so the
printed Wilson CI over intervals is a little too narrow; the 1000-study figures in the docs
are the better estimates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.accuracy import accuracy, trust_summary
from analysis.simulate import simulate_class_discrimination, simulate_trust
from analysis.stats import wilson_ci

# The Grad-CAM paper's class-discrimination accuracies (Table 1) and trust means.
PAPER = {"guided_gradcam": 0.6123, "guided_backprop": 0.4444, "deconvnet": 0.5333, "deconv_gradcam": 0.6037}
TRUST = {"guided_gradcam": 1.27, "guided_backprop": 0.42, "deconvnet": -0.1}
N_STUDIES = 200
# The accuracy tables get more studies: the model-role table has only two (strongly
# correlated: same workers and images) intervals per study, so 200 studies estimate its
# coverage to about +-3%; 500 studies to about +-2% (1000 studies: 95.0%).
N_ACCURACY_STUDIES = 500
REQUIRED = 0.93


def _rate(hits: int, n: int, what: str) -> float:
    low, high = wilson_ci(hits, n)
    print(f"{what}: {hits}/{n} = {hits / n:.1%} (Monte Carlo 95% CI {low:.1%}-{high:.1%})")
    return hits / n


def _covers(low, high, true) -> int:
    low, high, true = (np.asarray(x, dtype=float) for x in (low, high, true))
    return int(((low <= true) & (true <= high)).sum())


def test_accuracy_intervals_cover_under_worker_and_image_clustering():
    """500 between-design studies: 4 methods x 30 workers x 20 trials (120 workers), the
    simulator's default worker and image SDs (0.5 and 0.5 on the logit scale), 100 images."""
    role_truth = float(np.mean(list(PAPER.values())))  # equal workers per method, roles balanced
    counts = {k: 0 for k in ("method", "method_wilson", "both", "both_wilson", "role", "role_wilson")}
    totals = {"method": 0, "both": 0, "role": 0}
    for s in range(N_ACCURACY_STUDIES):
        df = simulate_class_discrimination(120, 20, PAPER, seed=30_000 + s, design="between")
        for name, by in (("method", ["method"]), ("both", ["method", "model_role"]), ("role", ["model_role"])):
            t = accuracy(df, by)
            true = t["method"].map(PAPER) if "method" in by else pd.Series(role_truth, index=t.index)
            counts[name] += _covers(t["ci_low"], t["ci_high"], true)
            counts[f"{name}_wilson"] += _covers(t["wilson_low"], t["wilson_high"], true)
            totals[name] += len(t)
            # The score test against chance rejects exactly when the interval excludes chance.
            excludes = (t["ci_low"] > 0.5) | (t["ci_high"] < 0.5)
            assert (excludes == (t["p_value"] < 0.05)).all()
            assert t["ci_method"].str.startswith("two-way cluster-robust").all()
    n = N_ACCURACY_STUDIES
    assert totals == {"method": 4 * n, "both": 8 * n, "role": 2 * n}
    for name, what in (("method", "per method"), ("both", "per method and model role"), ("role", "per model role")):
        clustered = _rate(counts[name], totals[name], f"clustered coverage {what}")
        wilson = _rate(counts[f"{name}_wilson"], totals[name], f"Wilson coverage {what}")
        assert clustered >= REQUIRED, (name, clustered)
        assert wilson < clustered
    # Evidence that the test can fail: the interval that ignores the clustering falls well short.
    assert counts["method_wilson"] / totals["method"] < 0.90


def test_accuracy_test_against_chance_keeps_its_size():
    """The clustered score test (p_value) under the null: 200 studies of the same design with
    every method at chance; rejections must stay inside the central 95% binomial band around
    5% (the exact binomial test, binom_p, is printed beside it: it rejects far more often)."""
    clustered = binomial = total = 0
    for s in range(N_STUDIES):
        df = simulate_class_discrimination(120, 20, dict.fromkeys(PAPER, 0.5), seed=40_000 + s, design="between")
        t = accuracy(df, "method")
        clustered += int((t["p_value"] < 0.05).sum())
        binomial += int((t["binom_p"] < 0.05).sum())
        total += len(t)
    low, high = (int(stats.binom.ppf(q, total, 0.05)) for q in (0.025, 0.975))
    print(f"binomial 95% band for {total} tests at 5%: {low}..{high}")
    _rate(clustered, total, "clustered score test rejections under the null")
    _rate(binomial, total, "exact binomial test rejections under the null")
    assert low <= clustered <= high, clustered
    assert binomial > high  # the test that ignores the clustering is anti-conservative here


def test_trust_mean_intervals_cover_under_worker_and_image_clustering():
    """200 within-design trust studies: 60 workers x 24 trials, 3 methods, worker SD 0.5
    (the simulator's default) and image SD 0.5 on the latent scale, 100 images."""
    clustered = worker_t = iid = total = 0
    for s in range(N_STUDIES):
        df = simulate_trust(60, 24, TRUST, seed=50_000 + s, image_sd=0.5)
        t = trust_summary(df)
        true = t["method"].map(TRUST)
        clustered += _covers(t["ci_low"], t["ci_high"], true)
        worker_t += _covers(t["worker_t_low"], t["worker_t_high"], true)
        n = t["n_answers"].to_numpy()
        half = stats.t.ppf(0.975, n - 1) * t["sd"].to_numpy() / np.sqrt(n)
        iid += _covers(t["mean"] - half, t["mean"] + half, true)
        total += len(t)
        assert t["ci_method"].str.startswith("two-way cluster-robust").all()
    rate = _rate(clustered, total, "clustered coverage of the trust mean")
    _rate(worker_t, total, "t interval of the per-worker means (ignores images)")
    naive = _rate(iid, total, "t interval over answers (ignores all clustering)")
    assert rate >= REQUIRED, rate
    assert naive < 0.90  # evidence that the test can fail
