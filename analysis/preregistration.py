"""Pre-registration: freeze the analysis plan before data collection, then judge the report
against it.

``camstudy preregister STUDY --plan PLAN.toml --out FROZEN.json`` reads a plan (TOML)::

    title = "Guided Grad-CAM is more class-discriminative"   # optional
    alpha = 0.05                                   # the level of every hypothesis test (default 0.05)

    [study]
    slug = "class-discrimination"                  # optional; must be the study frozen

    [[hypotheses]]
    id = "H1"
    text = "Guided Grad-CAM is above chance."
    test = "accuracy_vs_chance"                    # see TESTS
    method = "guided_gradcam"
    direction = "greater"                          # greater, less or two-sided (default)

    [[hypotheses]]
    id = "H2"
    text = "Guided Grad-CAM beats Guided Backpropagation."
    test = "gee_comparison"
    method = "guided_gradcam"
    versus = "guided_backprop"
    direction = "greater"

    [exclusions]                                   # optional: default the study's stored rules
    max_failed_attention_checks = 0
    min_median_rt_ms = 400
    require_complete = true

    [power]                                        # optional: the planned N (camstudy power)
    kind = "accuracy"                              # accuracy (p1 vs p2) or trust (mean, sd)
    p1 = 0.61
    p2 = 0.44
    answers_per_worker = 12
    icc = 0.05
    groups = 3                                     # groups of workers (between: one per condition)

The frozen plan is one canonical JSON document (sorted keys, no spaces, UTF-8): the plan as
declared (every default filled in), what follows from it (the power analysis and the planned
number of analysed workers), ``frozen_at`` (UTC) and the camstudy version. Its sha256 is the
sha256 of the file's bytes (``sha256sum FROZEN.json`` gives it); the study stores the JSON,
the sha256 and the time. A study's plan is frozen once: the same plan again changes nothing,
a different plan is refused, and so is freezing after live answers exist.

``camstudy analyze`` checks the stored JSON against its sha256 and passes
:func:`preregistration_hook` to :func:`analysis.report.analyze`: the tables the hypotheses are
judged on are confirmatory, every other table exploratory; each hypothesis is supported, not
supported or not computable; every deviation from the plan is listed (a changed exclusion
rule, participants excluded beyond the plan or kept against it, an analysed N other than the
planned one, a planned test that did not run, other answers than the plan's: another study,
kind or mode, and a different camstudy version).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.kinds import chance_level, known
from camstudy.errors import UserError
from camstudy.kinds import KINDS, Outcome
from camstudy.tomlconfig import Fields

FORMAT = "camstudy-preregistration/1"
DIRECTIONS = ("greater", "less", "two-sided")
SUPPORTED, NOT_SUPPORTED, NOT_COMPUTABLE = "supported", "not supported", "not computable"
# The exclusion rules by the flow's names (analysis.exclusions.RULES) and whether a value
# switches the rule off.
RULE_KEYS = {
    "attention": "max_failed_attention_checks",
    "too_fast": "min_median_rt_ms",
    "incomplete": "require_complete",
}


@dataclass(frozen=True)
class Test:
    """A test a hypothesis can name: the report table it is judged on, the outcome of the
    study kinds it fits (:attr:`camstudy.kinds.Analysis.outcome`: the report computes that
    table for every kind of the outcome), whether it compares two methods, and its own
    options (name -> allowed values, the first the default)."""

    table: str
    outcome: Outcome
    comparison: bool
    description: str
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The study kind the test is for, in words of its messages and for a plan that names
        no study: the first kind of its outcome (class discrimination, trust)."""
        return next(str(k.name) for k in KINDS.values() if k.analysis.outcome is self.outcome)

    def fits(self, kind: str | None) -> bool:
        """Whether a study of ``kind`` gets the test's table: a kind of the test's outcome."""
        study_kind = known(kind)
        return study_kind is not None and study_kind.analysis.outcome is self.outcome


TESTS: dict[str, Test] = {
    "accuracy_vs_chance": Test(
        "accuracy_by_method",
        Outcome.ACCURACY,
        False,
        "the method's accuracy against chance (the report's: 0.5 for two options per item): the clustered "
        "score test (two-way worker x image design effect, t reference), p_value of accuracy_by_method",
    ),
    "gee_comparison": Test(
        "significance_gee_method_comparisons",
        Outcome.ACCURACY,
        True,
        "method vs versus: GEE logistic model clustered by worker, the pair's Holm-adjusted p "
        '(adjust = "none": its unadjusted p) and odds ratio',
        {"adjust": ("holm", "none")},
    ),
    "trust_mean": Test(
        "trust_by_method",
        Outcome.SCALE,
        False,
        'the mean trust score against 0: by default (statistic = "clustered") the two-way (worker x '
        "image) cluster-robust t-test, the test of the clustered 95% CI (p_value of trust_by_method; a "
        'table without it: the one-sample t-test of the per-worker means, t_p); statistic = "t": the '
        'one-sample t-test of the per-worker means (t_p); statistic = "wilcoxon": the Wilcoxon '
        "signed-rank test of the per-worker means (wilcoxon_p); both of these ignore the clustering by image",
        {"statistic": ("clustered", "t", "wilcoxon")},
    ),
    "ordinal_method": Test(
        "significance_trust_ordinal",
        Outcome.SCALE,
        True,
        "method vs versus in the ordinal (proportional-odds) trust model, cluster-robust by worker; "
        "versus must be the model's reference method",
    ),
}


# --------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class StudyFacts:
    """What the plan is checked against: the study's slug, kind, methods (non-check items),
    design and conditions."""

    slug: str
    kind: str
    methods: tuple[str, ...] = ()
    design: str = ""
    conditions: tuple[str, ...] = ()


def parse_plan(source: str | Path, study: StudyFacts | None = None) -> dict[str, Any]:
    """Read and validate the plan file ``source`` (TOML; see the module doc) against
    ``study`` where known. Returns the plan with every default filled in. Every problem is a
    one-line :class:`UserError` naming the file."""
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"plan file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the plan ({e})") from None
    return parse_plan_text(text, str(path), study)


def parse_plan_text(text: str, where: str = "plan", study: StudyFacts | None = None) -> dict[str, Any]:
    """:func:`parse_plan` of the TOML ``text``; ``where`` names it in the error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: not valid TOML: {e}") from None
    try:
        return _plan(raw, study)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _plan(raw: dict, study: StudyFacts | None) -> dict[str, Any]:
    f = Fields(raw, "")
    title = f.get("title", str, None)
    alpha = float(f.get("alpha", (int, float), 0.05, lambda v: _number(v) and 0 < v < 1, "must be in (0, 1)"))
    s = Fields(f.table_of("study", {}), "study")
    slug = s.get("slug", str, None)
    s.done()
    if slug is not None and study is not None and slug != study.slug:
        raise UserError(f"study.slug: the plan is for study {slug!r}, not {study.slug!r}")
    hypotheses = f.get(
        "hypotheses",
        list,
        ...,
        lambda v: len(v) > 0 and all(isinstance(h, dict) for h in v),
        "must be one or more [[hypotheses]] tables",
    )
    parsed = [_hypothesis(i, h, study) for i, h in enumerate(hypotheses, start=1)]
    seen: set[str] = set()
    for h in parsed:
        if h["id"] in seen:
            raise UserError(f"hypotheses: duplicate id {h['id']!r}")
        seen.add(h["id"])
    kinds = {TESTS[h["test"]].kind for h in parsed}
    kind = study.kind if study is not None else (kinds.pop() if len(kinds) == 1 else None)
    for h in parsed:
        test = TESTS[h["test"]]
        if kind is None:
            raise UserError("hypotheses: the tests mix class-discrimination and trust studies")
        if not test.fits(kind):
            raise UserError(f"hypothesis {h['id']!r}: test {h['test']} is for {test.kind} studies; the study is {kind}")
    exclusions = _exclusion_rules(f.table_of("exclusions", None))
    power = _power(f.table_of("power", None), alpha, kind, study)
    f.done()
    return {
        "title": title,
        "study": slug if slug is not None else (study.slug if study else None),
        "kind": kind,
        "alpha": alpha,
        "hypotheses": parsed,
        "exclusions": exclusions,
        "power": power,
    }


def _hypothesis(i: int, table: dict, study: StudyFacts | None) -> dict[str, Any]:
    if "id" not in table:
        raise UserError(f"hypothesis {i}: missing id")
    f = Fields(table, f"hypotheses[{i}]")
    hid = f.get(
        "id",
        str,
        ...,
        lambda v: 0 < len(v.strip()) <= 64 and v.isprintable(),
        "must be a non-empty name of at most 64 characters",
    )
    where = f"hypothesis {hid!r}"
    text = f.get("text", str, ..., lambda v: v.strip() != "", "must be a non-empty statement")
    name = f.get("test", str, ...)
    if name not in TESTS:
        raise UserError(f"{where}: unknown test {name!r} (known: {', '.join(TESTS)})")
    test = TESTS[name]
    f.where = where
    method = f.get("method", str, ..., lambda v: v != "", "must be a method name")
    versus = f.get("versus", str, None) if test.comparison else None
    if test.comparison and versus is None:
        raise UserError(f"{where}: test {name} compares two methods: give versus")
    if versus is not None and versus == method:
        raise UserError(f"{where}: versus must differ from method ({method!r})")
    direction = f.get(
        "direction", str, "two-sided", lambda v: v in DIRECTIONS, f"must be one of {', '.join(DIRECTIONS)}"
    )
    options = {
        key: f.get(key, str, allowed[0], lambda v, a=allowed: v in a, f"must be one of {', '.join(allowed)}")
        for key, allowed in test.options.items()
    }
    if "versus" in f.table and not test.comparison:
        raise UserError(
            f"{where}: versus is only for the comparisons ({', '.join(n for n, t in TESTS.items() if t.comparison)})"
        )
    f.done()
    if study is not None and study.methods:
        for m in (method, versus):
            if m is not None and m not in study.methods:
                raise UserError(
                    f"{where}: method {m!r} is not a method of study {study.slug!r} "
                    f"(its methods: {', '.join(study.methods)})"
                )
    return {
        "id": hid,
        "text": text,
        "test": name,
        "table": test.table,
        "method": method,
        "versus": versus,
        "direction": direction,
        **options,
    }


def _exclusion_rules(table: dict | None) -> dict[str, Any] | None:
    """The plan's ``[exclusions]`` (the study config's keys and checks), or None."""
    if table is None:
        return None
    from study.settings import _exclusions

    return asdict(_exclusions(table))


def _power(table: dict | None, alpha: float, kind: str | None, study: StudyFacts | None) -> dict[str, Any] | None:
    """The ``[power]`` inputs with their defaults filled in (checked by computing them)."""
    if table is None:
        return None
    f = Fields(table, "power")
    # The power analysis of the study's outcome: accuracy (p1 vs p2), or a scale's mean
    # (the "trust" inputs: mean, sd); required where the kind is not known.
    study_kind = known(kind)
    default = ... if study_kind is None else "accuracy" if study_kind.analysis.outcome is Outcome.ACCURACY else "trust"
    what = f.get("kind", str, default, lambda v: v in ("accuracy", "trust"), "must be accuracy or trust")
    level = (lambda v: _number(v) and 0 < v < 1, "must be in (0, 1)")
    inputs: dict[str, Any] = {"kind": what}
    if what == "accuracy":
        inputs["p1"] = float(f.get("p1", (int, float), ..., *level))
        inputs["p2"] = float(f.get("p2", (int, float), ..., *level))
    else:
        inputs["mean"] = float(f.get("mean", (int, float), ..., _number, "must be a number"))
        inputs["sd"] = float(f.get("sd", (int, float), ..., lambda v: _number(v) and v > 0, "must be positive"))
    inputs["alpha"] = float(f.get("alpha", (int, float), alpha, *level))
    inputs["power"] = float(f.get("power", (int, float), 0.8, *level))
    if what == "accuracy":
        inputs["answers_per_worker"] = f.get("answers_per_worker", int, 1, lambda v: v >= 1, "must be an integer >= 1")
        inputs["icc"] = float(
            f.get("icc", (int, float), 0.0, lambda v: _number(v) and 0 <= v <= 1, "must be in [0, 1]")
        )
        if "groups" in f.table:
            inputs["groups"] = f.get("groups", int, ..., lambda v: v >= 1, "must be an integer >= 1")
        elif study is not None and study.design:
            inputs["groups"] = max(len(study.conditions), 1) if study.design == "between" else 1
        else:
            raise UserError("power.groups: missing (required when the study's design is not known)")
    f.done()
    try:
        power_result(inputs)
    except UserError as e:
        raise UserError(f"power: {e}") from None
    return inputs


def power_result(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """(the power analysis of :mod:`analysis.power` as a dict, the planned number of analysed
    workers): workers per group x groups for accuracy, workers for trust."""
    from analysis.power import n_per_group_two_proportions, n_trust_one_sample

    if inputs["kind"] == "accuracy":
        r = n_per_group_two_proportions(
            inputs["p1"], inputs["p2"], inputs["alpha"], inputs["power"], inputs["answers_per_worker"], inputs["icc"]
        )
        return asdict(r), r.workers_per_group * int(inputs["groups"])
    t = n_trust_one_sample(inputs["mean"], inputs["sd"], inputs["alpha"], inputs["power"])
    return asdict(t), t.workers


# --------------------------------------------------------------------------------------
# Freezing


@dataclass(frozen=True)
class FrozenPlan:
    """A frozen plan: its canonical JSON ``text`` (the file's content), the ``sha256`` of
    that text's UTF-8 bytes, and the parsed ``document``."""

    text: str
    sha256: str
    document: dict[str, Any]

    @property
    def plan(self) -> dict[str, Any]:
        return self.document["plan"]

    @property
    def frozen_at(self) -> str:
        return str(self.document["frozen_at"])

    @property
    def planned_n(self) -> int | None:
        return self.document["derived"]["planned_n"]

    def frozen_at_datetime(self) -> datetime:
        return datetime.fromisoformat(self.frozen_at.replace("Z", "+00:00"))


def canonical_json(document: Any) -> str:
    """``document`` as canonical JSON: sorted keys, no whitespace, UTF-8 characters as they
    are, no NaN (so equal documents give equal bytes)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def freeze(plan: Mapping[str, Any], stored_rules: Any = None, *, frozen_at: datetime | None = None) -> FrozenPlan:
    """Freeze ``plan`` (:func:`parse_plan`'s answer): the plan's exclusions, or else
    ``stored_rules`` (the study's, an ``Exclusions`` or a dict; None: the defaults), the
    power analysis and the planned N, ``frozen_at`` (default now, UTC, to the second) and the
    camstudy version, as canonical JSON with its sha256."""
    import camstudy
    from analysis.exclusions import as_rules

    resolved = dict(plan)
    if plan.get("exclusions") is not None:
        source = "plan"
        rules = asdict(as_rules(plan["exclusions"]))
    else:
        source = "study settings" if stored_rules is not None else "defaults"
        rules = asdict(as_rules(stored_rules))
    resolved["exclusions"], resolved["exclusions_source"] = rules, source
    result, planned = power_result(plan["power"]) if plan.get("power") else (None, None)
    when = (frozen_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    document = {
        "format": FORMAT,
        "frozen_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "plan": resolved,
        "derived": {"power": result, "planned_n": planned},
        "software": {"camstudy": camstudy.__version__},
    }
    text = canonical_json(document)
    return FrozenPlan(text, sha256_text(text), json.loads(text))


def load_frozen(text: str, where: str = "the frozen plan") -> FrozenPlan:
    """A frozen plan from its JSON ``text`` (a file or the study's column): refused unless it
    is canonical JSON of this format, as :func:`freeze` writes it (an edit shows)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not a frozen plan (not JSON: {e})") from None
    if (
        not isinstance(document, dict)
        or document.get("format") != FORMAT
        or not {"plan", "derived", "frozen_at"} <= set(document)
    ):
        raise UserError(f"{where}: not a frozen plan of camstudy preregister (format {FORMAT})")
    if canonical_json(document) != text:
        raise UserError(
            f"{where}: not the bytes camstudy preregister wrote (not canonical JSON): the frozen plan was edited"
        )
    return FrozenPlan(text, sha256_text(text), document)


def read_frozen_file(path: str | Path) -> FrozenPlan:
    """:func:`load_frozen` of the file ``path`` (exact bytes, UTF-8)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"frozen plan not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the frozen plan ({e})") from None
    return load_frozen(text, str(path))


def verify_stored(text: str | None, sha256: str | None, where: str) -> FrozenPlan:
    """The study's stored plan, refused when its JSON does not hash to its stored sha256."""
    if not text or not sha256:
        raise UserError(f"{where}: the stored pre-registration is incomplete (JSON or sha256 missing)")
    if sha256_text(text) != sha256:
        raise UserError(
            f"{where}: the stored plan does not match its sha256 {sha256} (it was changed after "
            "freezing); refusing to analyse against it"
        )
    return load_frozen(text, where)


# --------------------------------------------------------------------------------------
# Judging the report against the plan


def preregistration_hook(frozen: FrozenPlan, *, answers: Any = None, mode: str | None = None) -> Callable[[dict], dict]:
    """The ``preregistration`` hook of :func:`analysis.report.analyze` for ``frozen``.

    ``answers``: the loaded answers (all of them, before exclusions), to count the
    participants excluded beyond the plan (or kept against it) when the rules differ;
    ``mode``: the mode analysed (anything but live is a deviation)."""

    def hook(context: dict) -> dict:
        return evaluate(frozen, context, answers=answers, mode=mode)

    return hook


def evaluate(
    frozen: FrozenPlan, context: Mapping[str, Any], *, answers: Any = None, mode: str | None = None
) -> dict[str, Any]:
    """The hook's answer for ``context`` (``kind``, ``flow``, ``rules``, ``tables``; and
    ``chance``, where given: the accuracy of guessing the report tested against, else see
    :func:`_chance`):
    ``sha256``, ``frozen_at``, ``hypotheses`` (each with ``status`` and ``outcome``),
    ``deviations`` (one sentence each) and ``deviation_records`` (``kind``, ``text`` and
    details), ``table_status``, ``alpha``, ``planned_n``, ``analysed_n``."""
    import camstudy

    plan = frozen.plan
    tables: Mapping[str, Any] = context.get("tables") or {}
    kind = context.get("kind")
    records: list[dict[str, Any]] = []

    def deviate(what: str, text: str, **detail: Any) -> None:
        records.append({"kind": what, "text": text, **detail})

    if plan.get("kind") and kind and plan["kind"] != kind:
        deviate(
            "kind_differs",
            f"The plan is for a {plan['kind']} study; the answers are of a {kind} study.",
            plan=plan["kind"],
            analysis=kind,
        )
    if answers is not None and plan.get("study") and "study" in getattr(answers, "columns", ()):
        found = sorted({str(v) for v in answers["study"].dropna().unique()})
        if found and found != [plan["study"]]:
            deviate(
                "study_differs",
                f"The plan is for study {plan['study']!r}; the answers are of {', '.join(repr(s) for s in found)}.",
                plan=plan["study"],
                analysis=found,
            )
    if mode is not None and mode != "live":
        deviate(
            "mode_not_live",
            f"The analysed answers are of mode {mode}, not live: the plan is about live participants.",
            analysis=mode,
        )
    _rule_deviations(
        plan["exclusions"], dict(context.get("rules") or {}), dict(context.get("flow") or {}), answers, deviate
    )
    analysed = (context.get("flow") or {}).get("analysed_participants")
    planned = frozen.planned_n
    if planned is not None and analysed is not None and int(analysed) != int(planned):
        diff = int(analysed) - int(planned)
        deviate(
            "n_differs",
            f"Analysed N = {analysed} workers; the plan's power analysis planned N = {planned} "
            f"({abs(diff)} {'fewer' if diff < 0 else 'more'} than planned).",
            plan=int(planned),
            analysis=int(analysed),
        )

    chance = _chance(context.get("chance"), kind, answers)
    hypotheses = []
    for h in plan["hypotheses"]:
        table = tables.get(h["table"])
        if not TESTS[h["test"]].fits(kind):
            status, outcome = NOT_COMPUTABLE, f"the test {h['test']} needs a {TESTS[h['test']].kind} study"
        elif table is None:
            status, outcome = NOT_COMPUTABLE, f"table {h['table']} was not computed"
            deviate(
                "test_not_run",
                f"Hypothesis {h['id']}: its planned test ({h['test']}, table {h['table']}) did not run.",
                hypothesis=h["id"],
                table=h["table"],
            )
        else:
            status, outcome = JUDGES[h["test"]]({**h, "chance": chance}, table, float(plan["alpha"]))
        hypotheses.append(
            {
                "id": h["id"],
                "text": h["text"],
                "test": h["test"],
                "table": h["table"],
                "status": status,
                "outcome": f"{status[0].upper()}{status[1:]}: {outcome}",
            }
        )

    then = (frozen.document.get("software") or {}).get("camstudy")
    if then and then != camstudy.__version__:
        deviate(
            "software_changed",
            f"The plan was frozen with camstudy {then}; the analysis ran camstudy "
            f"{camstudy.__version__} (the tests' code may differ).",
            plan=then,
            analysis=camstudy.__version__,
        )

    confirmatory = {h["table"] for h in plan["hypotheses"]}
    status_of = {name: "confirmatory" if name in confirmatory else "exploratory" for name in tables}
    status_of.update({name: "confirmatory" for name in confirmatory})
    return {
        "sha256": frozen.sha256,
        "frozen_at": frozen.frozen_at,
        "alpha": plan["alpha"],
        "hypotheses": hypotheses,
        "deviations": [r["text"] for r in records],
        "deviation_records": records,
        "table_status": status_of,
        "planned_n": planned,
        "analysed_n": analysed,
    }


def _rule_off(key: str, value: Any) -> bool:
    """Whether a rule's value switches it off (None; 0 ms; require_complete false)."""
    return value is None or value is False or (key == "min_median_rt_ms" and value == 0)


def _rule_deviations(
    planned: Mapping[str, Any],
    used: Mapping[str, Any],
    flow: Mapping[str, Any],
    answers: Any,
    deviate: Callable[..., None],
) -> None:
    """Changed rules (each key, plan -> analysis), and the participants excluded beyond the
    plan or kept against it (from the answers where given, else the flow's counts of rules
    the plan does not use)."""
    changed = False
    for key in sorted(set(planned) | set(used)):
        old, new = planned.get(key), used.get(key)
        if old != new:
            changed = True
            deviate(
                "rule_changed",
                f"Exclusion rule {key} changed: {_show(old)} in the plan, {_show(new)} in the analysis.",
                rule=key,
                plan=old,
                analysis=new,
            )
    if not changed:
        return
    if answers is not None:
        from analysis.exclusions import KEY, participant_table

        mine = participant_table(answers, used).set_index(KEY)
        theirs = participant_table(answers, dict(planned)).set_index(KEY)["excluded"].reindex(mine.index)
        extra = mine["excluded"] & ~theirs
        kept = ~mine["excluded"] & theirs
        if extra.any():
            deviate(
                "extra_exclusions",
                f"{int(extra.sum())} participant(s) ({int(mine.loc[extra, 'answers'].sum())} "
                "answers) excluded beyond the plan: the plan's rules keep them.",
                participants=int(extra.sum()),
            )
        if kept.any():
            deviate(
                "kept_against_plan",
                f"{int(kept.sum())} participant(s) ({int(mine.loc[kept, 'answers'].sum())} "
                "answers) analysed that the plan's rules exclude.",
                participants=int(kept.sum()),
            )
        return
    for rule, key in RULE_KEYS.items():
        n = int(flow.get(f"excluded_{rule}", 0) or 0)
        if n and _rule_off(key, planned.get(key)):
            deviate(
                "extra_exclusions",
                f"{n} participant(s) excluded by rule {rule} ({key}), which the plan does not use.",
                participants=n,
                rule=key,
            )


def _show(value: Any) -> str:
    return "off (None)" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


# --- the tests -------------------------------------------------------------------------


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _verdict(p: float, effect: float, direction: str, alpha: float) -> tuple[str, str]:
    """(status, words) of a two-sided p and an effect whose sign is the direction: supported
    when p < alpha and (a one-direction hypothesis) the effect points the planned way."""
    significant = p < alpha
    right_way = direction == "two-sided" or (effect > 0 if direction == "greater" else effect < 0)
    words = f"{_p(p)}, {'below' if significant else 'not below'} alpha {alpha:g}"
    if significant and not right_way:
        words += f", but in the opposite direction to the planned {direction}"
    return (SUPPORTED if significant and right_way else NOT_SUPPORTED), words


def _finite(*values: Any) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def _row(table: Any, column: str, value: str) -> Any:
    if column not in table.columns:
        return None
    rows = table[table[column].astype(str) == value]
    return rows.iloc[0] if len(rows) else None


def _chance(given: Any, kind: str | None, answers: Any = None) -> float:
    """The chance level an accuracy test was run against: ``given`` (the report's), else the
    kind's declared ``analysis.chance``, else one over the options of the ``answers``' items
    (:func:`analysis.kinds.chance_level`), else 0.5 (two options per item, as in class
    discrimination)."""
    if _number(given) and 0 < given < 1:
        return float(given)
    study_kind = known(kind)
    if study_kind is not None and study_kind.analysis.chance is not None:
        return float(study_kind.analysis.chance)
    if study_kind is not None and answers is not None and hasattr(answers, "columns"):
        level = chance_level(str(kind), answers)
        if 0 < level < 1:
            return level
    return 0.5


def _accuracy_vs_chance(h: Mapping[str, Any], table: Any, alpha: float) -> tuple[str, str]:
    row = _row(table, "method", h["method"])
    if row is None:
        return NOT_COMPUTABLE, f"no analysed answers of method {h['method']}"
    if not _finite(row["p_value"], row["accuracy"]):
        return NOT_COMPUTABLE, f"the test of {h['method']} gave no p-value"
    acc, chance = float(row["accuracy"]), float(h.get("chance", 0.5))
    status, words = _verdict(float(row["p_value"]), acc - chance, h["direction"], alpha)
    return status, (
        f"accuracy of {h['method']} {acc:.3f} ({int(row['k'])} of {int(row['n'])} answers) "
        f"against chance {chance:g}, {words}"
    )


def _gee_comparison(h: Mapping[str, Any], table: Any, alpha: float) -> tuple[str, str]:
    a, b = h["method"], h["versus"]
    if not {"method_a", "method_b"} <= set(table.columns):
        return NOT_COMPUTABLE, "the GEE table has no method pairs"
    pair_a, pair_b = table["method_a"].astype(str), table["method_b"].astype(str)
    forward, backward = table[(pair_a == a) & (pair_b == b)], table[(pair_a == b) & (pair_b == a)]
    if len(forward) + len(backward) == 0:
        return NOT_COMPUTABLE, f"no GEE comparison of {a} with {b}"
    row, sign = (forward.iloc[0], 1.0) if len(forward) else (backward.iloc[0], -1.0)
    column = "p_holm" if h.get("adjust", "holm") == "holm" and "p_holm" in table.columns else "p_value"
    if not _finite(row[column], row["log_or"]):
        return NOT_COMPUTABLE, f"the GEE comparison of {a} with {b} gave no p-value"
    log_or = sign * float(row["log_or"])
    lo, hi = float(row["ci_low"]), float(row["ci_high"])  # of the odds ratio method_a vs method_b
    if sign < 0:
        lo, hi = (1 / hi if hi > 0 else math.nan), (1 / lo if lo > 0 else math.nan)
    status, words = _verdict(float(row[column]), log_or, h["direction"], alpha)
    label = "Holm-adjusted " if column == "p_holm" else ""
    return status, f"odds ratio {a} vs {b} {math.exp(log_or):.2f} [95% CI {lo:.2f}, {hi:.2f}], {label}{words}"


def _trust_mean(h: Mapping[str, Any], table: Any, alpha: float) -> tuple[str, str]:
    """The mean against 0: the clustered t-test of ``mean`` (``p_value``) where the table has
    it and the plan did not ask for the Wilcoxon test; otherwise a test of the per-worker
    means (``t_p``, ``wilcoxon_p``), which ignores the clustering by image."""
    row = _row(table, "method", h["method"])
    if row is None:
        return NOT_COMPUTABLE, f"no analysed trust scores of method {h['method']}"
    # A plan that names "t" or "wilcoxon" gets the test it declared, clustered or not.
    if h.get("statistic", "clustered") == "clustered" and "p_value" in table.columns:
        name = "two-way cluster-robust (worker and image) t-test"
        if not _finite(row["p_value"], row["mean"]):
            return NOT_COMPUTABLE, f"the {name} of {h['method']} gave no p-value"
        mean = float(row["mean"])
        status, words = _verdict(float(row["p_value"]), mean, h["direction"], alpha)
        images = f" on {int(row['n_images'])} images" if _finite(row.get("n_images")) else ""
        return status, (
            f"mean score for {h['method']} {mean:.2f} over {int(row['n_answers'])} answers from "
            f"{int(row['n_workers'])} workers{images} against 0, {name} {words}"
        )
    column, name = ("wilcoxon_p", "Wilcoxon signed-rank") if h.get("statistic") == "wilcoxon" else ("t_p", "t-test")
    if not _finite(row[column], row["worker_mean"]):
        return NOT_COMPUTABLE, f"the {name} of {h['method']} gave no p-value"
    mean = float(row["worker_mean"])
    status, words = _verdict(float(row[column]), mean, h["direction"], alpha)
    return status, (
        f"mean of {int(row['n_workers'])} per-worker mean scores for {h['method']} {mean:.2f} against 0, "
        f"{name} (ignores the clustering by image) {words}"
    )


def _ordinal_method(h: Mapping[str, Any], table: Any, alpha: float) -> tuple[str, str]:
    a, b = h["method"], h["versus"]
    terms = set(table["term"].astype(str)) if "term" in table.columns else set()
    if f"method[{a}]" in terms and f"method[{b}]" not in terms:
        row, sign = _row(table, "term", f"method[{a}]"), 1.0
    elif f"method[{b}]" in terms and f"method[{a}]" not in terms:
        row, sign = _row(table, "term", f"method[{b}]"), -1.0
    else:
        return NOT_COMPUTABLE, f"the ordinal model does not compare {a} with {b} directly (its reference is neither)"
    if not _finite(row["p_value"], row["coef"]):
        return NOT_COMPUTABLE, f"the ordinal model gave no p-value for {a} vs {b}"
    coef = sign * float(row["coef"])
    status, words = _verdict(float(row["p_value"]), coef, h["direction"], alpha)
    return status, f"log odds ratio {a} vs {b} {coef:.2f} (odds ratio {math.exp(coef):.2f}), {words}"


JUDGES: dict[str, Callable[[Mapping[str, Any], Any, float], tuple[str, str]]] = {
    "accuracy_vs_chance": _accuracy_vs_chance,
    "gee_comparison": _gee_comparison,
    "trust_mean": _trust_mean,
    "ordinal_method": _ordinal_method,
}


# --------------------------------------------------------------------------------------
# The database and the command


def study_facts(session: Any, study: Any) -> StudyFacts:
    """The :class:`StudyFacts` of a :class:`study.models.Study`."""
    from sqlalchemy import select

    from study.models import Item

    methods = session.scalars(
        select(Item.method).where(Item.study_id == study.id, Item.is_attention_check.is_(False)).distinct()
    ).all()
    settings = dict(study.settings or {})
    return StudyFacts(
        slug=study.slug,
        kind=study.kind,
        methods=tuple(sorted(methods)),
        design=str(settings.get("design") or ""),
        conditions=tuple(settings.get("conditions") or ()),
    )


def live_answers(session: Any, study: Any) -> int:
    """How many answers of live participants the study holds (sandbox and debug, where
    testers and the simulated participants answer, do not count)."""
    from sqlalchemy import func, select

    from study.models import Answer, Participant

    return int(
        session.scalar(
            select(func.count(Answer.id))
            .join(Participant, Participant.id == Answer.participant_id)
            .where(Participant.study_id == study.id, Participant.mode == "live")
        )
        or 0
    )


def stored_plan(db_url: str | None, slug: str) -> FrozenPlan | None:
    """Study ``slug``'s frozen plan, checked against its sha256; None when it has none."""
    from study.db import make_engine, session_factory
    from study.export import find_study

    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            study = find_study(session, slug)
            if study.prereg_sha256 is None and study.prereg_json is None:
                return None
            return verify_stored(study.prereg_json, study.prereg_sha256, f"study {slug!r}")
    finally:
        engine.dispose()


def run_preregister(args: argparse.Namespace) -> int:
    """``camstudy preregister STUDY --plan PLAN.toml --out FROZEN.json``: freeze the plan."""
    from analysis.exclusions import as_rules
    from study.db import check_current, make_engine, session_factory, transaction
    from study.export import find_study

    out = Path(args.out)
    engine = make_engine(args.db)
    try:
        check_current(engine)
        with transaction(session_factory(engine)) as s:
            study = find_study(s, args.study)
            slug = study.slug
            stored = (study.settings or {}).get("exclusions")
            frozen = freeze(parse_plan(args.plan, study_facts(s, study)), stored)
            if study.prereg_sha256 is not None:
                existing = verify_stored(study.prereg_json, study.prereg_sha256, f"study {slug!r}")
                if existing.plan != frozen.plan:
                    raise UserError(
                        f"study {slug!r} already has a frozen plan sha256 {existing.sha256} (frozen at "
                        f"{existing.frozen_at}); a frozen plan cannot change"
                    )
                _write(out, existing.text)
                print(
                    f"study {slug!r}: this plan is already frozen (sha256 {existing.sha256}, frozen at "
                    f"{existing.frozen_at}); nothing changed; wrote {out}"
                )
                return 0
            n_live = live_answers(s, study)
            if n_live:
                raise UserError(
                    f"study {slug!r} has {n_live} live answer{'s' if n_live != 1 else ''} already; "
                    "a plan must be frozen before data collection"
                )
            _write(out, frozen.text)
            study.prereg_sha256, study.prereg_json = frozen.sha256, frozen.text
            study.prereg_frozen_at = frozen.frozen_at_datetime()
    finally:
        engine.dispose()
    n = len(frozen.plan["hypotheses"])
    print(
        f"study {slug!r}: plan frozen at {frozen.frozen_at}, sha256 {frozen.sha256} "
        f"({n} hypothes{'es' if n != 1 else 'is'}, planned N = {frozen.planned_n if frozen.planned_n is not None else 'none'})"
    )
    if (
        frozen.plan["exclusions_source"] == "plan"
        and stored is not None
        and asdict(as_rules(stored)) != frozen.plan["exclusions"]
    ):
        print(
            f"note: the plan's exclusion rules differ from study {slug!r}'s stored ones; "
            "camstudy analyze will report that as a deviation"
        )
    print(f"wrote {out}")
    return 0


def _write(path: Path, text: str) -> None:
    """Write the frozen plan's exact bytes (its sha256 is the file's)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def add_preregister_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``camstudy preregister`` on the ``camstudy`` subparsers ``sub``."""
    p = sub.add_parser("preregister", help="freeze a study's analysis plan before data collection")
    p.add_argument("study", metavar="STUDY", help="the study's slug")
    p.add_argument("--plan", required=True, metavar="FILE", help="the analysis plan (TOML)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the frozen plan (JSON)")
    p.add_argument("--db", help="database URL (default: CAMSTUDY_DATABASE_URL or sqlite:///instance/camstudy.db)")
    p.set_defaults(func=run_preregister)
    return p
