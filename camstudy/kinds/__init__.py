"""The study kinds: each declared once, in one module of this package (see
:mod:`camstudy.kinds.base` for what a kind declares, and ``docs/study-kinds.md`` for adding
one). Every stage asks :func:`kind_of` instead of comparing a kind's name.
"""

from __future__ import annotations

from camstudy.kinds.base import (
    Analysis,
    AnswerRejected,
    ChoiceKind,
    Display,
    Outcome,
    PlanContext,
    Scored,
    StudyKind,
    Widget,
    WidgetType,
    tilted_distribution,
)
from camstudy.kinds.class_discrimination import KIND as CLASS_DISCRIMINATION
from camstudy.kinds.hive_distinction import KIND as HIVE_DISTINCTION
from camstudy.kinds.trust import KIND as TRUST

# In planning order: the plans' seeded draws happen in this order, so a new kind goes last.
KINDS: dict[str, StudyKind] = {str(k.name): k for k in (CLASS_DISCRIMINATION, TRUST, HIVE_DISTINCTION)}


def kind_of(name: str) -> StudyKind:
    """The kind called ``name``; KeyError names the known ones."""
    try:
        return KINDS[str(name)]
    except KeyError:
        raise KeyError(f"unknown study kind {name!r} (known: {', '.join(KINDS)})") from None


__all__ = [
    "CLASS_DISCRIMINATION",
    "HIVE_DISTINCTION",
    "KINDS",
    "TRUST",
    "Analysis",
    "AnswerRejected",
    "ChoiceKind",
    "Display",
    "Outcome",
    "PlanContext",
    "Scored",
    "StudyKind",
    "Widget",
    "WidgetType",
    "kind_of",
    "tilted_distribution",
]
