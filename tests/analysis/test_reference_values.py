"""The statistics core against published reference values (see shared REFERENCE.md), and the
per-method agreement table on small hand-made answer frames."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.agreement import (
    agreement_table,
    bootstrap_ci,
    cohen_kappa,
    counts_from_ratings,
    fleiss_kappa,
    krippendorff_alpha,
    landis_koch,
    randolph_kappa,
)
from analysis.stats import binomial_test, holm, mcnemar, wilcoxon_signed_rank, wilson_ci

DATA = Path(__file__).parent / "data"
COHEN_TABLE = [[0, 4, 1], [0, 8, 0], [0, 1, 5]]
CORN = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]


@pytest.fixture(scope="module")
def diagnoses() -> pd.DataFrame:
    """Fleiss (1971): 30 subjects x 6 raters, codes 1..5 (``subject`` is an id column)."""
    return pd.read_csv(DATA / "fleiss_1971_diagnoses.csv", index_col="subject")


# --------------------------------------------------------------------------------------
# Fleiss / Randolph


def test_diagnoses_layout(diagnoses):
    assert diagnoses.shape == (30, 6)
    assert set(np.unique(diagnoses.to_numpy())) == {1, 2, 3, 4, 5}


def test_fleiss_kappa_diagnoses(diagnoses):
    counts, categories = counts_from_ratings(diagnoses)
    assert list(categories) == [1, 2, 3, 4, 5]
    assert counts.sum(axis=0).tolist() == [26, 26, 30, 55, 43]
    res = fleiss_kappa(counts)
    assert res.kappa == pytest.approx(0.4302445, abs=5e-8)
    assert res.z == pytest.approx(17.65183, abs=5e-6)
    assert res.p < 1e-60
    assert (res.n_subjects, res.n_raters) == (30, 6)
    assert res.category_totals.tolist() == [26, 26, 30, 55, 43]


def test_fleiss_kappa_first_three_raters(diagnoses):
    counts, _ = counts_from_ratings(diagnoses.iloc[:, :3])
    assert fleiss_kappa(counts).kappa == pytest.approx(0.5343, abs=5e-5)


def test_randolph_kappa_diagnoses(diagnoses):
    counts, _ = counts_from_ratings(diagnoses)
    assert randolph_kappa(counts) == pytest.approx(0.4444, abs=5e-5)


def test_fleiss_kappa_wikipedia():
    table = pd.read_csv(DATA / "fleiss_wikipedia_counts.csv", index_col="subject")
    assert table.shape == (10, 5)
    assert (table.sum(axis=1) == 14).all()
    assert fleiss_kappa(table).kappa == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_single_category_is_nan_not_zero():
    res = fleiss_kappa([[3, 0], [3, 0]])
    assert math.isnan(res.kappa) and math.isnan(res.z)


def test_fleiss_kappa_rejects_unequal_raters():
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa([[2, 1], [1, 1]])


# --------------------------------------------------------------------------------------
# Cohen


def test_cohen_kappa_reference():
    res = cohen_kappa(COHEN_TABLE)
    assert res.kappa == pytest.approx(0.4842, abs=5e-5)
    assert res.ase == pytest.approx(0.1380, abs=5e-5)
    assert res.ci_low == pytest.approx(0.2137, abs=5e-5)
    assert res.ci_high == pytest.approx(0.7547, abs=5e-5)
    assert res.z == pytest.approx(3.2626, abs=5e-5)
    assert res.p == pytest.approx(0.0011, abs=5e-5)
    assert res.n == 19


def test_cohen_kappa_linear_weights():
    assert cohen_kappa(COHEN_TABLE, weights="linear").kappa == pytest.approx(0.4701, abs=5e-5)


def test_cohen_kappa_undefined_is_nan():
    assert math.isnan(cohen_kappa([[4, 0], [0, 0]]).kappa)


# --------------------------------------------------------------------------------------
# Krippendorff and the bootstrap


def test_krippendorff_alpha_package_example():
    # The krippendorff package's docstring example (Krippendorff 2011): nominal 0.691358,
    # interval 0.810845.
    nan = np.nan
    data = [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.691358, abs=5e-7)
    assert krippendorff_alpha(data, "interval") == pytest.approx(0.810845, abs=5e-7)
    assert krippendorff_alpha(data, "ordinal") > krippendorff_alpha(data, "nominal")


def test_krippendorff_alpha_not_computable():
    assert math.isnan(krippendorff_alpha([[1.0, 2.0], [np.nan, np.nan]]))  # no pairable unit
    assert math.isnan(krippendorff_alpha([[1.0, 1.0], [1.0, 1.0]]))  # one value, D_e = 0
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[1.0, 2.0], [1.0, 2.0]], "ratio-ish")


def test_bootstrap_ci_contains_estimate_and_is_seeded(diagnoses):
    data = diagnoses.to_numpy(dtype=float).T  # raters x units
    alpha = krippendorff_alpha(data)
    low, high = bootstrap_ci(data, n_boot=300, seed=7)
    assert low < alpha < high
    assert (low, high) == bootstrap_ci(data, n_boot=300, seed=7)
    assert (low, high) != bootstrap_ci(data, n_boot=300, seed=8)


def test_bootstrap_ci_fast_path_matches_generic_statistic(diagnoses):
    data = diagnoses.to_numpy(dtype=float).T
    fast = bootstrap_ci(data, level="ordinal", n_boot=50, seed=3)
    slow = bootstrap_ci(
        data, lambda d: krippendorff_alpha(d, "ordinal", value_domain=[1, 2, 3, 4, 5]), n_boot=50, seed=3
    )
    assert fast == pytest.approx(slow, abs=1e-12)


@pytest.mark.parametrize(
    ("k", "label"),
    [
        (-0.1, "poor"),
        (0.0, "slight"),
        (0.2, "slight"),
        (0.21, "fair"),
        (0.4, "fair"),
        (0.41, "moderate"),
        (0.6, "moderate"),
        (0.61, "substantial"),
        (0.8, "substantial"),
        (0.81, "almost perfect"),
        (1.0, "almost perfect"),
        (math.nan, "not computable"),
    ],
)
def test_landis_koch(k, label):
    assert landis_koch(k) == label


# --------------------------------------------------------------------------------------
# Proportions and tests


def test_binomial_reference():
    res = binomial_test(496, 810, p=0.5)
    assert res.pvalue == pytest.approx(1.7e-10, rel=0.01)
    assert res.ci_low == pytest.approx(0.578, abs=5e-4)
    assert res.ci_high == pytest.approx(0.646, abs=5e-4)
    assert res.estimate == pytest.approx(496 / 810)


def test_wilson_ci():
    low, high = wilson_ci(496, 810)
    assert low < 496 / 810 < high
    assert (low, high) == pytest.approx((0.5783, 0.6453), abs=5e-5)
    assert wilson_ci(0, 10)[0] == 0.0 and wilson_ci(10, 10)[1] == pytest.approx(1.0)
    assert wilson_ci(5, 10, 0.99)[0] < wilson_ci(5, 10, 0.95)[0]


def test_mcnemar_reference():
    table = [[794, 150], [86, 570]]
    plain = mcnemar(table, correction=False)
    assert plain.statistic == pytest.approx(17.356, abs=5e-4)
    assert plain.pvalue == pytest.approx(3.10e-5, abs=5e-8)
    corrected = mcnemar(table, correction=True)
    assert corrected.statistic == pytest.approx(16.818, abs=5e-4)
    assert corrected.pvalue == pytest.approx(4.11e-5, abs=5e-8)


def test_wilcoxon_corn_reference():
    res = wilcoxon_signed_rank(CORN)
    assert res.statistic == 24
    assert res.pvalue == 0.041259765625
    assert wilcoxon_signed_rank(CORN, method="exact").pvalue == 0.041259765625


def test_holm():
    reject, adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject.tolist() == [True, False, False, True]


# --------------------------------------------------------------------------------------
# agreement_table on hand-made long frames


def _long(method: str, answers: dict[str, dict[str, object]], check: bool = False) -> list[dict]:
    """Rows of a long answer frame from {item_id: {participant: answer}}."""
    return [
        {"method": method, "item_id": item, "participant": who, "answer": a, "is_attention_check": check}
        for item, by in answers.items()
        for who, a in by.items()
    ]


@pytest.fixture
def answers() -> pd.DataFrame:
    workers = ["w1", "w2", "w3"]
    perfect = {f"i{j}": dict.fromkeys(workers, ["cat", "dog"][j % 2]) for j in range(6)}
    noisy = {f"n{j}": {w: ["cat", "dog"][(j + (w == "w3" and j % 3 == 0)) % 2] for w in workers} for j in range(8)}
    noisy["n_extra"] = {"w1": "cat", "w2": "dog"}  # 2 raters: left out of Fleiss, kept by alpha
    rows = (
        _long("gradcam", perfect)
        + _long("guided", noisy)
        + _long("single", {"s1": {"w1": "cat"}})
        + _long("gradcam", {"ac": {"w1": "dog", "w2": "cat", "w3": "cat"}}, check=True)
    )
    return pd.DataFrame(rows)


def test_agreement_table_perfect_agreement(answers):
    table = agreement_table(answers, min_shared=3, n_boot=200, seed=1).set_index("method")
    row = table.loc["gradcam"]
    assert row["n_items"] == 6  # the attention check is left out
    assert row["fleiss_kappa"] == pytest.approx(1.0)
    assert row["alpha"] == pytest.approx(1.0)
    assert row["cohen_kappa"] == pytest.approx(1.0)
    assert row["cohen_n_pairs"] == 3
    assert row["fleiss_label"] == row["alpha_label"] == row["cohen_label"] == "almost perfect"
    assert row["level"] == "nominal"


def test_agreement_table_fleiss_uses_most_common_rater_count(answers):
    row = agreement_table(answers, min_shared=3, n_boot=200, seed=1).set_index("method").loc["guided"]
    assert (row["fleiss_n_items"], row["fleiss_n_raters"]) == (8, 3)
    assert "8 of 9 items" in row["fleiss_note"]
    assert row["alpha_n_items"] == 9
    assert 0 < row["fleiss_kappa"] < 1


def test_agreement_table_single_rater_not_computable(answers):
    row = agreement_table(answers, n_boot=50).set_index("method").loc["single"]
    for key in ("fleiss", "alpha", "cohen"):
        value = row[f"{key}_kappa" if key != "alpha" else "alpha"]
        assert math.isnan(value), key  # never 0
        assert row[f"{key}_label"] == "not computable"
        assert row[f"{key}_note"].startswith("not computable:")
    assert "two or more raters" in row["fleiss_note"]
    assert "two or more raters" in row["alpha_note"]


def test_agreement_table_bootstrap_contains_estimate_and_is_deterministic(answers):
    first = agreement_table(answers, min_shared=3, n_boot=300, seed=11)
    again = agreement_table(answers, min_shared=3, n_boot=300, seed=11)
    pd.testing.assert_frame_equal(first, again)
    row = first.set_index("method").loc["guided"]
    assert row["alpha_low"] <= row["alpha"] <= row["alpha_high"]
    assert row["alpha_low"] < row["alpha_high"]


def test_agreement_table_trust_is_ordinal():
    rng = np.random.default_rng(0)
    base = rng.integers(-2, 3, size=10)
    rows = []
    for w, shift in (("a", 0), ("b", 0), ("c", 1)):
        rows += _long("gradcam", {f"t{j}": {w: int(np.clip(base[j] + shift * (j % 2), -2, 2))} for j in range(10)})
    df = pd.DataFrame(rows).assign(study_kind="trust")
    df["answer"] = df["answer"].astype("Int64")
    row = agreement_table(df, min_shared=5, n_boot=200, seed=0).iloc[0]
    assert row["level"] == "ordinal" and row["alpha_level"] == "ordinal"
    assert row["cohen_weights"] == "linear"
    assert row["column"] == "answer"  # no score_stronger column in this frame
    assert 0 < row["alpha"] < 1
    nominal = agreement_table(df, level="nominal", min_shared=5, n_boot=10).iloc[0]
    assert nominal["alpha"] < row["alpha"]  # near misses count as partial agreement
    # A real trust export: sides are flipped per participant, so the re-signed score is used.
    export = df.assign(score_stronger=df["answer"], answer=-df["answer"])
    resigned = agreement_table(export, min_shared=5, n_boot=200, seed=0).iloc[0]
    assert resigned["column"] == "score_stronger"
    assert resigned["alpha"] == pytest.approx(row["alpha"])


@pytest.mark.parametrize("n_categories, weights", [(2, None), (5, "linear"), (5, None)])
def test_vectorized_pairwise_cohen_equals_the_per_pair_loop(n_categories, weights):
    """All pairs at once (one-hot products) gives the mean of per-pair cohen_kappa."""
    import numpy as np
    import pandas as pd

    from analysis.agreement import _cohen_cell
    from tests.analysis.naive import pairwise_cohen

    rng = np.random.default_rng(7)
    arr = rng.integers(0, n_categories, size=(40, 6)).astype(float)
    arr[rng.random(arr.shape) < 0.3] = np.nan
    got = _cohen_cell(pd.DataFrame(arr), n_categories, weights, min_shared=5)
    kappas = pairwise_cohen(arr, n_categories, weights, min_shared=5)
    assert got["cohen_n_pairs"] == len(kappas)
    assert got["cohen_kappa"] == pytest.approx(float(np.mean(kappas)), abs=1e-9)
