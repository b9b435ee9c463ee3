"""What agreement is computed on: the within-item option for class discrimination, and levels.

Class discrimination offers two options per item, so agreement is on correct (1) vs
incorrect (0) within the item; the category name pooled over items reads coin flips as
agreement. Hand calculations below are written out, not recomputed with the code under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.agreement import (
    LEVELS,
    _alpha_replicates,
    agreement_table,
    bootstrap_ci,
    krippendorff_alpha,
)

METHODS = ("gradcam", "guided_backprop", "integrated_gradients")
CATEGORIES = np.array([f"cat{i}" for i in range(10)], dtype=object)


def _cd_frame(correct: np.ndarray, method: str = "gradcam", seed: int = 0) -> pd.DataFrame:
    """A class-discrimination export from a workers x items table of correct (bool): every
    worker answers every item; each item offers two of ten categories (its own pair)."""
    rng = np.random.default_rng(seed)
    n_workers, n_items = correct.shape
    first = rng.integers(0, len(CATEGORIES), n_items)
    second = (first + rng.integers(1, len(CATEGORIES), n_items)) % len(CATEGORIES)
    w, i = np.meshgrid(np.arange(n_workers), np.arange(n_items), indexing="ij")
    return pd.DataFrame(
        {
            "study_kind": "class_discrimination",
            "method": method,
            "item_id": [f"{method}-{k:03d}" for k in i.ravel()],
            "participant": [f"w{k:03d}" for k in w.ravel()],
            "answer": np.where(correct, CATEGORIES[first][i], CATEGORIES[second][i]).ravel(),
            "correct": pd.array(correct.ravel(), dtype="boolean"),
            "is_attention_check": False,
        }
    )


def _coin_flips(seed: int, n_workers: int = 60, n_items: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.concat(
        [_cd_frame(rng.random((n_workers, n_items)) < 0.5, m, seed * 10 + j) for j, m in enumerate(METHODS)],
        ignore_index=True,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coin_flip_raters_agree_at_chance_not_on_pooled_names(seed):
    df = _coin_flips(seed)
    table = agreement_table(df, n_boot=50, seed=seed)
    old = agreement_table(df, column="answer", level="nominal", n_boot=50, seed=seed)
    print(
        f"seed {seed}: alpha {table['alpha'].round(4).tolist()} fleiss {table['fleiss_kappa'].round(4).tolist()} "
        f"cohen {table['cohen_kappa'].round(4).tolist()}; pooled names alpha {old['alpha'].round(3).tolist()}"
    )
    assert (table["column"] == "correct").all() and (table["level"] == "nominal").all()
    assert (table["variable"] == "option chosen within the item (correct vs incorrect)").all()
    for key in ("alpha", "fleiss_kappa", "cohen_kappa"):
        assert table[key].abs().max() <= 0.05, key
    assert (old["alpha"] > 0.2).all()  # the old pooled-name coding inflates agreement
    assert old["variable"].str.startswith("category name chosen").all()


@pytest.mark.parametrize("seed", [0, 1])
def test_coin_flips_from_the_simulator(seed):
    from analysis.simulate import simulate_class_discrimination

    df = simulate_class_discrimination(
        120, 40, dict.fromkeys(METHODS, 0.5), worker_sd=0, image_sd=0, seed=seed, n_images=10
    )
    table = agreement_table(df, n_boot=50)
    for key in ("alpha", "fleiss_kappa", "cohen_kappa"):
        assert table[key].abs().max() <= 0.05, key
    assert (agreement_table(df, column="answer", level="nominal", n_boot=50)["alpha"] > 0.2).all()


def test_raters_who_always_agree_give_one():
    items_correct = np.array([True, False, True, True, False, False, True, False])  # mixed per item
    df = _cd_frame(np.tile(items_correct, (6, 1)))
    row = agreement_table(df, n_boot=20).iloc[0]
    assert row["alpha"] == pytest.approx(1.0)
    assert row["fleiss_kappa"] == pytest.approx(1.0)
    assert row["cohen_kappa"] == pytest.approx(1.0)


# Nine items, four raters, 22 of 36 answers correct (0.61, the paper's accuracy).
HAND = np.array(
    [
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 1, 0],
        [0, 1, 1, 1],
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
    ],
    dtype=bool,
)  # items x raters


def test_hand_calculation_at_the_papers_accuracy():
    assert HAND.sum() == 22  # p = 22/36 = 0.611
    row = agreement_table(_cd_frame(HAND.T), n_boot=20).iloc[0]
    # Fleiss: correct per item a = 4,4,4,3,3,2,1,1,0 of n = 4; P_i = (a^2 + (4-a)^2 - 4) / 12 =
    # 1,1,1,1/2,1/2,1/3,1/2,1/2,1 -> P_bar = (19/3) / 9 = 19/27; P_e = p^2 + q^2 with
    # p = 22/36, q = 14/36: (484 + 196) / 1296 = 85/162; kappa = (19/27 - 85/162) / (77/162) = 29/77.
    assert row["fleiss_kappa"] == pytest.approx(29 / 77, abs=1e-12)
    # Krippendorff: coincidence o_01 = sum_u a (4 - a) / 3 = (3 + 3 + 4 + 3 + 3) / 3 = 16/3 over
    # n = 36 values, n_1 = 22, n_0 = 14; alpha = 1 - (n - 1) o_01 / (n_0 n_1) = 1 - 35 (16/3) / 308
    # = 1 - 20/33 = 13/33.
    assert row["alpha"] == pytest.approx(13 / 33, abs=1e-12)
    # Cohen per rater pair over the 9 items: (both correct, a only, b only, both incorrect) ->
    # kappa = (p_o - p_e) / (1 - p_e), p_e from the two raters' margins.
    pairs = [(5, 1, 1, 2), (4, 2, 1, 2), (3, 3, 2, 1), (5, 1, 0, 3), (4, 2, 1, 2), (4, 1, 1, 3)]
    kappas = []
    for both, a_only, b_only, neither in pairs:
        a, b = (both + a_only) / 9, (both + b_only) / 9
        p_o, p_e = (both + neither) / 9, a * b + (1 - a) * (1 - b)
        kappas.append((p_o - p_e) / (1 - p_e))
    assert row["cohen_kappa"] == pytest.approx(np.mean(kappas), abs=1e-12)
    assert row["cohen_n_pairs"] == 6
    assert row["fleiss_note"].startswith("nominal")


def test_overrides_still_work():
    df = _cd_frame(HAND.T)
    row = agreement_table(df, column="answer", level="nominal", n_boot=20).iloc[0]
    assert row["column"] == "answer" and row["alpha_level"] == "nominal"
    # Binary 0/1 codes: interval and ratio distances between 0 and 1 are 1, as nominal.
    for level in ("interval", "ratio"):
        other = agreement_table(df, level=level, n_boot=20).iloc[0]
        assert other["alpha_level"] == level and other["cohen_weights"] == "linear"
        assert other["alpha"] == pytest.approx(13 / 33, abs=1e-12)


# Krippendorff (2011), four observers x twelve units (the krippendorff package's example).
K2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
    ]
)


def test_krippendorff_2011_levels_including_ratio():
    assert "ratio" in LEVELS
    expected = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
    got = {level: round(krippendorff_alpha(K2011, level), 3) for level in expected}
    print(f"Krippendorff 2011: {got}")
    assert got == expected


def test_ratio_bootstrap_replicates_equal_the_package():
    import krippendorff

    domain = np.unique(K2011[~np.isnan(K2011)])
    draws = np.random.default_rng(11).integers(0, K2011.shape[1], size=(8, K2011.shape[1]))
    fast = _alpha_replicates(K2011, draws, "ratio")
    for rep, idx in zip(fast, draws, strict=True):
        sample = K2011[:, idx]
        rated = ~np.isnan(sample)
        if len(np.unique(sample[:, rated.sum(axis=0) >= 2][rated[:, rated.sum(axis=0) >= 2]])) < 2:
            assert np.isnan(rep)
            continue
        ref = krippendorff.alpha(reliability_data=sample, value_domain=domain, level_of_measurement="ratio")
        assert rep == pytest.approx(ref, rel=1e-9, abs=1e-12)
    slow = bootstrap_ci(K2011, lambda d: krippendorff_alpha(d, "ratio", value_domain=domain), n_boot=40, seed=2)
    assert bootstrap_ci(K2011, level="ratio", n_boot=40, seed=2) == pytest.approx(slow, rel=1e-9)


def test_ratio_refuses_negative_values():
    with pytest.raises(ValueError, match="non-negative"):
        krippendorff_alpha(K2011 - 3, "ratio")
