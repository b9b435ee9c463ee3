"""Clustered method comparisons, trust tests and power, on simulated exports with known effects.

The simulators (analysis/simulate.py) fix the *marginal* accuracies and mean scores, so the
population-averaged (GEE) odds ratios have a known true value, and the conditional (mixed
model) effects can be computed from the simulator's intercepts. Every simulation has a fixed
seed; the tolerances are ones that hold for most seeds (measured when written).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import norm

from analysis.power import (
    add_power_parser,
    n_per_group_two_proportions,
    n_trust_one_sample,
    run_power,
)
from analysis.significance import (
    method_comparisons_gee,
    method_comparisons_mixed,
    trust_ordinal,
    trust_tests,
)
from analysis.simulate import (
    marginal_logit_intercept,
    simulate_class_discrimination,
    simulate_trust,
)
from camstudy.errors import UserError

# The Grad-CAM paper's class-discrimination accuracies (Table 1) and trust means (GB, GGC).
PAPER = {"guided_gradcam": 0.6123, "guided_backprop": 0.4444, "deconvnet": 0.5333, "deconv_gradcam": 0.6037}
TRUST = {"guided_backprop": 1.0, "guided_gradcam": 1.27}
SD = 0.5  # worker_sd = image_sd


def odds(p: float) -> float:
    return p / (1 - p)


@pytest.fixture(scope="module")
def paper() -> pd.DataFrame:
    return simulate_class_discrimination(60, 40, PAPER, worker_sd=SD, image_sd=SD, seed=2017, design="within")


@pytest.fixture(scope="module")
def trust() -> pd.DataFrame:
    return simulate_trust(60, 30, TRUST, worker_sd=0.5, seed=2017)


def test_gee_finds_ggc_vs_gb_and_covers_the_marginal_or(paper):
    g = method_comparisons_gee(paper)
    assert len(g) == 6 and g.attrs["reference"] == "guided_backprop"
    assert g.attrs["n_answers"] == 60 * 40 and g.attrs["n_workers"] == 60
    row = g[(g["method_a"] == "guided_gradcam") & (g["method_b"] == "guided_backprop")].iloc[0]
    assert row["significant"] and row["p_holm"] < 1e-3
    # GEE estimates the population-averaged OR, which is exactly the simulator's marginal OR
    # (the method terms saturate the method means; the role has no effect). In 60 seeds the
    # 95% interval covered it 60 times, so containment is the check, not a loose tolerance.
    true_or = odds(PAPER["guided_gradcam"]) / odds(PAPER["guided_backprop"])
    assert row["ci_low"] <= true_or <= row["ci_high"]
    assert row["odds_ratio"] == pytest.approx(math.exp(row["log_or"]))
    # Holm: adjusted p at least the raw p, and monotone in the raw p.
    assert (g["p_holm"] >= g["p_value"] - 1e-15).all()
    s = g.sort_values("p_value")
    assert s["p_holm"].is_monotonic_increasing
    assert g["model"].str.contains("clustered by worker only").all()


def test_gee_contrasts_do_not_depend_on_the_reference(paper):
    a = method_comparisons_gee(paper)
    b = method_comparisons_gee(paper, reference="guided_gradcam")
    assert b.attrs["reference"] == "guided_gradcam"
    pd.testing.assert_frame_equal(a.drop(columns="model"), b.drop(columns="model"), rtol=1e-4)
    with pytest.raises(UserError, match="reference"):
        method_comparisons_gee(paper, reference="nope")


def test_gee_false_positive_rate_under_the_null():
    # All methods at 0.5: Holm keeps the family-wise error at 5% if the model's SEs were
    # right. GEE ignores the image effect and the sandwich SE is a little small with 60
    # clusters, so the real rate is somewhat above 5% (about 10% in 60 seeds when written).
    # 3 of 20 (15%) allows for that and for binomial noise in 20 runs (P(>= 4 of 20) is
    # 1.6% at a true 5%, 13% at 10%; the seeds here are fixed, with 1 hit).
    null = {m: 0.5 for m in PAPER}
    hits = sum(
        bool(
            method_comparisons_gee(
                simulate_class_discrimination(60, 40, null, worker_sd=SD, image_sd=SD, seed=1000 + s, design="within")
            )["significant"].any()
        )
        for s in range(20)
    )
    assert hits <= 3


def test_mixed_model_orders_the_methods(paper):
    m = method_comparisons_mixed(paper).set_index("method")
    assert m.attrs["reference"] == "guided_backprop"
    eff = m["log_odds"]
    # GGC and DGC differ by 0.009 in accuracy: not separable with 2,400 answers.
    assert 0 < eff["deconvnet"] < min(eff["guided_gradcam"], eff["deconv_gradcam"])
    # The conditional effects the simulator used: b(p) solved for the total random SD.
    s = math.hypot(SD, SD)
    b = {k: marginal_logit_intercept(p, s) for k, p in PAPER.items()}
    for k in ("deconvnet", "guided_gradcam", "deconv_gradcam"):
        true = b[k] - b["guided_backprop"]
        assert abs(eff[k] - true) < 3 * m.loc[k, "posterior_sd"], k  # VB SDs run small: 3, not 2
    assert 0.2 < m.attrs["worker_sd"] < 1.0 and 0.2 < m.attrs["image_sd"] < 1.0
    assert (m["or_low"] < m["odds_ratio"]).all() and (m["odds_ratio"] < m["or_high"]).all()
    assert m["model"].str.contains("variational Bayes").all()


def test_trust_tests(trust):
    r = trust_tests(trust)
    one = r["one_sample"].set_index("method")
    assert (one["wilcoxon_p_holm"] < 1e-6).all() and (one["t_p_holm"] < 1e-6).all()
    assert one.loc["guided_gradcam", "worker_mean"] == pytest.approx(1.27, abs=0.15)
    pair = r["pairwise"].iloc[0]
    assert (pair["method_a"], pair["method_b"]) == ("guided_backprop", "guided_gradcam")
    assert pair["n_workers"] == 60
    assert pair["mean_diff"] == pytest.approx(1.0 - 1.27, abs=0.15)
    assert pair["t_p_holm"] < 0.05 and pair["wilcoxon_p_holm"] < 0.05


def test_trust_pairs_use_the_workers_who_rated_both(trust):
    rows = trust[~trust["is_attention_check"]]
    workers = rows["participant"].unique()
    # Drop one method's answers for 10 workers: their pair is skipped, not imputed.
    drop = rows["participant"].isin(workers[:10]) & (rows["method"] == "guided_gradcam")
    pair = trust_tests(rows[~drop])["pairwise"].iloc[0]
    assert pair["n_workers"] == 50


def test_trust_ordinal_side_is_null_when_counterbalanced(trust):
    o = trust_ordinal(trust).set_index("term")
    assert list(o.index) == ["method[guided_gradcam]", "stronger_left"]
    assert o.attrs["converged"] and len(o.attrs["thresholds"]) == 4
    assert o.loc["method[guided_gradcam]", "coef"] > 0 and o.loc["method[guided_gradcam]", "p_value"] < 1e-3
    assert o.loc["stronger_left", "p_value"] > 0.05
    assert o.loc["stronger_left", "ci_low"] < 0 < o.loc["stronger_left", "ci_high"]


def test_trust_ordinal_sees_a_side_bias(trust):
    # A worker who always moves one step towards the left side: score_stronger +1 when the
    # stronger model is on the left, -1 when it is on the right (clipped to -2..2).
    t = trust.copy()
    trial = ~t["is_attention_check"]
    left = t["model_left"].str.startswith("stronger")
    shift = np.where(left, 1, -1)
    t.loc[trial, "score_stronger"] = (t.loc[trial, "score_stronger"].astype("int64") + shift[trial]).clip(-2, 2)
    o = trust_ordinal(t).set_index("term")
    assert o.loc["stronger_left", "coef"] > 0 and o.loc["stronger_left", "p_value"] < 1e-6


def test_power_two_proportions_by_hand():
    h = 2 * math.asin(math.sqrt(0.6123)) - 2 * math.asin(math.sqrt(0.4444))
    assert h == pytest.approx(0.33796, abs=1e-5)
    # Two groups: var(2 asin sqrt(p_hat)) = 1/n each, so n = 2 ((z_{a/2} + z_b) / h)^2.
    n = 2 * ((norm.ppf(0.975) + norm.ppf(0.8)) / h) ** 2
    r = n_per_group_two_proportions(0.6123, 0.4444)
    assert r.h == pytest.approx(h)
    assert abs(r.n_exact - n) < 1 and r.answers_per_group == math.ceil(r.n_exact) == 138
    c = n_per_group_two_proportions(0.6123, 0.4444, answers_per_worker=20, icc=0.05)
    assert c.design_effect == pytest.approx(1 + 19 * 0.05)
    assert c.workers_per_group == math.ceil(c.n_exact * 1.95 / 20) == 14
    assert c.answers_per_group_clustered == math.ceil(c.n_exact * 1.95)
    assert n_per_group_two_proportions(0.4444, 0.6123).n_exact == pytest.approx(r.n_exact)


def test_power_trust_one_sample():
    t = n_trust_one_sample(1.0, 1.2)
    assert t.d == pytest.approx(1 / 1.2)
    # The t-test needs more than the normal approximation ((z_{a/2} + z_b) / d)^2 ...
    z = ((norm.ppf(0.975) + norm.ppf(0.8)) / t.d) ** 2
    assert z < t.n_exact < z + 3 and t.workers == math.ceil(t.n_exact) == 14
    # ... and has exactly the power asked at n: P(|T| > t_crit), T noncentral t(n - 1, d sqrt(n)).
    n = t.n_exact
    crit = stats.t.ppf(0.975, n - 1)
    power = stats.nct.sf(crit, n - 1, t.d * math.sqrt(n)) + stats.nct.cdf(-crit, n - 1, t.d * math.sqrt(n))
    assert power == pytest.approx(0.8, abs=1e-6)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camstudy")
    add_power_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_power_cli(capsys):
    args = _parser().parse_args(
        ["power", "accuracy", "--p1", "0.6123", "--p2", "0.4444", "--answers-per-worker", "20", "--icc", "0.05"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "workers per group" in out and "14" in out and "1.950" in out
    args = _parser().parse_args(["power", "trust", "--mean", "1.0", "--sd", "1.2"])
    assert run_power(args) == 0
    assert "workers" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["accuracy", "--p1", "1.2", "--p2", "0.4"], "p1 must be in"),
        (["accuracy", "--p1", "0.6", "--p2", "0"], "p2 must be in"),
        (["accuracy", "--p1", "0.6", "--p2", "0.4", "--power", "1"], "power must be in"),
        (["accuracy", "--p1", "0.6", "--p2", "0.4", "--icc", "-0.1"], "icc"),
        (["accuracy", "--p1", "0.6", "--p2", "0.4", "--answers-per-worker", "0"], "answers per worker"),
        (["accuracy", "--p1", "0.5", "--p2", "0.5"], "differ"),
        (["trust", "--mean", "1", "--sd", "0"], "sd must be positive"),
        (["trust", "--mean", "1", "--sd", "1", "--alpha", "0"], "alpha must be in"),
    ],
)
def test_power_cli_errors(argv, match):
    args = _parser().parse_args(["power", *argv])
    with pytest.raises(UserError, match=match) as e:
        run_power(args)
    assert "\n" not in str(e.value)
