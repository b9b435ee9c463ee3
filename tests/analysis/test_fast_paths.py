"""The analysis' fast paths against the slow/reference computations they replace.

Each fast path (count tables and matrix products for agreement and its bootstrap, per-cluster
sums for GEE, pyarrow parsing on load, integer codes for the exclusions, Holm without
statsmodels' gc.collect) must give the same numbers as the straightforward route: the
``krippendorff`` package per replicate, ``cohen_kappa`` per pair, statsmodels ``GEE`` and
``multipletests``, pandas' parsers and groupby on the key columns.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.agreement import (
    _alpha_replicates,
    agreement_table,
    bootstrap_ci,
    fleiss_kappa,
    krippendorff_alpha,
    landis_koch,
)
from analysis.exclusions import KEY, apply_exclusions, participant_table
from analysis.load import _booleans, _datetimes, _fast_datetimes, _fast_numbers, _numbers
from analysis.significance import _design, _glm_start, gee_exchangeable, method_comparisons_gee
from analysis.simulate import simulate_class_discrimination, simulate_trust
from analysis.stats import holm
from camstudy.errors import UserError
from study.settings import Exclusions
from tests.analysis.naive import pairwise_cohen

PAPER = {"guided_gradcam": 0.6123, "guided_backprop": 0.4444, "deconvnet": 0.5333, "deconv_gradcam": 0.6037}
STR = pd.StringDtype("pyarrow", na_value=np.nan)  # a CSV column as load_export reads it


def _reliability(rng: np.random.Generator, raters: int, units: int, values: np.ndarray, missing: float) -> np.ndarray:
    data = rng.choice(values, size=(raters, units)).astype(float)
    data[rng.random(data.shape) < missing] = np.nan
    return data


# --------------------------------------------------------------------------------------
# Krippendorff's alpha and its bootstrap


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_replicates_equal_the_krippendorff_package(level, seed):
    """Every bootstrap replicate (count tables x draw counts) equals krippendorff.alpha of
    the resampled raters x units table."""
    import krippendorff

    rng = np.random.default_rng(seed)
    values = np.array([1.0, 2.0, 4.0, 5.0, 9.0])[: 3 + seed]
    data = _reliability(rng, raters=4 + seed, units=25, values=values, missing=0.3)
    data = data[:, (~np.isnan(data)).sum(axis=0) >= 2]
    domain = np.unique(data[~np.isnan(data)])
    draws = rng.integers(0, data.shape[1], size=(40, data.shape[1]))
    fast = _alpha_replicates(data, draws, level)
    for rep, idx in zip(fast, draws, strict=True):
        sample = data[:, idx]
        values_seen = np.unique(sample[~np.isnan(sample)])
        if values_seen.size < 2:
            assert math.isnan(rep)
            continue
        ref = krippendorff.alpha(reliability_data=sample, value_domain=domain, level_of_measurement=level)
        assert rep == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_bootstrap_ci_equals_the_per_replicate_package_route(level):
    rng = np.random.default_rng(11)
    data = _reliability(rng, raters=5, units=30, values=np.arange(1.0, 6.0), missing=0.25)
    data = data[:, (~np.isnan(data)).sum(axis=0) >= 2]
    domain = np.unique(data[~np.isnan(data)])
    fast = bootstrap_ci(data, level=level, n_boot=60, seed=4)
    slow = bootstrap_ci(data, lambda d: krippendorff_alpha(d, level, value_domain=domain), n_boot=60, seed=4)
    assert fast == pytest.approx(slow, abs=1e-9)


# --------------------------------------------------------------------------------------
# agreement_table against the pivot-and-loop route


def _reference_row(part: pd.DataFrame, column: str, level: str, min_shared: int, n_boot: int, seed: int) -> dict:
    """One method's agreement the slow way: pivot, Fleiss on the modal rater count,
    krippendorff.alpha on the raters x items table (bootstrap by calling it per replicate)
    and cohen_kappa on every pair's contingency table."""
    matrix = part.drop_duplicates(["item_id", "participant"]).pivot(
        index="item_id", columns="participant", values=column
    )
    seen = sorted(part[column].dropna().unique().tolist(), key=lambda v: (isinstance(v, str), v))
    numeric = all(isinstance(v, int | float) for v in seen)
    domain_values = list(range(int(min(seen)), int(max(seen)) + 1)) if level != "nominal" and numeric else seen
    code_of = {v: i for i, v in enumerate(domain_values)}
    codes = matrix.apply(lambda s: s.map(code_of)).astype(float).to_numpy()
    n_cat = len(domain_values)
    row = {
        "n_items": matrix.shape[0],
        "n_participants": matrix.shape[1],
        "n_answers": int(matrix.notna().to_numpy().sum()),
    }
    per_item = (~np.isnan(codes)).sum(axis=1)
    multi = per_item[per_item >= 2]
    freq = pd.Series(multi).value_counts()
    m = int(max(freq[freq == freq.max()].index))
    used = codes[per_item == m]
    counts = np.array([np.bincount(r[~np.isnan(r)].astype(int), minlength=n_cat) for r in used])
    fl = fleiss_kappa(counts)
    row |= {
        "fleiss_kappa": fl.kappa,
        "fleiss_z": fl.z,
        "fleiss_p": fl.p,
        "fleiss_n_items": len(used),
        "fleiss_n_raters": m,
    }
    values = codes if level == "nominal" else matrix.astype(float).to_numpy()
    domain = np.arange(n_cat, dtype=float) if level == "nominal" else np.asarray(domain_values, dtype=float)
    data = values.T[:, (~np.isnan(values.T)).sum(axis=0) >= 2]
    row["alpha"] = krippendorff_alpha(data, level, value_domain=domain)
    row["alpha_low"], row["alpha_high"] = bootstrap_ci(
        data,
        lambda d: krippendorff_alpha(d, level, value_domain=np.unique(data[~np.isnan(data)])),
        n_boot=n_boot,
        seed=seed,
    )
    weights = None if level == "nominal" else "linear"
    kappas = pairwise_cohen(codes, n_cat, weights, min_shared)
    row["cohen_kappa"], row["cohen_n_pairs"] = float(np.mean(kappas)), len(kappas)
    return row


def _long_answers(rng: np.random.Generator, values: list, n_items: int, n_workers: int) -> pd.DataFrame:
    rows = []
    for method in ("gc", "gb", "dn"):
        truth = rng.integers(0, len(values), size=n_items)
        for w in range(n_workers):
            for i in rng.choice(n_items, size=n_items * 2 // 3, replace=False):
                v = values[truth[i]] if rng.random() < 0.7 else values[rng.integers(0, len(values))]
                rows.append(
                    {
                        "method": method,
                        "item_id": f"{method}-{i:03d}",
                        "participant": f"w{w:02d}",
                        "answer": v,
                        "is_attention_check": bool(rng.random() < 0.03),
                    }
                )
    df = pd.DataFrame(rows)
    repeats = df.sample(15, random_state=1).assign(answer=values[0])  # repeated answers: first kept
    return pd.concat([df, repeats], ignore_index=True)


@pytest.mark.parametrize("kind", ["nominal", "ordinal"])
def test_agreement_table_equals_the_pivot_and_loop_route(kind):
    rng = np.random.default_rng(3 if kind == "nominal" else 4)
    if kind == "nominal":
        df = _long_answers(rng, ["cat", "dog", "cow", "bus"], n_items=18, n_workers=9)
    else:
        df = _long_answers(rng, [-2, -1, 0, 1, 2], n_items=18, n_workers=9)
        df["answer"] = df["answer"].astype("Int64")
        df["study_kind"] = "trust"
    df.loc[rng.random(len(df)) < 0.02, "answer"] = None  # missing ratings are left out
    table = agreement_table(df, min_shared=4, n_boot=40, seed=5).set_index("method")
    data = df[~df["is_attention_check"] & df["answer"].notna()]
    for method, part in data.groupby("method"):
        ref = _reference_row(part, "answer", kind, min_shared=4, n_boot=40, seed=5)
        got = table.loc[method]
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (method, key)
        assert got["alpha_label"] == landis_koch(ref["alpha"])


# --------------------------------------------------------------------------------------
# GEE


def _statsmodels_gee(y, X, groups, family):
    import statsmodels.api as sm

    model = sm.GEE(y, X, groups=groups, family=family, cov_struct=sm.cov_struct.Exchangeable())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    return res, model.cov_struct.dep_params


@pytest.mark.parametrize("case", ["binary_categorical", "binary_continuous", "poisson", "gaussian"])
def test_gee_exchangeable_equals_statsmodels(case):
    import statsmodels.api as sm

    rng = np.random.default_rng({"binary_categorical": 0, "binary_continuous": 1, "poisson": 2, "gaussian": 3}[case])
    n_groups = 40
    sizes = rng.integers(1, 30, size=n_groups)
    groups = rng.permutation(np.repeat(np.arange(n_groups) * 7 + 3, sizes))  # unsorted, non-contiguous labels
    n = len(groups)
    cat = rng.integers(0, 4, size=n)
    X = np.column_stack([np.ones(n), cat == 1, cat == 2, cat == 3, rng.integers(0, 2, size=n)]).astype(float)
    if case == "binary_continuous":
        X = np.column_stack([X, rng.normal(size=n)])
    u = rng.normal(scale=0.7, size=groups.max() + 1)[groups]
    eta = X @ rng.normal(scale=0.4, size=X.shape[1]) + u
    if case == "poisson":
        family, y = sm.families.Poisson(), rng.poisson(np.exp(eta)).astype(float)
    elif case == "gaussian":
        family, y = sm.families.Gaussian(), eta + rng.normal(size=n)
    else:
        family, y = sm.families.Binomial(), (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    ref, dep = _statsmodels_gee(y, X, groups, family)
    fit = gee_exchangeable(y, X, groups, family)
    np.testing.assert_allclose(fit.params, np.asarray(ref.params), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.cov_robust, np.asarray(ref.cov_params()), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(fit.cov_naive, np.asarray(ref.cov_naive), rtol=1e-8, atol=1e-14)
    assert fit.dep_params == pytest.approx(float(np.ravel(dep)[0]), rel=1e-9, abs=1e-12)
    assert fit.converged == bool(ref.converged)


def test_glm_start_equals_the_glm_on_every_row():
    import statsmodels.api as sm

    d = simulate_class_discrimination(40, 30, PAPER, seed=9, design="within")
    d = d[~d["is_attention_check"]]
    y = d["correct"].astype(float).to_numpy()
    X, _, _ = _design(
        pd.DataFrame({"method": d["method"].to_numpy(), "model_role": d["model_role"].to_numpy()}), "guided_backprop"
    )
    full = sm.GLM(y, X, family=sm.families.Binomial()).fit().params
    np.testing.assert_allclose(_glm_start(y, X, sm.families.Binomial()), full, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("design", ["between", "within"])
def test_method_comparisons_gee_equals_the_statsmodels_fit(design):
    """The whole table, against statsmodels GEE fitted on the same design matrix."""
    import statsmodels.api as sm

    d = simulate_class_discrimination(60, 40, PAPER, seed=21, design=design, attention_fail_rate=0.05)
    got = method_comparisons_gee(d)
    rows = d[~d["is_attention_check"]]
    X, names, _ = _design(
        pd.DataFrame({"method": rows["method"].to_numpy(), "model_role": rows["model_role"].to_numpy()}),
        got.attrs["reference"],
    )
    groups = pd.factorize(rows["mode"] + "/" + rows["participant"])[0]
    ref, dep = _statsmodels_gee(rows["correct"].astype(float).to_numpy(), X, groups, sm.families.Binomial())
    np.testing.assert_allclose(got.attrs["params"].to_numpy(), np.asarray(ref.params), rtol=1e-9)
    np.testing.assert_allclose(got.attrs["cov"].to_numpy(), np.asarray(ref.cov_params()), rtol=1e-8)
    assert got.attrs["correlation"] == pytest.approx(float(np.ravel(dep)[0]), rel=1e-9)
    assert list(got.attrs["params"].index) == names


def test_design_matches_the_dummy_coding():
    d = pd.DataFrame({"method": ["b", "a", "c", "a", "b"], "model_role": ["weak", "strong", "weak", "weak", "strong"]})
    X, names, others = _design(d, "a")
    assert names == ["const", "method[b]", "method[c]", "model_role[weak]"] and others == ["b", "c"]
    expected = np.column_stack([np.ones(5), d["method"] == "b", d["method"] == "c", d["model_role"] == "weak"])
    np.testing.assert_array_equal(X, expected.astype(float))


# --------------------------------------------------------------------------------------
# Holm


@pytest.mark.parametrize("seed", range(5))
def test_holm_equals_statsmodels_multipletests(seed):
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(seed)
    p = rng.choice(np.r_[rng.random(6) * 0.05, rng.random(4)], size=12)  # ties included
    p[0] = 1.0
    for alpha in (0.05, 0.01):
        reject, adjusted = holm(p, alpha=alpha)
        ref_reject, ref_adjusted, _, _ = multipletests(p, alpha=alpha, method="holm")
        np.testing.assert_array_equal(reject, ref_reject)
        np.testing.assert_array_equal(adjusted, ref_adjusted)


# --------------------------------------------------------------------------------------
# load: pyarrow parsing, or the pandas route where it might differ


def test_fast_numbers_equal_pandas_and_fall_back_on_anything_odd():
    rng = np.random.default_rng(0)
    x = (rng.random(2000) * 10.0 ** rng.integers(-4, 7, 2000)).tolist()
    text = [f(v) for v in x for f in (repr, "{:.1f}".format, "{:.20g}".format, "{:.3e}".format)]
    s = pd.Series([*text, None, "7", "+3", ".5", "5."], dtype=STR)
    fast = _fast_numbers(s)
    assert fast is not None
    pd.testing.assert_series_equal(fast, pd.to_numeric(s).astype("float64"))
    for odd in (" 1.5", "1.5 ", "nan", "inf", "-0", "0x1A", "1_000", "9007199254740993", "abc"):
        assert _fast_numbers(pd.Series(["1.0", odd], dtype=STR)) is None, odd
    with pytest.raises(UserError, match="'abc'"):
        _numbers(pd.Series(["1.0", "abc"], dtype=STR), "rt_ms", "x")
    assert _numbers(pd.Series(["1.0", " 2.5"], dtype=STR), "rt_ms", "x").tolist() == [1.0, 2.5]


def test_fast_datetimes_equal_pandas_and_fall_back_otherwise():
    good = [
        "2024-05-07T14:28:34.578960+00:00",
        "2024-05-07 14:28:34+00:00",
        "2024-05-07 14:28:34.5+02:00",
        "2024-05-07T14:28:34Z",
        "2024-05-07T14:28:34.578960-05:30",
        None,
    ]
    s = pd.Series(good, dtype=STR)
    pd.testing.assert_series_equal(
        _fast_datetimes(s), pd.to_datetime(s, utc=True, format="ISO8601").astype("datetime64[us, UTC]")
    )
    for odd in (
        "2024-05-07 14:28:34",
        "2024-05-07",
        "2024-05-07 14:28:34.123456789+00:00",
        " 2024-05-07T14:28:34Z",
        "2024-02-30T10:00:00+00:00",
        "later",
    ):
        assert _fast_datetimes(pd.Series([good[0], odd], dtype=STR)) is None, odd
    naive = pd.Series(["2024-05-07 14:28:34"], dtype=STR)
    assert _datetimes(naive, "shown_at", "x").iloc[0] == pd.Timestamp("2024-05-07 14:28:34", tz="UTC")
    with pytest.raises(UserError, match="'later'"):
        _datetimes(pd.Series([good[0], "later"], dtype=STR), "shown_at", "x")


def test_booleans_by_distinct_value_equal_the_per_row_mapping():
    s = pd.Series(["True", " false", "1", "0.0", None, "FALSE", "1.0"], dtype=STR)
    expected = (
        s.str.strip()
        .str.lower()
        .map({"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False})
        .astype("boolean")
    )
    pd.testing.assert_series_equal(_booleans(s, "correct", "x", nullable=True), expected)
    with pytest.raises(UserError, match="'yes'"):
        _booleans(pd.Series(["true", "yes"], dtype=STR), "correct", "x", nullable=True)
    with pytest.raises(UserError, match="1 empty cells"):
        _booleans(pd.Series(["true", None], dtype=STR), "is_attention_check", "x", nullable=False)


# --------------------------------------------------------------------------------------
# exclusions: integer participant codes against groupby on the key columns


def _reference_participant_table(df: pd.DataFrame, rules) -> pd.DataFrame:
    from analysis.exclusions import as_rules, failed_checks, flag_exclusions

    r = as_rules(rules)
    work = pd.DataFrame(
        {
            "mode": df["mode"],
            "participant": df["participant"],
            "check": df["is_attention_check"].astype(bool),
            "failed": failed_checks(df),
            "trial_rt": df["rt_ms"].astype("float64").where(~df["is_attention_check"].astype(bool)),
            "status": df["participant_status"],
        }
    )
    g = work.groupby(KEY, sort=False)
    table = pd.DataFrame(
        {
            "answers": g.size(),
            "checks": g["check"].sum().astype("int64"),
            "failed_checks": g["failed"].sum().astype("int64"),
            "median_rt_ms": g["trial_rt"].median(),
            "status": g["status"].last(),
        }
    )
    flag_exclusions(table, r)  # the rules themselves are not under test here: the grouping is
    return table.reset_index()


@pytest.mark.parametrize("kind", ["class_discrimination", "trust", "messy"])
def test_participant_table_equals_groupby_on_the_key(kind):
    if kind == "trust":
        df = simulate_trust(
            40, 10, {"a": 1.0, "b": 0.0}, seed=2, attention_fail_rate=0.1, fast_rate=0.1, incomplete_rate=0.1
        )
    else:
        df = simulate_class_discrimination(
            50, 20, PAPER, seed=1, design="within", attention_fail_rate=0.1, fast_rate=0.1, incomplete_rate=0.1
        )
    if kind == "messy":  # two modes, shuffled rows, missing participants and statuses
        df = pd.concat([df, df.assign(mode="sandbox")]).sample(frac=1, random_state=0)
        df.loc[df.index[:7], "participant"] = np.nan
        df.loc[df.index[7:12], "participant_status"] = np.nan
    rules_list = (
        None,
        Exclusions(max_failed_attention_checks=0, min_median_rt_ms=300, require_complete=True),
        {"max_failed_attention_checks": None, "min_median_rt_ms": None},
    )
    for rules in rules_list:
        ref = _reference_participant_table(df, rules)
        pd.testing.assert_frame_equal(participant_table(df, rules), ref, check_exact=True)
        kept, flow = apply_exclusions(df, rules)
        people = pd.MultiIndex.from_frame(ref.loc[~ref["excluded"], KEY])
        keep = pd.MultiIndex.from_frame(df[KEY]).isin(people) & ~df["is_attention_check"].to_numpy()
        pd.testing.assert_frame_equal(kept, df.loc[keep].reset_index(drop=True), check_exact=True)
        assert flow["enrolled"] == len(ref) and flow["analysed_answers"] == len(kept)
