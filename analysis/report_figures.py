"""The report's figures, drawn from its tables (so from the CSVs): each caption names the CSV.

matplotlib on the Agg backend (no display); method names in words on the axes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.kinds import is_accuracy
from analysis.report_tables import NOT_COMPUTABLE, method_name
from analysis.words import trust_estimate

SCORES = (-2, -1, 0, 1, 2)


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    _pyplot().close(fig)
    return path


def draw_figures(
    kind: str, tables: Mapping[str, pd.DataFrame], out: Path, chance: float
) -> dict[str, tuple[Path, str]]:
    """name -> (PNG path, caption); every caption names the CSV the figure was drawn from."""
    figs: dict[str, tuple[Path, str]] = {}
    if is_accuracy(kind):
        acc = tables["accuracy_by_method"]
        interval = (
            "clustered 95% intervals (by worker and image)"
            if "ci_method" in acc.columns
            else "95% Wilson intervals (ignoring clustering)"
        )
        figs["accuracy_by_method"] = (
            _accuracy_figure(acc, out / "accuracy_by_method.png", chance),
            f"Accuracy per method with {interval} (error bars) and chance ({chance:g}, dashed). "
            "Drawn from accuracy_by_method.csv.",
        )
    else:
        summary = tables["trust_by_method"]
        what = (
            "mean score with its clustered 95% interval"
            if trust_estimate(summary) == "mean"
            else "mean of the per-worker mean scores with its 95% t interval"
        )
        figs["trust_scores"] = (
            _trust_figure(tables["trust_score_shares"], summary, out / "trust_scores.png"),
            "Left: share of each score (-2..2, positive favours the stronger model) per method. Right: "
            f"{what}. Drawn from trust_score_shares.csv (left) and trust_by_method.csv (right).",
        )
    figs["rt_by_method"] = (
        _rt_figure(tables["rt_histogram"], out / "rt_by_method.png"),
        "Reaction-time distribution per method (share of the method's analysed answers per log-spaced "
        "bin). Drawn from rt_histogram.csv (quantiles in rt_by_method.csv).",
    )
    figs["agreement"] = (
        _agreement_figure(tables["agreement"], out / "agreement.png"),
        "Krippendorff's alpha per method with its percentile bootstrap 95% interval; methods where "
        "alpha is not computable are marked as such (not drawn as 0). Drawn from agreement.csv.",
    )
    return figs


def _accuracy_figure(table: pd.DataFrame, path: Path, chance: float) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(table) + 2), 3.6))
    x = np.arange(len(table))
    acc = table["accuracy"].to_numpy(dtype=float)
    err = np.vstack([acc - table["ci_low"].to_numpy(dtype=float), table["ci_high"].to_numpy(dtype=float) - acc])
    ax.bar(x, acc, color="#4c78a8", width=0.6)
    ax.errorbar(x, acc, yerr=err, fmt="none", ecolor="black", capsize=4)
    ax.axhline(chance, color="#d62728", linestyle="--", linewidth=1, label=f"chance ({chance:g})")
    ax.set_xticks(x, [method_name(m) for m in table["method"]], rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _trust_figure(shares: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, max(3.0, 0.6 * len(shares) + 1.5)))
    y = np.arange(len(shares))
    colors = ["#b2182b", "#ef8a62", "#d9d9d9", "#67a9cf", "#2166ac"]
    start = np.zeros(len(shares))
    for s, c in zip(SCORES, colors, strict=True):
        w = shares[f"share_{s}"].to_numpy(dtype=float)
        left.barh(y, w, left=start, color=c, label=f"{s:+d}" if s else "0")
        start += w
    left.set_yticks(y, [method_name(m) for m in shares["method"]])
    left.set_xlim(0, 1)
    left.set_xlabel("share of answers")
    left.legend(ncol=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ys = np.arange(len(summary))
    estimate = trust_estimate(summary)
    mean = summary[estimate].to_numpy(dtype=float)
    err = np.vstack([mean - summary["ci_low"].to_numpy(dtype=float), summary["ci_high"].to_numpy(dtype=float) - mean])
    right.errorbar(mean, ys, xerr=np.nan_to_num(err), fmt="o", color="#4c78a8", capsize=4)
    right.axvline(0, color="#d62728", linestyle="--", linewidth=1)
    right.set_yticks(ys, [method_name(m) for m in summary["method"]])
    right.set_xlim(-2, 2)
    right.set_ylim(-0.5, len(summary) - 0.5)
    right.set_xlabel("mean score" if estimate == "mean" else "mean score (per-worker means)")
    return _save(fig, path)


def _rt_figure(hist: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for method, part in hist.groupby("method", sort=True):
        edges = np.append(part["bin_low_ms"].to_numpy(dtype=float), part["bin_high_ms"].to_numpy(dtype=float)[-1])
        ax.stairs(part["share"].to_numpy(dtype=float), edges, label=method_name(method))
    ax.set_xscale("log")
    ax.set_xlabel("reaction time (ms, log scale)")
    ax.set_ylabel("share of answers")
    if len(hist):
        ax.legend(fontsize=8)
    return _save(fig, path)


def _agreement_figure(table: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(table) + 2), 3.6))
    for i, row in enumerate(table.itertuples(index=False)):
        alpha = float(row.alpha)
        if math.isfinite(alpha):
            low, high = float(row.alpha_low), float(row.alpha_high)
            err = [[alpha - low], [high - alpha]] if math.isfinite(low) and math.isfinite(high) else None
            ax.errorbar([i], [alpha], yerr=err, fmt="o", color="#4c78a8", capsize=4)
        else:
            ax.text(
                i,
                0.5,
                NOT_COMPUTABLE,
                ha="center",
                va="center",
                rotation=90,
                fontsize=8,
                color="#777777",
                transform=ax.get_xaxis_transform(),
            )
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.set_xticks(np.arange(len(table)), [method_name(m) for m in table["method"]], rotation=20, ha="right")
    ax.set_xlim(-0.7, len(table) - 0.3)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("Krippendorff's alpha")
    return _save(fig, path)
