"""The report's tables as a reader sees them: words for headers, formatted numbers, Markdown and LaTeX.

The CSV files keep the column identifiers and full-precision numbers (they are the data); this
module turns a table into a :class:`Display`: a title in words, columns with word labels
(``ci_low`` -> "95% CI low"), cells as formatted strings (p-values APA style, method names in
words), the constant descriptive columns (the model, the CI method) moved into notes under the
table, and per-row notes (agreement's reasons) listed below it rather than in a wide column.
The HTML template, :func:`to_markdown` and :func:`to_latex` all render the same
:class:`Display`, so the three show the same numbers under the same headers.

Which kind of table a frame is comes from its name and columns (:func:`table_kind`), so a
significance hook may name its tables freely (the benchmark names the GEE table "gee").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NOT_COMPUTABLE = "not computable"
MISSING = "n/a"

# Display names of the explanation methods (gradcam/engine.py METHODS; stimuli/demo.py
# METHOD_TITLES names the first three the same way). "photo" is the trust study's photo-only
# baseline; class-discrimination attention checks also carry it, but they are never analysed.
METHOD_NAMES = {
    "gradcam": "Grad-CAM",
    "guided_backprop": "Guided Backprop",
    "guided_gradcam": "Guided Grad-CAM",
    "deconvnet": "Deconvnet",
    "deconv_gradcam": "Deconvnet Grad-CAM",
    "counterfactual": "Counterfactual Grad-CAM",
    "photo": "Photo only (baseline)",
}


def method_name(method: object) -> str:
    """The method's name in words ("guided_gradcam" -> "Guided Grad-CAM"); unknown ids as they are."""
    return METHOD_NAMES.get(str(method), str(method))


# Column id -> header. Per-kind overrides (KIND_LABELS) say what an interval is of, where the
# same id means different things in different tables (GEE's ci_low is an odds ratio's).
COLUMN_LABELS = {
    "method": "Method",
    "method_a": "Method A",
    "method_b": "Method B",
    "model_role": "Model role",
    "reference": "Reference",
    "term": "Term",
    "n": "Answers",
    "n_answers": "Answers",
    "n_workers": "Workers",
    "n_images": "Images",
    "k": "Correct",
    "accuracy": "Accuracy",
    "ci_low": "95% CI low",
    "ci_high": "95% CI high",
    "ci_method": "CI method",
    "wilson_low": "Wilson 95% CI low (ignores clustering)",
    "wilson_high": "Wilson 95% CI high (ignores clustering)",
    "p_value": "p",
    "p_value_holm": "p (Holm)",
    "p_holm": "p (Holm)",
    "binom_p": "Exact binomial p (ignores clustering)",
    "significant": "Significant (Holm, α = .05)",
    "odds_ratio": "Odds ratio",
    "or_low": "Odds ratio 95% CI low",
    "or_high": "Odds ratio 95% CI high",
    "log_or": "log odds ratio",
    "se": "SE (log odds ratio)",
    "z": "z",
    "log_odds": "log odds ratio",
    "posterior_sd": "Posterior SD",
    "coef": "Coefficient (log odds ratio)",
    "mean": "Mean score (answers)",
    "sd": "SD (answers)",
    "worker_mean": "Mean of worker means",
    "worker_sd": "SD of worker means",
    "worker_t_low": "t 95% CI low (worker means)",
    "worker_t_high": "t 95% CI high (worker means)",
    "n_nonzero": "Workers with a non-zero mean",
    "wilcoxon_stat": "Wilcoxon W",
    "wilcoxon_p": "Wilcoxon p",
    "wilcoxon_p_holm": "Wilcoxon p (Holm)",
    "t_stat": "t",
    "t_p": "t-test p",
    "t_p_holm": "t-test p (Holm)",
    "t_df": "t df",
    "df": "df",
    "mean_diff": "Mean paired difference (A − B)",
    "lower_score": "Score at or below",
    "upper_score": "Score above",
    "cut_point": "Cut point (logit scale)",
    "effect": "Random effect",
    "sd_logit": "SD (logit scale, approximate)",
    "mean_ms": "Mean (ms)",
    "q10_ms": "10th pct (ms)",
    "q25_ms": "25th pct (ms)",
    "median_ms": "Median (ms)",
    "q75_ms": "75th pct (ms)",
    "q90_ms": "90th pct (ms)",
    "bin_low_ms": "Bin from (ms)",
    "bin_high_ms": "Bin to (ms)",
    "count": "Count",
    "share": "Share",
    "step": "Step",
    "meaning": "Meaning",
    "quantity": "Quantity",
    "value": "Value",
    "rule": "Rule",
    "software": "Software",
    "version": "Version",
    "level": "Level",
    "column": "Rated column",
    "variable": "Computed on",
    "n_items": "Items",
    "n_participants": "Raters",
    "fleiss_kappa": "Fleiss' κ",
    "fleiss_z": "Fleiss z",
    "fleiss_p": "Fleiss p",
    "fleiss_n_items": "Fleiss items",
    "fleiss_n_raters": "Raters per item",
    "fleiss_label": "Fleiss (Landis–Koch)",
    "fleiss_note": "Fleiss note",
    "alpha": "Krippendorff's α",
    "alpha_low": "α 95% CI low",
    "alpha_high": "α 95% CI high",
    "alpha_level": "α level",
    "alpha_n_items": "α items",
    "alpha_label": "α (Landis–Koch)",
    "alpha_note": "α note",
    "cohen_kappa": "Mean Cohen's κ",
    "cohen_weights": "Cohen weights",
    "cohen_n_pairs": "Rater pairs",
    "cohen_label": "Cohen (Landis–Koch)",
    "cohen_note": "Cohen note",
    "model": "Model",
}

# The trust tests against 0: the clustered one (the test of the 95% CI) and the per-worker
# ones, which ignore that workers rated the same images.
TRUST_TEST_LABELS = {
    "p_value": "p vs 0 (clustered)",
    "p_value_holm": "p vs 0 (clustered, Holm)",
    "wilcoxon_p": "Wilcoxon p (ignores image clustering)",
    "wilcoxon_p_holm": "Wilcoxon p (Holm; ignores image clustering)",
    "t_p": "t-test p (ignores image clustering)",
    "t_p_holm": "t-test p (Holm; ignores image clustering)",
}

KIND_LABELS: dict[str, dict[str, str]] = {
    "accuracy": {"ci_low": "95% CI low", "ci_high": "95% CI high", "p_value": "p vs chance"},
    "gee": {"ci_low": "Odds ratio 95% CI low", "ci_high": "Odds ratio 95% CI high"},
    # "≈95%": the variational intervals are approximate (and too narrow), said in the title too.
    "mixed": {
        "log_odds": "log odds ratio",
        "posterior_sd": "Posterior SD",
        "ci_low": "log odds ratio ≈95% interval low",
        "ci_high": "log odds ratio ≈95% interval high",
        "or_low": "Odds ratio ≈95% interval low",
        "or_high": "Odds ratio ≈95% interval high",
        "odds_ratio": "Odds ratio (conditional)",
    },
    "ordinal": {"ci_low": "Coefficient 95% CI low", "ci_high": "Coefficient 95% CI high", "se": "SE (coefficient)"},
    "trust_pairwise": {
        "ci_low": "Difference 95% CI low",
        "ci_high": "Difference 95% CI high",
        "n_workers": "Workers (rated both)",
    },
    "trust_summary": {"mean": "Mean score (answers)", **TRUST_TEST_LABELS},
    "trust_one_sample": TRUST_TEST_LABELS,
    "score_shares": {"n": "Answers"},
    "flow": {"count": "Count", "step": "Step id (CSV)"},
}

# The order in which a kind's columns are shown (the others follow in their own order): the
# odds ratio and its interval together and first, the log-scale numbers after them.
KIND_ORDER: dict[str, list[str]] = {
    "accuracy": [
        "method",
        "model_role",
        "n",
        "n_workers",
        "n_images",
        "k",
        "accuracy",
        "ci_low",
        "ci_high",
        "p_value",
        "wilson_low",
        "wilson_high",
        "binom_p",
    ],
    "gee": [
        "method_a",
        "method_b",
        "odds_ratio",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "significant",
        "log_or",
        "se",
        "z",
        "n_answers",
        "n_workers",
        "n_images",
    ],
    "mixed": [
        "method",
        "odds_ratio",
        "or_low",
        "or_high",
        "log_odds",
        "posterior_sd",
        "ci_low",
        "ci_high",
        "n_answers",
        "n_workers",
        "n_images",
    ],
    "ordinal": [
        "term",
        "odds_ratio",
        "or_low",
        "or_high",
        "coef",
        "se",
        "ci_low",
        "ci_high",
        "z",
        "p_value",
        "n_answers",
        "n_workers",
        "n_images",
    ],
    "trust_summary": [
        "method",
        "n_answers",
        "n_workers",
        "n_images",
        "mean",
        "ci_low",
        "ci_high",
        "p_value",
        "sd",
        "worker_mean",
        "worker_sd",
        "worker_t_low",
        "worker_t_high",
    ],
    "trust_pairwise": ["method_a", "method_b", "n_workers", "n_answers", "n_images", "mean_diff", "ci_low", "ci_high"],
    "trust_one_sample": [
        "method",
        "n_answers",
        "n_workers",
        "n_images",
        "mean",
        "ci_low",
        "ci_high",
        "p_value",
        "p_value_holm",
        "sd",
        "worker_mean",
        "worker_sd",
        "worker_t_low",
        "worker_t_high",
        "n_nonzero",
        "wilcoxon_stat",
        "wilcoxon_p",
        "wilcoxon_p_holm",
        "t_stat",
        "t_p",
        "t_p_holm",
    ],
    "agreement": [
        "method",
        "n_items",
        "n_participants",
        "n_answers",
        "fleiss_kappa",
        "fleiss_label",
        "fleiss_z",
        "fleiss_p",
        "alpha",
        "alpha_low",
        "alpha_high",
        "alpha_label",
        "cohen_kappa",
        "cohen_label",
        "cohen_n_pairs",
    ],
    "flow": ["meaning", "count", "step"],
}

# Descriptive columns that are usually one value for the whole table: shown once, in a note.
NOTE_COLUMNS = {
    "model": "Model",
    "ci_method": "CI method",
    "reference": "Reference method",
    "level": "Level",
    "column": "Rated column",
    "alpha_level": "Krippendorff's α level",
    "cohen_weights": "Cohen weights",
    "variable": "Computed on",
}
# Free-text columns listed under the table, one line per row, instead of a wide column.
ROW_NOTE_COLUMNS = ("fleiss_note", "alpha_note", "cohen_note")
# Columns not shown because the row notes already say them (agreement: items and raters used).
HIDDEN = {"agreement": ("fleiss_n_items", "fleiss_n_raters", "alpha_n_items")}
# The whole model's sample, one value per table: shown once, in a note, where it is constant.
SAMPLE_COLUMNS = ("n_answers", "n_workers", "n_images")
MODEL_KINDS = ("gee", "mixed", "ordinal")
# Cell values in words, per column (the CSV keeps the ids).
VALUE_WORDS = {"effect": {"worker": "Worker (random intercept)", "image": "Image (random intercept)"}}
# Test statistics: two decimals; rank sums: whole numbers where they are.
STAT_COLUMNS = ("z", "t_stat", "fleiss_z")
RANK_COLUMNS = ("wilcoxon_stat",)
METHOD_COLUMNS = ("method", "method_a", "method_b", "reference")
# Agreement estimates: NaN means "no evidence either way", never 0.
AGREEMENT_VALUES = ("fleiss_kappa", "fleiss_z", "fleiss_p", "alpha", "alpha_low", "alpha_high", "cohen_kappa")

# The exclusion flow's steps in words (the CSV keeps the ids).
FLOW_LABELS = {
    "enrolled": "Enrolled (participants with at least one answer)",
    "completed": "Completed",
    "screened_out": "Screened out",
    "active": "Still active (stopped part-way)",
    "excluded_attention": "Excluded: failed attention checks",
    "excluded_too_fast": "Excluded: median reaction time too fast",
    "excluded_incomplete": "Excluded: incomplete",
    "excluded": "Excluded (each participant once)",
    "analysed_participants": "Analysed participants",
    "answers": "Answers (all rows, checks included)",
    "analysed_answers": "Analysed answers (no attention checks)",
}

TITLES = {
    "exclusion_flow": "Exclusion flow",
    "accuracy_by_method": "Accuracy per method",
    "accuracy_by_model_role": "Accuracy per model role",
    "accuracy_by_method_model_role": "Accuracy per method and model role",
    "trust_by_method": "Trust scores per method",
    "trust_score_shares": "Score shares per method",
    "rt_by_method": "Reaction times per method",
    "rt_histogram": "Reaction-time histogram per method",
    "agreement": "Inter-rater agreement per method",
}
KIND_TITLES = {
    "gee": "Method comparisons: GEE logistic model, clustered by worker",
    "mixed": "Method effects: crossed worker × image mixed model (variational Bayes; intervals approximate)",
    "mixed_random": "Mixed model: random-effect SDs (variational Bayes; approximate)",
    "trust_one_sample": "Trust per method against 0 (Holm across methods)",
    "trust_pairwise": "Trust: paired comparisons between methods (workers who rated both)",
    "ordinal": "Ordinal (proportional-odds) logistic model of the trust score",
    "ordinal_cuts": "Ordinal model: cut points",
}


@dataclass(frozen=True)
class Column:
    """One shown column: its id (the CSV's), its header in words, whether it holds numbers,
    and whether its cells should not wrap (method names: "Grad-CAM" must not break at the hyphen)."""

    id: str
    label: str
    numeric: bool
    nowrap: bool = False


@dataclass
class Display:
    """A table ready to show: ``name`` (the file stem), ``title``, ``columns``, ``rows`` (cells
    as strings), ``notes`` (lines under the table) and ``row_notes`` (one line per row note)."""

    name: str
    kind: str
    title: str
    columns: list[Column]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    row_notes: list[str] = field(default_factory=list)

    @property
    def headers(self) -> list[str]:
        return [c.label for c in self.columns]


# --------------------------------------------------------------------------------------
# What kind of table


def table_kind(name: str, df: pd.DataFrame) -> str:
    """The kind of ``df`` (named ``name``), from its columns: "gee", "mixed", "mixed_random",
    "ordinal", "ordinal_cuts", "trust_one_sample", "trust_pairwise", "accuracy",
    "trust_summary", "score_shares", "rt", "rt_histogram", "agreement", "flow" or "generic"."""
    cols = set(df.columns)
    if {"method_a", "method_b", "odds_ratio", "log_or"} <= cols:
        return "gee"
    if {"method_a", "method_b", "mean_diff"} <= cols:
        return "trust_pairwise"
    if {"log_odds", "posterior_sd"} <= cols:
        return "mixed"
    if {"effect", "sd_logit"} <= cols:
        return "mixed_random"
    if {"lower_score", "upper_score", "cut_point"} <= cols:
        return "ordinal_cuts"
    if {"term", "coef", "odds_ratio"} <= cols:
        return "ordinal"
    if {"worker_mean", "wilcoxon_p"} <= cols:
        return "trust_one_sample" if "wilcoxon_p_holm" in cols else "trust_summary"
    if {"accuracy", "k", "n"} <= cols:
        return "accuracy"
    if {"share_0", "n_0"} <= cols:
        return "score_shares"
    if {"bin_low_ms", "bin_high_ms"} <= cols:
        return "rt_histogram"
    if {"median_ms", "mean_ms"} <= cols:
        return "rt"
    if {"fleiss_kappa", "alpha"} <= cols:
        return "agreement"
    if {"step", "count"} <= cols:
        return "flow"
    return "generic"


def table_title(name: str, kind: str) -> str:
    """The table's heading in words."""
    if name in TITLES:
        return TITLES[name]
    if kind in KIND_TITLES:
        return KIND_TITLES[kind]
    return humanize(name.removeprefix("significance_"))


def humanize(identifier: str) -> str:
    """``"n_items_shown"`` -> "N items shown": the fallback header of an unknown column."""
    words = re.sub(r"[_\s]+", " ", str(identifier)).strip()
    return words[:1].upper() + words[1:] if words else str(identifier)


def column_label(column: str, kind: str) -> str:
    """The header of ``column`` in a table of ``kind``."""
    if column in KIND_LABELS.get(kind, {}):
        return KIND_LABELS[kind][column]
    if column in COLUMN_LABELS:
        return COLUMN_LABELS[column]
    m = re.fullmatch(r"(n|share)_(-?\d+)", column)  # score shares: n_-2 .. share_2
    if m:
        score = int(m.group(2))
        return f"{'Answers' if m.group(1) == 'n' else 'Share'} {f'{score:+d}' if score else '0'}"
    return humanize(column)


# --------------------------------------------------------------------------------------
# Numbers


def is_p_column(column: str) -> bool:
    """p-value columns: ``p``, ``p_value``, ``p_holm``, ``binom_p``, ``t_p``, ``wilcoxon_p_holm``..."""
    return column == "p" or column.startswith("p_") or column.endswith("_p") or "_p_" in column


def format_p(p: float) -> str:
    """A p-value APA style, for a table cell: ".002", "< .001", "> .999"; no leading zero."""
    if p is None or not math.isfinite(p):
        return MISSING
    if p < 0.001:
        return "< .001"
    if p > 0.999:
        return "> .999"
    return f"{p:.3f}".removeprefix("0")


def format_number(v: float) -> str:
    """A float for a table cell: 3 decimals, thousands separated above 100 (whole numbers),
    two significant digits for magnitudes under .001 (so a small SE is not shown as 0)."""
    if v is None or not math.isfinite(v):
        return MISSING
    if v == 0:
        return "0.000"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) < 0.001:
        return f"{v:.2g}"
    return f"{v:.3f}"


def _cell(column: str, value: object, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return NOT_COMPUTABLE if kind == "agreement" and column in AGREEMENT_VALUES else MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if is_p_column(column):
            return format_p(v)
        if column in STAT_COLUMNS and math.isfinite(v):
            return f"{v:.2f}"
        if column in RANK_COLUMNS and math.isfinite(v):
            return f"{v:.0f}" if v.is_integer() else f"{v:.1f}"
        return format_number(v)
    return str(value)


def _term_name(term: str, reference: str | None) -> str:
    """An ordinal-model term in words: "method[guided_gradcam]" -> "Guided Grad-CAM vs <reference>"."""
    m = re.fullmatch(r"method\[(.*)\]", term)
    if m:
        return f"{method_name(m.group(1))} vs {method_name(reference)}" if reference else method_name(m.group(1))
    if term == "stronger_left":
        return "Stronger model shown on the left"
    return term


# --------------------------------------------------------------------------------------
# Display


def display(
    name: str, df: pd.DataFrame, kind: str | None = None, title: str | None = None, notes: Sequence[str] = ()
) -> Display:
    """``df`` as shown in the report (see the module doc). ``notes`` go under the table first."""
    kind = kind or table_kind(name, df)
    if kind == "flow" and "meaning" not in df.columns and "step" in df.columns:
        df = df.assign(meaning=[FLOW_LABELS.get(str(k), str(k)) for k in df["step"]])
    out_notes = list(notes)
    shown = list(df.columns)
    for col, what in NOTE_COLUMNS.items():
        if col in df.columns and kind != "generic":
            values = df[col].dropna().astype(str).unique()
            if len(values) <= 1:
                shown.remove(col)
                if len(values) == 1:
                    value = method_name(values[0]) if col == "reference" else values[0]
                    out_notes.append(f"{what}: {value}.")
    row_note_cols = [c for c in ROW_NOTE_COLUMNS if c in shown]
    for c in row_note_cols:
        shown.remove(c)
    if row_note_cols:
        shown = [c for c in shown if c not in HIDDEN.get(kind, ())]
    if kind in MODEL_KINDS and len(df) and all(c in shown and df[c].nunique() == 1 for c in SAMPLE_COLUMNS):
        answers, workers, images = (int(df[c].iloc[0]) for c in SAMPLE_COLUMNS)
        out_notes.append(f"Fitted on {answers:,} answers from {workers:,} workers on {images:,} images.")
        shown = [c for c in shown if c not in SAMPLE_COLUMNS]
    if kind == "ordinal" and df.attrs.get("reference"):
        se = "" if df.attrs.get("inference") else "; cluster-robust standard errors by worker"
        out_notes.append(
            f"Reference method: {method_name(df.attrs['reference'])}. Odds ratios are of a higher "
            f"score (towards the stronger model){se}."
        )
    order = KIND_ORDER.get(kind, [])
    shown = [c for c in order if c in shown] + [c for c in shown if c not in order]
    reference = df.attrs.get("reference") if kind == "ordinal" else None
    columns = [Column(c, column_label(c, kind), _numeric(df[c]), nowrap=c in METHOD_COLUMNS) for c in shown]
    rows = []
    for record in df[shown].itertuples(index=False, name=None):
        cells = []
        for c, v in zip(shown, record, strict=True):
            if c in METHOD_COLUMNS and isinstance(v, str):
                cells.append(method_name(v))
            elif c == "term" and kind == "ordinal":
                cells.append(_term_name(str(v), reference))
            elif c in VALUE_WORDS and isinstance(v, str):
                cells.append(VALUE_WORDS[c].get(v, v))
            else:
                cells.append(_cell(c, v, kind))
        rows.append(cells)
    row_notes = []
    if row_note_cols:
        label_col = "method" if "method" in df.columns else df.columns[0]
        for i in range(len(df)):
            said = [
                f"{COLUMN_LABELS.get(c, humanize(c)).replace(' note', '')}: {df[c].iloc[i]}"
                for c in row_note_cols
                if isinstance(df[c].iloc[i], str) and df[c].iloc[i]
            ]
            if said:
                row_notes.append(f"{method_name(df[label_col].iloc[i])}: " + "; ".join(said) + ".")
    return Display(
        name=name,
        kind=kind,
        title=title or table_title(name, kind),
        columns=columns,
        rows=rows,
        notes=out_notes,
        row_notes=row_notes,
    )


# The most columns one HTML table shows; wider tables are shown as two (the CSV, Markdown and
# LaTeX files keep one), so that none needs horizontal scrolling at 1200 px.
MAX_COLUMNS = 13
# Where a wide table of a kind is split. Trust: the mean over answers with its clustered
# interval and test in the first table, the per-worker means and their tests (which ignore
# the images) in the second.
KIND_SPLIT = {"trust_summary": "worker_mean", "trust_one_sample": "worker_mean", "agreement": "alpha"}


def parts(d: Display, max_columns: int = MAX_COLUMNS) -> list[Display]:
    """``d`` as one table, or as two when it has more than ``max_columns`` columns: both
    repeat its leading text columns (the method, the model role), the second starts at the
    kind's split column (else halfway); the notes go under the second."""
    if len(d.columns) <= max_columns:
        return [d]
    keys = 0
    while keys < len(d.columns) and not d.columns[keys].numeric:
        keys += 1
    ids = [c.id for c in d.columns]
    at = (
        ids.index(KIND_SPLIT[d.kind])
        if KIND_SPLIT.get(d.kind) in ids[keys + 1 :]
        else keys + (len(d.columns) - keys + 1) // 2
    )
    cut = [list(range(keys)) + list(range(keys, at)), list(range(keys)) + list(range(at, len(d.columns)))]
    out = []
    for i, idx in enumerate(cut):
        out.append(
            Display(
                name=d.name,
                kind=d.kind,
                title=d.title,
                columns=[d.columns[j] for j in idx],
                rows=[[row[j] for j in idx] for row in d.rows],
                notes=d.notes if i == 1 else [],
                row_notes=d.row_notes if i == 1 else [],
            )
        )
    return out


def _numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


# --------------------------------------------------------------------------------------
# Markdown and LaTeX


def to_markdown(d: Display) -> str:
    """``d`` as a GitHub-flavoured Markdown pipe table with its title above and notes below."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = [f"**{esc(d.title)}**", ""]
    lines.append("| " + " | ".join(esc(h) for h in d.headers) + " |")
    lines.append("|" + "|".join("---:" if c.numeric else ":---" for c in d.columns) + "|")
    for row in d.rows:
        lines.append("| " + " | ".join(esc(c) for c in row) + " |")
    if d.notes:  # an APA table note: one paragraph
        lines += ["", "*Note.* " + " ".join(esc(n) for n in d.notes)]
    if d.row_notes:
        lines += ["", *(f"- {esc(n)}" for n in d.row_notes)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
# Characters pdflatex does not take as text without extra packages: written as math.
_LATEX_SYMBOLS = {
    "≈": r"$\approx$",
    "α": r"$\alpha$",
    "κ": r"$\kappa$",
    "×": r"$\times$",
    "−": r"$-$",
    "–": "--",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    """``text`` safe inside a LaTeX table: the ten special characters escaped, < > as text
    commands, and the Greek letters and math signs the labels use as math."""
    out = []
    for ch in str(text):
        out.append(_LATEX_SPECIAL.get(ch) or _LATEX_SYMBOLS.get(ch) or ch)
    return "".join(out)


def to_latex(d: Display, label: str | None = None) -> str:
    """``d`` as a LaTeX ``table`` with a booktabs ``tabular`` (``\\toprule``, ``\\midrule``,
    ``\\bottomrule``; needs ``\\usepackage{booktabs}``), the title as caption and the notes
    under the table."""
    spec = "".join("r" if c.numeric else "l" for c in d.columns)
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_escape(d.title)}}}",
        rf"\label{{tab:{label or d.name}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in d.headers) + r" \\",
        r"\midrule",
    ]
    for row in d.rows:
        lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if d.notes or d.row_notes:
        lines.append(r"\par\smallskip\footnotesize")
    if d.notes:  # an APA table note: one paragraph
        lines.append(r"\textit{Note.} " + " ".join(latex_escape(n) for n in d.notes) + r"\par")
    lines += [latex_escape(n) + r"\par" for n in d.row_notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
