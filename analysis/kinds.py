"""The study kinds as the analysis reads them: every branch of the analysis asks the kind's
declaration (:mod:`camstudy.kinds`: ``words``, ``columns`` and ``analysis``) instead of
testing its name, so that a new kind whose answers are right or wrong (accuracy against
chance) or a point on a scale gets the matching analysis.

The helpers take the kind's name as it stands in an export's ``study_kind`` column; a
missing or unknown name is no kind (None), and the callers keep their old fallback for it.
Like :mod:`camstudy.kinds`, this module imports no pandas at import time: the command line
reads it (through :mod:`analysis.preregistration`) whenever it builds its parser.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from camstudy.kinds import KINDS, Outcome, StudyKind, kind_of

if TYPE_CHECKING:
    import pandas as pd


def known(name: object) -> StudyKind | None:
    """The kind called ``name``; None for a missing name (None, NaN) or one no kind has."""
    if name is None:
        return None
    try:
        return kind_of(str(name))
    except KeyError:
        return None


def is_accuracy(name: object) -> bool:
    """Whether ``name`` is a kind whose answers are right or wrong (accuracy against chance)."""
    kind = known(name)
    return kind is not None and kind.analysis.outcome is Outcome.ACCURACY


def is_scale(name: object) -> bool:
    """Whether ``name`` is a kind whose answers are a point on a scale (tested against 0)."""
    kind = known(name)
    return kind is not None and kind.analysis.outcome is Outcome.SCALE


def score_columns() -> tuple[str, ...]:
    """The scale kinds' score columns (``analysis.score_column``), in the kinds' order."""
    return tuple(dict.fromkeys(k.analysis.score_column for k in KINDS.values() if k.analysis.score_column))


def kind_from_columns(columns: Iterable[str]) -> str:
    """The kind of an export without a ``study_kind``: the first kind whose score column
    (``analysis.score_column``) it has, else the first kind scored right or wrong."""
    have = set(columns)
    for kind in KINDS.values():
        if kind.analysis.score_column and kind.analysis.score_column in have:
            return str(kind.name)
    return str(next(k.name for k in KINDS.values() if k.analysis.outcome is Outcome.ACCURACY))


def chance_level(name: str, answers: pd.DataFrame) -> float:
    """The accuracy of guessing for a study of kind ``name``: the kind's ``analysis.chance``,
    or where that is None, one over each analysed item's number of options (the ``options``
    column, ";"-joined), averaged over the analysed answers (attention checks left out): 1/2
    when every item offers two options. NaN for a kind that is not scored right or wrong, or
    when no analysed answer names its options."""
    kind = known(name)
    if kind is None or kind.analysis.outcome is not Outcome.ACCURACY:
        return float("nan")
    if kind.analysis.chance is not None:
        return float(kind.analysis.chance)
    if "options" not in answers.columns:
        return float("nan")
    options = answers["options"]
    if "is_attention_check" in answers.columns:
        options = options[~answers["is_attention_check"].astype(bool).to_numpy()]
    # Each distinct option list once (a study has few, an answer frame may have a million rows).
    counts = options.value_counts(sort=False, dropna=True)
    lists = counts.index.astype("str")
    counts = counts[lists != ""]
    if not len(counts):
        return float("nan")
    n = counts.index.astype("str").str.count(";").to_numpy(dtype="float64") + 1  # ";"-joined, as exported
    weight = counts.to_numpy(dtype="float64")
    return float((weight / n).sum() / weight.sum())
