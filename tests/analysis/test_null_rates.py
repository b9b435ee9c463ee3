"""False-positive rates of the significance tests on null simulations (issue 13).

Each test simulates ``N_STUDIES`` studies with no effect (fixed seeds, so every count is
deterministic), runs one test per study at alpha = 0.05 and checks that the number of
rejections lies inside the central 95% binomial band around 5% for that many studies
(``scipy.stats.binom``: the 2.5% and 97.5% quantiles of Binomial(N_STUDIES, 0.05); printed
by :func:`band`). A test that is liberal by a few points fails this rarely with 200
studies, so the long sweeps that set the corrections are quoted at each test (run once
when written, binomial 95% CIs in brackets), and these short runs guard against a
regression to a clearly wrong reference or covariance.

Design of every study: 30 workers x 20 trials, worker SD 0.5 (and image SD 0.5 for class
discrimination), no attention failures; except the trust test against 0 under image
variation, which runs 1000 studies of the coverage test's trust design (60 workers x 24
trials, 3 methods, worker and image SD 0.5, 100 images). Runtime about 60 s on one core.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
from scipy import stats

from analysis.accuracy import trust_summary
from analysis.significance import method_comparisons_gee, trust_ordinal, trust_tests
from analysis.simulate import simulate_class_discrimination, simulate_trust

N_STUDIES = 200
ALPHA = 0.05
W, T, SD = 30, 20, 0.5


def band(n: int = N_STUDIES, rate: float = ALPHA) -> tuple[int, int]:
    """The central 95% range of the rejection count out of ``n`` studies at a true ``rate``."""
    low, high = (int(stats.binom.ppf(q, n, rate)) for q in (0.025, 0.975))
    print(f"binomial 95% band for {n} studies at {rate:.0%}: {low}..{high} rejections")
    return low, high


def assert_in_band(hits: int, what: str, n: int = N_STUDIES) -> None:
    low, high = band(n)
    print(f"{what}: {hits} of {n} ({hits / n:.1%})")
    assert low <= hits <= high, f"{what}: {hits} rejections of {n}, outside {low}..{high}"


def quiet():
    """One BLAS thread (the small fits are slower threaded on a busy machine) and no
    convergence chatter from the optimizers."""
    stack = contextlib.ExitStack()
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(1))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def test_band_is_the_binomial_range_around_five_percent():
    assert band(200) == (4, 16)
    assert band(1000) == (37, 64)


@pytest.fixture(scope="module")
def ordinal_fits() -> list:
    with quiet():
        return [
            trust_ordinal(simulate_trust(W, T, {"a": 0.5, "b": 0.5}, worker_sd=SD, seed=seed), reference="a").set_index(
                "term"
            )
            for seed in range(N_STUDIES)
        ]


def test_ordinal_method_effect_is_calibrated(ordinal_fits):
    # Sweep when written, seeds 0-999: CR1 errors with a normal reference rejected in 6.5%
    # [5.1, 8.2] (7.0% for seeds 0-399); with the t(G - 1 = 29) reference now used, 5.7%
    # [4.3, 7.3]. These seeds: 11 (normal reference: 13).
    assert all(f.attrs["converged"] for f in ordinal_fits)
    assert all(f.loc["method[b]", "df"] == W - 1 for f in ordinal_fits)
    assert_in_band(sum(f.loc["method[b]", "p_value"] < ALPHA for f in ordinal_fits), "ordinal method")


def test_ordinal_side_term_is_calibrated(ordinal_fits):
    # Sides are counterbalanced and the simulator has no side effect. Seeds 0-999: 6.3%
    # [4.9, 8.0] with the normal reference, 5.0% [3.7, 6.5] with t(29). These seeds: 9
    # (normal: 12).
    assert_in_band(sum(f.loc["stronger_left", "p_value"] < ALPHA for f in ordinal_fits), "ordinal side")


def test_ordinal_interval_agrees_with_its_test(ordinal_fits):
    # The interval uses the test's critical value, so "excludes 0" and "p < alpha" agree.
    for f in ordinal_fits[:20]:
        excludes = (f["ci_low"] > 0) | (f["ci_high"] < 0)
        assert (excludes == (f["p_value"] < ALPHA)).all()


def test_gee_method_comparison_is_calibrated():
    # Between design (each worker sees one method: 15 workers per method), equal accuracies,
    # worker and image SD 0.5. Sweep when written, seeds 0-999: the plain sandwich with a
    # normal reference rejected in 5.8% [4.4, 7.4]; with the CR1 factor and t(29), 4.9%
    # [3.6, 6.4]. With 60 x 40 (each image seen about 24 times, where the ignored image
    # effect weighs more), 400 seeds: 6.8% [4.5, 9.7] before, 6.0% [3.9, 8.8] after. These
    # seeds: 7 (before: 7).
    hits = 0
    with quiet():
        for seed in range(N_STUDIES):
            df = simulate_class_discrimination(
                W, T, {"a": 0.5, "b": 0.5}, worker_sd=SD, image_sd=SD, seed=seed, design="between"
            )
            g = method_comparisons_gee(df)
            assert g["df"].iloc[0] == W - 1
            hits += bool(g["p_value"].iloc[0] < ALPHA)
    assert_in_band(hits, "GEE method pair")


@pytest.fixture(scope="module")
def trust_null() -> list[dict]:
    with quiet():
        return [
            trust_tests(simulate_trust(W, T, {"a": 0.0, "b": 0.0}, worker_sd=SD, seed=seed))
            for seed in range(N_STUDIES)
        ]


@pytest.mark.parametrize("column", ["wilcoxon_p", "t_p", "p_value"])
def test_trust_one_sample_tests_are_calibrated(trust_null, column):
    # Per-worker mean scores of one method at a true mean of 0 (raw p: one method's test);
    # p_value: the clustered test of the mean over answers (images do not differ here).
    one = [r["one_sample"].set_index("method").loc["a", column] for r in trust_null]
    assert_in_band(sum(p < ALPHA for p in one), f"one-sample {column}")


@pytest.mark.parametrize("column", ["wilcoxon_p", "t_p"])
def test_trust_paired_tests_are_calibrated(trust_null, column):
    # Two methods with the same mean: the paired test over the workers who rated both.
    pairs = [r["pairwise"].iloc[0][column] for r in trust_null]
    assert_in_band(sum(p < ALPHA for p in pairs), f"paired {column}")


IMAGE_STUDIES = 1000


def test_trust_clustered_test_against_zero_keeps_its_size_when_images_differ():
    # The trust summary's p_value (the two-way cluster-robust t test of the mean, the test of
    # its interval) with workers rating shared images whose effects differ (image SD 0.5 on the
    # latent scale, as in test_coverage.py; 60 workers x 24 trials over 3 methods at a true
    # mean of 0, about 14 answers per image): one method's raw p per study. The per-worker
    # Wilcoxon and t tests ignore the shared image effects and reject too often here; their
    # rates are printed, and they must lie above the band (evidence that the check can fail).
    # Measured when written, these seeds (80000-80999): p_value 46 (4.6%), wilcoxon_p 95
    # (9.5%), t_p 96 (9.6%); 4000 other seeds (100000-103999): see docs/analysis.md.
    hits = dict.fromkeys(("p_value", "wilcoxon_p", "t_p"), 0)
    with quiet():
        for seed in range(IMAGE_STUDIES):
            df = simulate_trust(60, 24, dict.fromkeys("abc", 0.0), worker_sd=SD, image_sd=SD, seed=80_000 + seed)
            t = trust_summary(df)
            assert t["ci_method"].str.startswith("two-way cluster-robust").all()
            # p_value < alpha exactly when the 95% interval excludes 0.
            assert (((t["ci_low"] > 0) | (t["ci_high"] < 0)) == (t["p_value"] < ALPHA)).all()
            row = t.set_index("method").loc["a"]
            for column in hits:
                hits[column] += bool(row[column] < ALPHA)
    low, high = band(IMAGE_STUDIES)
    for column in ("wilcoxon_p", "t_p"):
        print(
            f"one-sample {column} (ignores images): {hits[column]} of {IMAGE_STUDIES} ({hits[column] / IMAGE_STUDIES:.1%})"
        )
    assert_in_band(hits["p_value"], "one-sample clustered p_value (images differ)", IMAGE_STUDIES)
    assert hits["wilcoxon_p"] > high and hits["t_p"] > high, hits
