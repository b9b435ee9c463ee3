"""Two-way cluster-robust variance of a group mean (workers x images), vectorised.

Answers in a study are clustered twice over: a worker gives many answers, and an image is
seen by many workers. The variance of a mean (an accuracy is the mean of 0/1 answers) then
follows Cameron, Gelbach & Miller (2011, "Robust inference with multiway clustering",
JBES 29(2)): with residuals ``e_i = y_i - ybar`` and ``S_c`` the sum of the residuals of
cluster ``c``,

    V = c_W sum_w S_w^2 / n^2 + c_I sum_i S_i^2 / n^2 - c_WI sum_(w,i) S_(w,i)^2 / n^2

(by worker, by image, minus the intersection: the worker-image cells, which are the single
answers when a worker sees an image once), each term with its CR1 small-sample factor
``c = G / (G - 1)`` for its G clusters. Where the difference is not positive (possible with
few clusters) V is the larger one-way variance instead (CGM's fallback for a scalar). The
reference distribution is t with ``min(G_W, G_I) - 1`` degrees of freedom (CGM's advice:
the smaller dimension limits what the data can say).

Every sum is a ``numpy.bincount`` over integer codes (hash-based ``pandas.factorize`` only
where a code space would be large), so a million answers in a few groups cost tens of
milliseconds. With a single worker (or image) in a group that dimension cannot be
estimated; the variance is then clustered by the other dimension only, and with one of
each it is the independent-answers variance (``how`` says which, per group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TWO_WAY, BY_WORKER, BY_IMAGE, INDEPENDENT = "two-way", "worker", "image", "independent"


@dataclass(frozen=True)
class GroupVariance:
    """Per group (arrays of the groups' length): ``n`` answers, ``mean``, ``v_iid`` (the
    variance of the mean treating answers as independent, ``sum e^2 / n^2``), ``v_cluster``
    (the clustered variance of the module doc), ``n_workers``, ``n_images`` (distinct
    clusters; 0 when unknown), ``df`` (the t degrees of freedom; 0 where nothing can be
    estimated) and ``how`` (TWO_WAY, BY_WORKER, BY_IMAGE or INDEPENDENT)."""

    n: np.ndarray
    mean: np.ndarray
    v_iid: np.ndarray
    v_cluster: np.ndarray
    n_workers: np.ndarray
    n_images: np.ndarray
    df: np.ndarray
    how: np.ndarray


def worker_codes(rows: pd.DataFrame) -> np.ndarray:
    """One integer per worker, a worker being a ``(mode, participant)`` pair."""
    part = pd.factorize(rows["participant"], use_na_sentinel=False)[0].astype(np.int64)
    if "mode" not in rows.columns:
        return part
    mode = pd.factorize(rows["mode"], use_na_sentinel=False)[0].astype(np.int64)
    return mode * (int(part.max(initial=0)) + 1) + part


def image_codes(rows: pd.DataFrame) -> np.ndarray | None:
    """One integer per image (``image_id``), or None without that column."""
    if "image_id" not in rows.columns:
        return None
    return pd.factorize(rows["image_id"], use_na_sentinel=False)[0].astype(np.int64)


def _cell_sums(group: np.ndarray, cluster: np.ndarray, e: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the sum over its clusters of (sum of ``e`` in the cluster)^2, and the
    number of distinct clusters it has."""
    width = int(cluster.max(initial=-1)) + 1
    combined = group * width + cluster
    if n_groups * width <= 4 * len(e) + 1024:  # a small code space: dense bincount
        s = np.bincount(combined, weights=e, minlength=n_groups * width)
        c = np.bincount(combined, minlength=n_groups * width)
        return (
            (s * s).reshape(n_groups, width).sum(axis=1),
            (c > 0).reshape(n_groups, width).sum(axis=1).astype(np.int64),
        )
    codes, uniques = pd.factorize(combined)
    s = np.bincount(codes, weights=e)
    owner = uniques // width
    return (
        np.bincount(owner, weights=s * s, minlength=n_groups),
        np.bincount(owner, minlength=n_groups).astype(np.int64),
    )


def _cr1(g: np.ndarray) -> np.ndarray:
    return np.where(g > 1, g / np.maximum(g - 1, 1), 0.0)


def group_variance(
    group: np.ndarray, y: np.ndarray, worker: np.ndarray | None, image: np.ndarray | None, n_groups: int
) -> GroupVariance:
    """The clustered variance of the mean of ``y`` in each group ``0..n_groups-1``.

    ``group``, ``worker``, ``image``: integer codes per answer (``worker`` or ``image``
    None: that dimension is unknown and not clustered on)."""
    group = np.asarray(group, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    n = np.bincount(group, minlength=n_groups).astype(np.int64)
    total = np.bincount(group, weights=y, minlength=n_groups)
    mean = np.divide(total, n, out=np.full(n_groups, np.nan), where=n > 0)
    e = y - mean[group]
    n2 = np.maximum(n, 1).astype(np.float64) ** 2
    ss = np.bincount(group, weights=e * e, minlength=n_groups)
    v_iid = ss / n2
    zeros = np.zeros(n_groups, dtype=np.int64)
    if worker is not None:
        sw, gw = _cell_sums(group, np.asarray(worker, dtype=np.int64), e, n_groups)
    else:
        sw, gw = np.zeros(n_groups), zeros
    if image is not None:
        si, gi = _cell_sums(group, np.asarray(image, dtype=np.int64), e, n_groups)
    else:
        si, gi = np.zeros(n_groups), zeros
    if worker is not None and image is not None:
        w = np.asarray(worker, dtype=np.int64)
        pair = w * (int(np.asarray(image).max(initial=-1)) + 1) + np.asarray(image, dtype=np.int64)
        codes, uniques = pd.factorize(pair)
        if len(uniques) == len(pair):  # every worker saw every image at most once: the cells are the answers
            swi, gwi = ss, n
        else:
            swi, gwi = _cell_sums(group, codes.astype(np.int64), e, n_groups)
    else:
        swi, gwi = ss, n
    vw, vi, vwi = _cr1(gw) * sw / n2, _cr1(gi) * si / n2, _cr1(gwi) * swi / n2
    two = (gw > 1) & (gi > 1)
    v_two = vw + vi - vwi
    v_two = np.where(v_two > 0, v_two, np.maximum(vw, vi))
    how = np.where(two, TWO_WAY, np.where(gw > 1, BY_WORKER, np.where(gi > 1, BY_IMAGE, INDEPENDENT)))
    v_iid_cr = _cr1(n) * v_iid  # n / (n - 1): the usual s^2 / n
    v = np.select([two, gw > 1, gi > 1], [v_two, vw, vi], default=v_iid_cr)
    df = np.select([two, gw > 1, gi > 1], [np.minimum(gw, gi) - 1, gw - 1, gi - 1], default=n - 1)
    return GroupVariance(
        n=n,
        mean=mean,
        v_iid=v_iid,
        v_cluster=v,
        n_workers=gw,
        n_images=gi,
        df=np.maximum(df, 0).astype(np.int64),
        how=how,
    )
