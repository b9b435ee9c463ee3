"""What the instructions teach with: a worked example and a practice trial, both real items
of the participant's own method.

The paper's workers were told what to do, then rated. A plain photo or two identical
images (what camstudy showed before) teaches nothing about reading an explanation, so each
participant gets two real items of the method they will rate (between design: their
condition; within design: the first explanation method of their plan, never the photo-only
baseline):

- the **worked example**, shown in the instructions with its answer explained;
- the **practice trial**, answered with feedback and not recorded.

Neither item is in the participant's plan, nor (where the study has photos enough) is any
item of a photo they will rate: an answer explained on one photo must not carry over to a
trial on the same photo. The pair
is drawn per participant from the candidates (so no one item is the example for everyone)
and is the same on every call.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from camstudy.kinds import kind_of
from study.blinding import PRACTICE
from study.models import Item, Participant, PlanEntry, Study
from study.setup import PHOTO

EXAMPLE = -2  # the image-token position of the worked example's images (PRACTICE is -1)


@dataclass(frozen=True)
class Teaching:
    example: Item | None
    practice: Item | None

    def at(self, position: int) -> Item | None:
        return {EXAMPLE: self.example, PRACTICE: self.practice}.get(position)


def teaching_items(s: Session, study: Study, pid: int) -> Teaching:
    """The worked example and the practice item of participant ``pid`` (None where the study
    has no practice, or no item qualifies)."""
    if not study.settings.get("practice"):
        return Teaching(None, None)
    person = s.execute(select(Participant.condition, Participant.seed).where(Participant.id == pid)).first()
    if person is None:
        return Teaching(None, None)
    planned = s.execute(
        select(Item.image_id, Item.method, Item.is_attention_check)
        .join(PlanEntry, PlanEntry.item_pk == Item.id)
        .where(PlanEntry.participant_id == pid)
        .order_by(PlanEntry.position)
    ).all()
    method = person.condition
    if method == "all":
        # Within design: the first explanation method the participant meets. The photo-only
        # baseline explains nothing, so a worked example of it (two identical photos) would
        # teach nothing about reading an explanation.
        first = next((p for p in planned if not p.is_attention_check and p.method != PHOTO), None)
        method = first.method if first is not None else None
    if method is None or method == PHOTO:
        return Teaching(None, None)
    images = {p.image_id for p in planned}
    items = s.scalars(
        select(Item)
        .where(
            Item.study_id == study.id,
            Item.method == method,
            Item.is_attention_check.is_(False),
            Item.id.not_in(select(PlanEntry.item_pk).where(PlanEntry.participant_id == pid)),
        )
        .order_by(Item.id)
    ).all()
    # Items of photos the participant will not rate; a study too small for that (every photo
    # is in the plan) falls back to items not in the plan.
    candidates = [it for it in items if it.image_id not in images] or items
    if not candidates:
        return Teaching(None, None)
    k = person.seed % len(candidates)
    example = candidates[k]
    # The practice on another photo than the example's, when there is one.
    others = candidates[k + 1 :] + candidates[:k]
    rest = [c for c in others if c.image_id != example.image_id] or others
    return Teaching(example, rest[0] if rest else None)


def example_text(study: Study, item: Item) -> dict:
    """The worked example's question, answer and explanation, in words (the study kind's)."""
    return kind_of(study.kind).example_text(item)


def practice_feedback(study: Study, item: Item) -> dict:
    """What the practice trial says after the participant's answer (the study kind's)."""
    return kind_of(study.kind).practice_feedback(item)
