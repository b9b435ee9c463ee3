"""Simulated exports, for tests and benchmarks: the columns of :func:`study.export.columns` with
the dtypes :func:`analysis.load.normalize` gives (so ``normalize(sim)`` changes nothing).

Both simulators are vectorized numpy: a million rows take a couple of seconds. Every worker
has ``items_per_worker`` trials and ``attention_checks`` checks at random positions. A share of
the workers is planted to break one rule each, in disjoint groups (``round(rate *
n_workers)`` workers each), and listed in ``df.attrs["planted"]`` by pseudonym:

- ``attention`` (``attention_fail_rate``): fail every attention check and guess on trials;
- ``too_fast`` (``fast_rate``): answer in about ``fast_rt_ms`` (median) and guess;
- ``incomplete`` (``incomplete_rate``): stop after a random number of answers (1 to all but
  one) and stay ``active``.

Everyone else passes every check, answers at a realistic pace (log-normal rt around
``rt_median_ms`` with a per-worker speed factor) and ends ``completed``.

Class discrimination: the probability that a trial is answered correctly is
``expit(b[method, role] + u_worker + v_image)`` with ``u ~ N(0, worker_sd)`` and ``v ~ N(0,
image_sd)`` (one effect per image, shared by its methods and roles). The intercept ``b`` is
solved (Gauss-Hermite quadrature and a root finder) so that the *marginal* probability
``E[expit(b + s Z)]``, ``s = sqrt(worker_sd^2 + image_sd^2)``, equals the configured accuracy
exactly; the realized accuracy then differs from it only by sampling noise (which the random
effects inflate). ``method_accuracy`` maps a method to one accuracy (both models) or to
``{"stronger": p, "weaker": p}``. Each item shows two options (the image's two categories) in
a random order.

Trust: an ordinal probit model. The latent preference for the stronger model is
``mu[method] + u_worker + v_image + e`` with ``u ~ N(0, worker_sd)``, ``v ~ N(0, image_sd)``
(one effect per image, shared by its methods; drawn from a generator of its own, so that
``image_sd=0``, the default, gives the same exports as before it existed) and ``e ~ N(0, 1)``,
cut at ``thresholds`` into -2..2. ``mu`` is solved so that the marginal expected score
``-2 + sum_k Phi((mu - t_k) / sqrt(1 + worker_sd^2 + image_sd^2))`` equals
``method_mean[method]`` exactly.
Sides are counterbalanced within each worker: the stronger model is on the left in half the
trials, and ``answer`` is the score re-signed to the side (``score_stronger = +-answer``).
Attention checks repeat one model's map on both sides; attentive workers answer 0.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.polynomial.hermite_e import hermegauss
from scipy import optimize, special
from scipy.stats import norm

from camstudy.contracts import TaskKind
from study.export import columns

# The kinds of the exports the two simulators write.
CD = str(TaskKind.CLASS_DISCRIMINATION)
TRUST = str(TaskKind.TRUST)
ROLES = ("stronger", "weaker")
CATEGORIES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
ABSURD = ("submarine", "volcano", "pizza", "galaxy")
START = np.datetime64("2024-05-01T09:00:00", "us")
MAX_RT_MS = 600_000.0


@dataclass(frozen=True)
class _Plan:
    """The rectangular (worker x position) layout shared by both simulators."""

    n_workers: int
    n_positions: int
    is_check: np.ndarray  # (W, L) bool
    trial_index: np.ndarray  # (W, L) index among the worker's trials (-1 at checks)
    check_index: np.ndarray  # (W, L) index among the worker's checks (-1 at trials)
    group: np.ndarray  # (W,) 0 ok, 1 attention, 2 too fast, 3 incomplete
    stop: np.ndarray  # (W,) number of answers kept
    rt: np.ndarray  # (W, L) ms
    pseudonyms: np.ndarray  # (W,) str


@functools.lru_cache(maxsize=8)
def _gauss(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite(e) nodes and normalized weights (an eigenvalue problem: computed once)."""
    x, w = hermegauss(nodes)
    x.setflags(write=False)
    w = w / w.sum()
    w.setflags(write=False)
    return x, w


def marginal_logit_intercept(p: float, sd: float, nodes: int = 80) -> float:
    """The ``b`` with ``E[expit(b + sd Z)] = p`` for ``Z ~ N(0, 1)`` (exact up to quadrature)."""
    if not 0 < p < 1:
        raise ValueError(f"an accuracy must be in (0, 1), not {p}")
    if sd == 0:
        return float(special.logit(p))
    x, w = _gauss(nodes)
    return float(optimize.brentq(lambda b: float(w @ special.expit(b + sd * x)) - p, -40, 40, xtol=1e-12))


def ordinal_location(mean: float, sd: float, thresholds: tuple[float, ...]) -> float:
    """The ``mu`` with ``E[-2 + #{k: Y > t_k}] = mean`` for ``Y ~ N(mu, sd^2)``."""
    lo, hi = -len(thresholds) / 2, len(thresholds) / 2
    if not lo < mean < hi:
        raise ValueError(f"a mean score must be in ({lo:g}, {hi:g}), not {mean}")
    t = np.asarray(thresholds, dtype=float)
    return float(optimize.brentq(lambda m: lo + norm.cdf((m - t) / sd).sum() - mean, -50, 50, xtol=1e-12))


def _plan(
    rng: np.random.Generator,
    n_workers: int,
    items_per_worker: int,
    attention_checks: int,
    attention_fail_rate: float,
    fast_rate: float,
    incomplete_rate: float,
    rt_median_ms: float,
    fast_rt_ms: float,
) -> _Plan:
    if n_workers < 1 or items_per_worker < 1 or attention_checks < 0:
        raise ValueError("n_workers and items_per_worker must be positive, attention_checks not negative")
    W, L = n_workers, items_per_worker + attention_checks
    counts = [round(r * W) for r in (attention_fail_rate, fast_rate, incomplete_rate)]
    if sum(counts) > W:
        raise ValueError("attention_fail_rate + fast_rate + incomplete_rate must not exceed 1")
    group = np.zeros(W, dtype=np.int8)
    order = rng.permutation(W)
    start = 0
    for g, c in enumerate(counts, start=1):
        group[order[start : start + c]] = g
        start += c
    rank = rng.random((W, L)).argsort(axis=1).argsort(axis=1)
    is_check = rank < attention_checks
    check_index = np.where(is_check, np.cumsum(is_check, axis=1) - 1, -1)
    trial_index = np.where(is_check, -1, np.cumsum(~is_check, axis=1) - 1)
    stop = np.full(W, L)
    inc = group == 3
    if L > 1:
        stop[inc] = rng.integers(1, L, inc.sum())
    speed = np.where(
        group == 2, fast_rt_ms * np.exp(rng.normal(0, 0.1, W)), rt_median_ms * np.exp(rng.normal(0, 0.3, W))
    )
    rt = np.clip(np.round(speed[:, None] * np.exp(rng.normal(0, 0.5, (W, L))), 1), 1.0, MAX_RT_MS)
    pseudonyms = np.array([f"{v:016x}" for v in rng.integers(0, 2**63, W, dtype=np.int64)], dtype=object)
    return _Plan(W, L, is_check, trial_index, check_index, group, stop, rt, pseudonyms)


def _balanced(rng: np.random.Generator, n_workers: int, n_trials: int, n_levels: int) -> np.ndarray:
    """(W, T) levels 0..n_levels-1, as equal as T allows within each worker, shuffled."""
    base = np.tile(np.arange(n_trials) % n_levels, (n_workers, 1))
    return rng.permuted(base, axis=1)


def _images(rng: np.random.Generator, n_workers: int, n_trials: int, n_images: int) -> np.ndarray:
    """(W, T) image indices, distinct within a worker where there are enough images."""
    if n_images >= n_trials:
        return rng.random((n_workers, n_images)).argsort(axis=1)[:, :n_trials]
    return rng.integers(0, n_images, (n_workers, n_trials))


def _take(values, codes: np.ndarray) -> pd.Series:
    """``values[codes]`` as a pandas ``str`` column (arrow's take: fast for a million rows)."""
    return pd.Series(pd.array(list(values), dtype="str")).take(codes).reset_index(drop=True)


def _frame(plan: _Plan, kind: str, study: str, mode: str, condition: np.ndarray, cols: dict, seed: int) -> pd.DataFrame:
    """Flatten the (W, L) arrays, drop what incomplete workers never answered, add the
    columns every export has, and order the columns as the export does."""
    W, L = plan.n_workers, plan.n_positions
    keep = (np.arange(L)[None, :] < plan.stop[:, None]).ravel()
    worker = np.repeat(np.arange(W), L)[keep]
    rng = np.random.default_rng([seed, 1])
    begin = START.astype("int64") + rng.integers(0, 7 * 86_400_000_000, W)  # within a week, us
    gap = rng.uniform(300_000, 1_500_000, (W, L))  # the next trial shows 0.3-1.5 s after an answer
    rt_us = np.round(plan.rt * 1000).astype(np.int64)
    answered = begin[:, None] + np.cumsum(rt_us + gap.astype(np.int64), axis=1)
    shown = answered - rt_us
    status = np.where(plan.group == 3, "active", "completed")
    out = {
        "study": _take([study], np.zeros(keep.sum(), dtype=np.int64)),
        "study_kind": _take([kind], np.zeros(keep.sum(), dtype=np.int64)),
        "mode": _take([mode], np.zeros(keep.sum(), dtype=np.int64)),
        "participant": _take(plan.pseudonyms, worker),
        "condition": _take(condition, worker),
        "position": np.tile(np.arange(L), W)[keep].astype("int64"),
        "is_attention_check": plan.is_check.ravel()[keep],
        "rt_ms": plan.rt.ravel()[keep].astype("float64"),
        "shown_at": pd.to_datetime(shown.ravel()[keep].astype("datetime64[us]")).tz_localize("UTC"),
        "answered_at": pd.to_datetime(answered.ravel()[keep].astype("datetime64[us]")).tz_localize("UTC"),
        "participant_status": _take(status, worker),
    }
    for name, value in cols.items():
        out[name] = value.ravel()[keep] if isinstance(value, np.ndarray) else value
    df = pd.DataFrame({c: out[c] for c in columns(kind)})
    df["shown_at"] = df["shown_at"].astype("datetime64[us, UTC]")
    df["answered_at"] = df["answered_at"].astype("datetime64[us, UTC]")
    planted = {
        name: sorted(plan.pseudonyms[plan.group == g])
        for g, name in enumerate(("attention", "too_fast", "incomplete"), start=1)
    }
    df.attrs["planted"] = planted
    return df


def _row_codes(plan: _Plan, trial_codes: np.ndarray, check_codes: np.ndarray, offset: int) -> np.ndarray:
    """(W, L) item codes: the trial items' codes, then checks as ``offset + check code``."""
    t = np.take_along_axis(trial_codes, np.maximum(plan.trial_index, 0), axis=1)
    c = offset + np.take_along_axis(check_codes, np.maximum(plan.check_index, 0), axis=1)
    return np.where(plan.is_check, c, t)


def _targets(method_accuracy: Mapping[str, float | Mapping[str, float]]) -> tuple[list[str], np.ndarray]:
    methods = list(method_accuracy)
    p = np.empty((len(methods), 2))
    for i, m in enumerate(methods):
        v = method_accuracy[m]
        p[i] = [v[r] for r in ROLES] if isinstance(v, Mapping) else [v, v]
    return methods, p


def simulate_class_discrimination(
    n_workers: int,
    items_per_worker: int,
    method_accuracy: Mapping[str, float | Mapping[str, float]],
    worker_sd: float = 0.5,
    image_sd: float = 0.5,
    seed: int = 0,
    attention_fail_rate: float = 0.0,
    fast_rate: float = 0.0,
    incomplete_rate: float = 0.0,
    attention_checks: int = 4,
    n_images: int | None = None,
    design: str = "between",
    models: tuple[str, str] = ("vgg16", "alexnet"),
    study: str = "sim-class-discrimination",
    mode: str = "live",
    rt_median_ms: float = 2500.0,
    fast_rt_ms: float = 200.0,
) -> pd.DataFrame:
    """A class-discrimination export (see the module doc for the model).

    ``design``: "between" (the app's default for this task: each worker sees one method,
    assigned in turn, and ``condition`` is that method) or "within" (every worker sees every
    method equally often, ``condition`` "all"). Model roles alternate equally within each
    worker. ``n_images``: the image pool (default ``max(100, 2 * items_per_worker)``); each
    image has two categories, and an item is (image, model role, method, category).
    """
    if design not in ("between", "within"):
        raise ValueError(f"design must be between or within, not {design!r}")
    rng = np.random.default_rng(seed)
    plan = _plan(
        rng,
        n_workers,
        items_per_worker,
        attention_checks,
        attention_fail_rate,
        fast_rate,
        incomplete_rate,
        rt_median_ms,
        fast_rt_ms,
    )
    methods, target = _targets(method_accuracy)
    M, W, T = len(methods), n_workers, items_per_worker
    n_images = n_images or max(100, 2 * T)
    sd = float(np.hypot(worker_sd, image_sd))
    b = np.array([[marginal_logit_intercept(p, sd) for p in row] for row in target])

    # The image pool: two distinct categories per image.
    first = rng.integers(0, len(CATEGORIES), n_images)
    second = (first + rng.integers(1, len(CATEGORIES), n_images)) % len(CATEGORIES)
    image_ids = np.array([f"img{i:05d}" for i in range(n_images)], dtype=object)
    cats = np.array(CATEGORIES, dtype=object)
    cat_pair = np.stack([cats[first], cats[second]], axis=1)  # (I, 2)

    if design == "between":
        cell = np.arange(W) % M
        method = np.repeat(cell[:, None], T, axis=1)
        role = _balanced(rng, W, T, 2)
        condition = np.array([methods[c] for c in cell], dtype=object)
    else:
        combo = _balanced(rng, W, T, 2 * M)
        method, role = combo % M, combo // M
        condition = np.array(["all"] * W, dtype=object)
    image = _images(rng, W, T, n_images)
    which = rng.integers(0, 2, (W, T))  # which of the image's two categories is asked
    u = rng.normal(0, worker_sd, W)
    v = rng.normal(0, image_sd, n_images)
    p = special.expit(b[method, role] + u[:, None] + v[image])
    p[np.isin(plan.group, (1, 2))] = 0.5  # inattentive and fast workers guess
    correct_trial = rng.random((W, T)) < p
    flip = rng.integers(0, 2, (W, T))  # the order the two options are shown in

    # Item table: trial items coded ((image * 2 + role) * M + method) * 2 + which.
    ii, rr, mm, ww = (
        a.ravel() for a in np.meshgrid(np.arange(n_images), np.arange(2), np.arange(M), np.arange(2), indexing="ij")
    )
    cat = cat_pair[ii, ww]
    other = cat_pair[ii, 1 - ww]
    role_names = np.array(ROLES, dtype=object)[rr]
    method_names = np.array(methods, dtype=object)[mm]
    stim = image_ids[ii] + "__" + role_names + "__" + method_names + "__" + cat
    n_items = len(ii)
    trial_code = ((image * 2 + role) * M + method) * 2 + which

    # Check items: the photo with one true and one absurd category.
    C = attention_checks
    check_image = rng.integers(0, n_images, max(C, 1))[:C]
    check_true = cat_pair[check_image, 0]
    check_absurd = np.array(ABSURD, dtype=object)[np.arange(C) % len(ABSURD)]
    check_codes = np.tile(np.arange(C), (W, 1)) if C else np.zeros((W, 0), dtype=np.int64)
    code = _row_codes(plan, trial_code, check_codes, n_items) if C else trial_code

    weights = {r: hashlib.sha256(f"{seed}:{r}".encode()).hexdigest() for r in ROLES}
    layers = {"stronger": "features.29", "weaker": "features.11"}
    model_of = dict(zip(ROLES, models, strict=True))
    item = pd.DataFrame(
        {
            "item_id": np.concatenate(
                ["cd__" + stim, [f"cd__check{i:03d}__{image_ids[j]}" for i, j in enumerate(check_image)]]
            ),
            "image_id": np.concatenate([image_ids[ii], image_ids[check_image]]),
            "method": np.concatenate([method_names, ["photo"] * C]),
            "model": np.concatenate([[model_of[r] for r in role_names], ["none"] * C]),
            "model_role": np.concatenate([role_names, ["none"] * C]),
            "stimulus_ids": np.concatenate([stim, image_ids[check_image] + "__photo"]),
            "correct_answer": np.concatenate([cat, check_true]),
            "other": np.concatenate([other, check_absurd]),
            "weights_sha256": np.concatenate([[weights[r] for r in role_names], [None] * C]),
            "layer": np.concatenate([[layers[r] for r in role_names], [None] * C]),
            "code_version": np.concatenate([["sim"] * n_items, [None] * C]),
        }
    ).astype("str")
    is_check = plan.is_check
    correct = np.where(is_check, plan.group[:, None] != 1, _spread(plan, correct_trial, True))
    flip_rows = np.where(is_check, 0, _spread(plan, flip, 0))
    codes = code.ravel()
    keep = (np.arange(plan.n_positions)[None, :] < plan.stop[:, None]).ravel()
    codes_kept = codes[keep]
    options = np.concatenate(
        [item["correct_answer"] + ";" + item["other"], item["other"] + ";" + item["correct_answer"]]
    )
    # Checks show their two options sorted, as the plan does.
    sorted_checks = [";".join(sorted(pair)) for pair in zip(check_true, check_absurd, strict=True)]
    options[n_items : n_items + C] = sorted_checks
    options[2 * n_items + C :] = sorted_checks
    cols = {
        **{
            c: item[c].take(codes_kept).reset_index(drop=True)
            for c in (
                "item_id",
                "image_id",
                "method",
                "model",
                "model_role",
                "stimulus_ids",
                "correct_answer",
                "weights_sha256",
                "layer",
                "code_version",
            )
        },
        "options": _take(options, codes_kept + (n_items + C) * flip_rows.ravel()[keep]),
        "answer": _take(
            np.concatenate([item["correct_answer"], item["other"]]),
            codes_kept + (n_items + C) * (~correct.ravel()[keep]),
        ),
        "correct": pd.array(correct.ravel()[keep], dtype="boolean"),
    }
    return _frame(plan, CD, study, mode, condition, cols, seed)


def _spread(plan: _Plan, per_trial: np.ndarray, fill) -> np.ndarray:
    """(W, T) trial values laid out on the (W, L) positions (``fill`` at checks)."""
    v = np.take_along_axis(per_trial, np.maximum(plan.trial_index, 0), axis=1)
    return np.where(plan.is_check, fill, v)


def simulate_trust(
    n_workers: int,
    items_per_worker: int,
    method_mean: Mapping[str, float],
    worker_sd: float = 0.5,
    seed: int = 0,
    image_sd: float = 0.0,
    attention_fail_rate: float = 0.0,
    fast_rate: float = 0.0,
    incomplete_rate: float = 0.0,
    attention_checks: int = 2,
    n_images: int | None = None,
    thresholds: tuple[float, float, float, float] = (-1.5, -0.5, 0.5, 1.5),
    models: tuple[str, str] = ("vgg16", "alexnet"),
    study: str = "sim-trust",
    mode: str = "live",
    rt_median_ms: float = 4000.0,
    fast_rt_ms: float = 200.0,
) -> pd.DataFrame:
    """A trust export (see the module doc for the model): a within design (``condition``
    "all"), every worker rating every method equally often. ``method_mean``: the expected
    ``score_stronger`` per method, in (-2, 2). ``image_sd``: the SD of the image effect on
    the latent scale (0: images do not differ). Inattentive and fast workers answer uniformly
    at random; inattentive workers answer a non-zero rating on every check."""
    rng = np.random.default_rng(seed)
    plan = _plan(
        rng,
        n_workers,
        items_per_worker,
        attention_checks,
        attention_fail_rate,
        fast_rate,
        incomplete_rate,
        rt_median_ms,
        fast_rt_ms,
    )
    methods = list(method_mean)
    M, W, T, C = len(methods), n_workers, items_per_worker, attention_checks
    n_images = n_images or max(100, 2 * T)
    scale = float(np.hypot(np.hypot(1.0, worker_sd), image_sd))  # hypot(x, 0) == x: as before
    mu = np.array([ordinal_location(method_mean[m], scale, thresholds) for m in methods])
    cuts = np.asarray(thresholds, dtype=float)

    combo = _balanced(rng, W, T, 2 * M)
    method, stronger_left = combo % M, combo // M == 0
    image = _images(rng, W, T, n_images)
    u = rng.normal(0, worker_sd, W)
    latent = mu[method] + u[:, None] + rng.normal(0, 1, (W, T))
    if image_sd > 0:  # its own stream: image_sd = 0 leaves every other draw as it was
        latent += np.random.default_rng([seed, 2]).normal(0, image_sd, n_images)[image]
    score = (latent[..., None] > cuts).sum(axis=-1) - 2
    guess = np.isin(plan.group, (1, 2))
    score[guess] = rng.integers(-2, 3, (int(guess.sum()), T))
    answer_trial = np.where(stronger_left, score, -score)

    image_ids = np.array([f"img{i:05d}" for i in range(n_images)], dtype=object)
    cat_of = np.array(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), n_images)]
    ii, mm, ss = (a.ravel() for a in np.meshgrid(np.arange(n_images), np.arange(M), np.arange(2), indexing="ij"))
    method_names = np.array(methods, dtype=object)[mm]
    base = image_ids[ii] + "__{}__" + method_names + "__" + cat_of[ii]
    strong = np.array([b.format("stronger") for b in base], dtype=object)
    weak = np.array([b.format("weaker") for b in base], dtype=object)
    left_is_strong = ss == 0
    n_items = len(ii)  # item x side
    trial_code = (image * M + method) * 2 + (~stronger_left)

    check_item = rng.integers(0, n_images * M, max(C, 1))[:C]  # (image, method) of each check
    check_img, check_method = check_item // M, check_item % M
    check_role = np.arange(C) % 2  # alternate which model's map is repeated
    check_stim = np.array(
        [
            f"{image_ids[i]}__{ROLES[r]}__{methods[m]}__{cat_of[i]}"
            for i, m, r in zip(check_img, check_method, check_role, strict=True)
        ],
        dtype=object,
    )
    check_codes = np.tile(np.arange(C), (W, 1)) if C else np.zeros((W, 0), dtype=np.int64)
    code = _row_codes(plan, trial_code, check_codes, n_items) if C else trial_code

    weights = {r: hashlib.sha256(f"{seed}:{r}".encode()).hexdigest() for r in ROLES}
    layers = {"stronger": "features.29", "weaker": "features.11"}
    name = dict(zip(ROLES, models, strict=True))
    sides = {True: ("stronger", "weaker"), False: ("weaker", "stronger")}
    lr = [sides[bool(x)] for x in left_is_strong]
    check_side = [ROLES[r] for r in check_role]
    item = pd.DataFrame(
        {
            "item_id": np.concatenate(
                [
                    "trust__" + image_ids[ii] + "__" + method_names + "__" + cat_of[ii],
                    [f"trust__check{i:03d}__{image_ids[j]}" for i, j in enumerate(check_img)],
                ]
            ),
            "image_id": np.concatenate([image_ids[ii], image_ids[check_img]]),
            "method": np.concatenate([method_names, np.array(methods, dtype=object)[check_method]]),
            "model_left": [f"{a}:{name[a]}" for a, _ in lr] + [f"{r}:{name[r]}" for r in check_side],
            "model_right": [f"{b}:{name[b]}" for _, b in lr] + [f"{r}:{name[r]}" for r in check_side],
            "stimulus_ids": np.concatenate(
                [np.where(left_is_strong, strong + ";" + weak, weak + ";" + strong), check_stim + ";" + check_stim]
            ),
            "weights_sha256": [f"{weights[a]};{weights[b]}" for a, b in lr]
            + [f"{weights[r]};{weights[r]}" for r in check_side],
            "layer": [f"{layers[a]};{layers[b]}" for a, b in lr] + [f"{layers[r]};{layers[r]}" for r in check_side],
            "code_version": ["sim;sim"] * (n_items + C),
        }
    ).astype("str")

    is_check = plan.is_check
    failer = plan.group[:, None] == 1
    check_answer = np.where(failer, rng.choice(np.array([-2, -1, 1, 2]), (W, plan.n_positions)), 0)
    answer = np.where(is_check, check_answer, _spread(plan, answer_trial, 0))
    score_rows = _spread(plan, score, 0)
    keep = (np.arange(plan.n_positions)[None, :] < plan.stop[:, None]).ravel()
    codes_kept = code.ravel()[keep]
    check_rows = is_check.ravel()[keep]
    answer_kept = answer.ravel()[keep]
    cols = {
        **{
            c: item[c].take(codes_kept).reset_index(drop=True)
            for c in (
                "item_id",
                "image_id",
                "method",
                "model_left",
                "model_right",
                "stimulus_ids",
                "weights_sha256",
                "layer",
                "code_version",
            )
        },
        "answer": pd.arrays.IntegerArray(answer_kept.astype(np.int64), np.zeros(len(answer_kept), dtype=bool)),
        "correct": pd.arrays.BooleanArray(answer_kept == 0, ~check_rows),
        "score_stronger": pd.arrays.IntegerArray(score_rows.ravel()[keep].astype(np.int64), check_rows.copy()),
    }
    return _frame(plan, TRUST, study, mode, np.array(["all"] * W, dtype=object), cols, seed)
