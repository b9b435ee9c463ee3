"""The admin pages' queries: progress per mode and condition, time on task, the exclusion
preview and the pre-registration record of a study. Plain functions of a session and a study,
so they can be tested without a request.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import and_, case, func, select

from camstudy.kinds import Outcome, kind_of
from study.models import MODES, STATUSES, Answer, Item, Participant, PlanEntry, Stimulus, Study

RECENT = 50  # participants listed per mode on a study's page


def status_counts(c: dict) -> dict:
    return {"enrolled": c.get("enrolled", 0), **{st: c.get(st, 0) for st in STATUSES}}


def _spread(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    median = statistics.median(values)
    return {"min": min(values), "median": int(median) if median == int(median) else median, "max": max(values)}


def study_progress(s, study: Study) -> tuple[dict[str, dict], dict[str, str]]:
    """``(per mode: participants per condition, answers, raters per item, live results,
    recent participants; model name per role)``."""
    from study.export import seconds_between

    conditions = list(study.settings.get("conditions", []))
    target = int(study.settings.get("raters_per_item", 0))
    items = s.scalars(select(Item).where(Item.study_id == study.id).order_by(Item.id)).all()
    role_models = dict(
        s.execute(
            select(Stimulus.model_role, Stimulus.model)
            .where(Stimulus.study_id == study.id, Stimulus.model_role.in_(("stronger", "weaker")))
            .distinct()
        ).all()
    )
    out = {
        m: {
            "conditions": {c: status_counts({}) for c in conditions},
            "answers": 0,
            "raters": {},
            "results": [],
            "checks": {"n": 0, "passed": 0},
            "participants": [],
        }
        for m in MODES
    }

    for mode, cond, status, n in s.execute(
        select(Participant.mode, Participant.condition, Participant.status, func.count())
        .where(Participant.study_id == study.id)
        .group_by(Participant.mode, Participant.condition, Participant.status)
    ):
        cell = out[mode]["conditions"].setdefault(cond, status_counts({}))
        cell[status] = cell.get(status, 0) + n
        cell["enrolled"] += n

    # Raters per item: participants who were assigned it and who answered it.
    answer_join = and_(Answer.participant_id == PlanEntry.participant_id, Answer.position == PlanEntry.position)
    assigned: dict = defaultdict(int)
    answered: dict = defaultdict(int)
    for mode, item_pk, n_plan, n_ans in s.execute(
        select(Participant.mode, PlanEntry.item_pk, func.count(PlanEntry.id), func.count(Answer.id))
        .join(Participant, Participant.id == PlanEntry.participant_id)
        .outerjoin(Answer, answer_join)
        .where(Participant.study_id == study.id)
        .group_by(Participant.mode, PlanEntry.item_pk)
    ):
        assigned[(mode, item_pk)] = n_plan
        answered[(mode, item_pk)] = n_ans
    by_method: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if not it.is_attention_check:
            by_method[it.method].append(it)
    for mode in MODES:
        for method, its in sorted(by_method.items()):
            done = [answered[(mode, it.id)] for it in its]
            out[mode]["raters"][method] = {
                "items": len(its),
                "assigned": _spread([assigned[(mode, it.id)] for it in its]),
                "answered": _spread(done),
                "full": sum(1 for d in done if d >= target),
            }

    # Live results over every stored answer (before analysis/'s exclusions).
    correct = func.sum(case((Answer.correct.is_(True), 1), else_=0))
    decided = func.count(Answer.correct)
    plan_join = and_(PlanEntry.participant_id == Answer.participant_id, PlanEntry.position == Answer.position)
    groups = s.execute(
        select(
            Participant.mode,
            Item.method,
            Item.model_role,
            Item.is_attention_check,
            func.count(Answer.id),
            correct,
            decided,
            func.avg(Answer.score_stronger),
            func.count(Answer.score_stronger),
        )
        .join(Participant, Participant.id == Answer.participant_id)
        .join(PlanEntry, plan_join)
        .join(Item, Item.id == PlanEntry.item_pk)
        .where(Participant.study_id == study.id)
        .group_by(Participant.mode, Item.method, Item.model_role, Item.is_attention_check)
    ).all()
    accuracy = kind_of(study.kind).analysis.outcome is Outcome.ACCURACY  # else a scale: the mean score
    results: dict = defaultdict(lambda: {"n": 0, "correct": 0, "score_sum": 0.0, "score_n": 0, "by_model": {}})
    for mode, method, role, check, n, n_correct, n_decided, mean_score, n_score in groups:
        out[mode]["answers"] += n
        if check:
            out[mode]["checks"]["n"] += n_decided
            out[mode]["checks"]["passed"] += int(n_correct or 0)
            continue
        r = results[(mode, method)]
        r["n"] += n
        r["correct"] += int(n_correct or 0)
        if n_score:
            r["score_sum"] += float(mean_score) * n_score
            r["score_n"] += n_score
        if accuracy and role:
            name = role_models.get(role, role)
            r["by_model"][f"{role} ({name})" if name != role else role] = {
                "n": n,
                "accuracy": (int(n_correct or 0) / n) if n else None,
            }
    for (mode, method), r in sorted(results.items()):
        out[mode]["results"].append(
            {
                "method": method,
                "n": r["n"] if accuracy else r["score_n"],
                "accuracy": r["correct"] / r["n"] if accuracy and r["n"] else None,
                "mean_score_stronger": r["score_sum"] / r["score_n"] if r["score_n"] else None,
                "by_model": dict(sorted(r["by_model"].items())),
            }
        )
    for mode in MODES:
        c = out[mode]["checks"]
        c["rate"] = c["passed"] / c["n"] if c["n"] else None

    # The latest participants (support: a worker writes in about a payment or a problem).
    answered_n = (
        select(func.count(Answer.id))
        .where(Answer.participant_id == Participant.id)
        .correlate(Participant)
        .scalar_subquery()
    )
    total_n = (
        select(func.count(PlanEntry.id))
        .where(PlanEntry.participant_id == Participant.id)
        .correlate(Participant)
        .scalar_subquery()
    )
    for mode in MODES:
        for p, n_done, n_total in s.execute(
            select(Participant, answered_n, total_n)
            .where(Participant.study_id == study.id, Participant.mode == mode)
            .order_by(Participant.id.desc())
            .limit(RECENT)
        ):
            out[mode]["participants"].append(
                {
                    "p": p,
                    "answered": n_done,
                    "total": n_total,
                    "enrolled_at": _utc_minute(p.created_at),
                    "time_on_task": _minutes(seconds_between(p.created_at, p.completed_at)),
                }
            )
    return out, role_models


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly between the two nearest
    ranks (numpy's and pandas' default, R's type 7)."""
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_on_task(s, study: Study) -> dict[str, dict | None]:
    """Per mode, over the participants who completed the study: minutes from consent
    (enrollment) to completion, ``{"n", "median", "q1", "q3", "min", "max"}``; None where
    nobody completed. Screened-out participants are left out (they stopped early or went
    through the task carelessly), and so is anyone still active."""
    from study.export import seconds_between

    minutes: dict[str, list[float]] = defaultdict(list)
    for mode, created, completed in s.execute(
        select(Participant.mode, Participant.created_at, Participant.completed_at).where(
            Participant.study_id == study.id, Participant.status == "completed", Participant.completed_at.is_not(None)
        )
    ):
        minutes[mode].append(seconds_between(created, completed) / 60)
    out: dict[str, dict | None] = {}
    for mode in MODES:
        v = sorted(minutes[mode])
        out[mode] = (
            {
                "n": len(v),
                "median": _quantile(v, 0.5),
                "q1": _quantile(v, 0.25),
                "q3": _quantile(v, 0.75),
                "min": v[0],
                "max": v[-1],
            }
            if v
            else None
        )
    return out


def rule_text(rule: str, r) -> str | None:
    """What an exclusion rule of :mod:`analysis.exclusions` excludes, in words; None where
    the study switched it off."""
    if rule == "attention" and r.max_failed_attention_checks is not None:
        n = r.max_failed_attention_checks
        return f"more than {n} failed attention check{'s' if n != 1 else ''}"
    if rule == "too_fast" and r.min_median_rt_ms is not None:
        return f"median reaction time under {r.min_median_rt_ms} ms (trials, not checks)"
    if rule == "incomplete" and r.require_complete:
        return "did not finish (still active: stopped part-way, or still at it)"
    return None


def exclusion_preview(s, study: Study) -> dict[str, dict | None] | str:
    """Per mode: what the study's exclusion rules (``settings["exclusions"]``, applied by
    :func:`analysis.exclusions.apply_exclusions` to the export's rows so far) would do:
    ``{"rules": [{"rule", "text", "excluded"}], "enrolled", "excluded", "remain"}``; None for
    a mode without answers. A message instead where the rules cannot be read."""
    from analysis.exclusions import RULES, apply_exclusions, as_rules
    from camstudy.errors import UserError
    from study.export import export_rows

    try:
        rules = as_rules(study.settings.get("exclusions"))
    except UserError as e:
        return str(e)
    df = export_rows(s, study, mode="all")
    out: dict[str, dict | None] = {}
    for mode in MODES:
        part = df[df["mode"] == mode].reset_index(drop=True)
        if part.empty:
            out[mode] = None
            continue
        _kept, flow = apply_exclusions(part, rules)
        out[mode] = {
            "rules": [
                {"rule": rule, "text": rule_text(rule, rules), "excluded": flow[f"excluded_{rule}"]} for rule in RULES
            ],
            "enrolled": flow["enrolled"],
            "excluded": flow["excluded"],
            "remain": flow["analysed_participants"],
        }
    return out


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f} min"


def _utc_minute(t: datetime | None) -> str:
    if t is None:
        return ""
    return (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)).strftime("%Y-%m-%d %H:%M")


def preregistration_record(study: Study) -> dict | None:
    """The study's pre-registration for its page: ``{"sha256", "frozen_at"}`` (UTC, to the
    second), or None when its analysis plan was not frozen (``camstudy preregister``)."""
    if not study.prereg_sha256:
        return None
    t = study.prereg_frozen_at
    when = (
        ""
        if t is None
        else (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    )
    return {"sha256": study.prereg_sha256, "frozen_at": when}
