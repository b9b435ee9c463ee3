"""The study config: one TOML file per study, validated field by field.

Example (``camstudy/examples/class-discrimination.toml``; ``camstudy examples DIR`` copies it)::

    title = "Which object does the highlighted evidence show?"
    task = "class_discrimination"        # or "trust"
    stimuli = "stimuli"                  # a stimulus build folder (relative to this file); --stimuli overrides
    trials_per_participant = 12
    raters_per_item = 9
    attention_checks = 2                 # mixed in at random positions
    design = "between"                   # methods between subjects (one per participant) or "within"
    platform = "prolific"                # plain, mturk or prolific
    allow_plain_links = false            # live links without the platform's worker id are refused
    allow_repeat = false                 # one participation per worker
    practice = true
    questionnaire = true
    blank_ms = 300                       # a blank screen between trials (no answer reaches a trial unseen)
    allow_degenerate = false             # stimuli the build scored as degenerate are refused
    pilot = false                        # true: only the sandbox and debug links work

    [consent]                            # shown on the consent page; required unless pilot = true
    researcher = "Dr Ada Example"
    institution = "Example University, School of Informatics"
    contact = "ada.example@example.edu"
    ethics_approval = "EU-REC-2026-041"
    pay = "GBP 1.50"
    minutes = 8
    data_retention = "Answers are kept, under a pseudonym, for 10 years and may be published."

    [completion]
    code = "C1A55D15"
    screened_out_code = "SCREENED0"
    redirect_url = "https://app.prolific.com/submissions/complete?cc={code}"

    [exclusions]                         # declared before data collection; applied by analysis/
    max_failed_attention_checks = 0
    min_median_rt_ms = 400
    require_complete = true
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from camstudy.errors import UserError
from camstudy.kinds import KINDS, kind_of
from camstudy.tomlconfig import Fields, load_toml
from study.recruitment import PLATFORMS

TASKS = tuple(KINDS)  # the study kinds, by name


@dataclass(frozen=True)
class Completion:
    code: str = "CAMSTUDY-DONE"
    screened_out_code: str = "CAMSTUDY-SCREENED"
    redirect_url: str = ""  # "{code}" is replaced by the participant's code


CONSENT_FIELDS = ("researcher", "institution", "contact", "ethics_approval", "pay", "minutes", "data_retention")


@dataclass(frozen=True)
class Consent:
    """What the consent page must tell a participant before they agree (and the debrief
    repeats): who runs the study, whom to ask, who approved it, what it pays, how long it
    takes and what happens to the data."""

    researcher: str = ""
    institution: str = ""
    contact: str = ""
    ethics_approval: str = ""
    pay: str = ""
    minutes: int = 0
    data_retention: str = ""

    def missing(self) -> list[str]:
        return [name for name in CONSENT_FIELDS if not getattr(self, name)]


@dataclass(frozen=True)
class Exclusions:
    max_failed_attention_checks: int = 0
    min_median_rt_ms: int = 300
    require_complete: bool = True


@dataclass(frozen=True)
class StudyConfig:
    title: str
    task: str
    slug: str
    stimuli: Path | None
    trials_per_participant: int
    raters_per_item: int
    attention_checks: int
    design: str
    methods: tuple[str, ...]
    platform: str
    allow_plain_links: bool
    allow_repeat: bool
    practice: bool
    questionnaire: bool
    blank_ms: int = 300
    allow_degenerate: bool = False
    pilot: bool = False
    consent: Consent = field(default_factory=Consent)
    completion: Completion = field(default_factory=Completion)
    exclusions: Exclusions = field(default_factory=Exclusions)
    source_text: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    def as_json(self) -> dict:
        d = asdict(self)
        d.pop("source_text")
        d["stimuli"] = str(self.stimuli) if self.stimuli else None
        return d


def _positive(v: int) -> bool:
    return v >= 1


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study config; every problem is a one-line :class:`UserError`."""
    path = Path(path)
    raw = load_toml(path)
    f = Fields(raw, "")
    title = f.get("title", str, ..., lambda s: s.strip() != "", "must be a non-empty string")
    task = f.get("task", str, ..., lambda s: s in TASKS, f"must be one of {', '.join(TASKS)}")
    slug = f.get("slug", str, path.stem, _valid_slug, "must be 1-64 letters, digits or '-'")
    stimuli = f.get("stimuli", str, None)
    cfg = StudyConfig(
        title=title,
        task=task,
        slug=slug,
        stimuli=(path.parent / stimuli) if stimuli else None,
        trials_per_participant=f.get("trials_per_participant", int, 12, _positive, "must be an integer >= 1"),
        raters_per_item=f.get("raters_per_item", int, 9, _positive, "must be an integer >= 1"),
        attention_checks=f.get("attention_checks", int, 2, lambda v: v >= 0, "must be an integer >= 0"),
        design=f.get(
            "design",
            str,
            kind_of(task).design,
            lambda s: s in ("between", "within"),
            "must be 'between' or 'within'",
        ),
        methods=tuple(
            f.get("methods", list, [], lambda v: all(isinstance(m, str) for m in v), "must be a list of method names")
        ),
        platform=f.get("platform", str, "plain", lambda s: s in PLATFORMS, f"must be one of {', '.join(PLATFORMS)}"),
        allow_plain_links=f.get("allow_plain_links", bool, False),
        allow_repeat=f.get("allow_repeat", bool, False),
        practice=f.get("practice", bool, True),
        questionnaire=f.get("questionnaire", bool, True),
        blank_ms=f.get(
            "blank_ms", int, 300, lambda v: 0 <= v <= 5000, "must be an integer from 0 to 5000 (milliseconds)"
        ),
        allow_degenerate=f.get("allow_degenerate", bool, False),
        pilot=f.get("pilot", bool, False),
        consent=_consent(f.table_of("consent", {})),
        completion=_completion(f.table_of("completion", {})),
        exclusions=_exclusions(f.table_of("exclusions", {})),
        source_text=path.read_text(),
    )
    f.done()
    missing = cfg.consent.missing()
    if missing and not cfg.pilot:
        raise UserError(
            f"consent.{missing[0]}: missing; a study that can run live needs every consent field "
            f"({', '.join(CONSENT_FIELDS)}), or `pilot = true` (sandbox and debug links only)"
        )
    return cfg


def _valid_slug(s: str) -> bool:
    return 1 <= len(s) <= 64 and all(c.isalnum() or c == "-" for c in s)


def _completion(table: dict) -> Completion:
    f = Fields(table, "completion")
    code_ok = (lambda s: 1 <= len(s) <= 64 and s.isprintable(), "must be 1-64 printable characters")
    c = Completion(
        code=f.get("code", str, Completion.code, *code_ok),
        screened_out_code=f.get("screened_out_code", str, Completion.screened_out_code, *code_ok),
        redirect_url=f.get(
            "redirect_url",
            str,
            "",
            lambda s: s == "" or s.startswith(("https://", "http://")),
            "must be an http(s) URL",
        ),
    )
    f.done()
    if c.code == c.screened_out_code:
        raise UserError("completion.screened_out_code: must differ from completion.code")
    return c


def _consent(table: dict) -> Consent:
    f = Fields(table, "consent")
    text = (lambda s: s.strip() != "" and len(s) <= 2000, "must be a non-empty string of at most 2000 characters")
    c = Consent(
        researcher=f.get("researcher", str, "", *text),
        institution=f.get("institution", str, "", *text),
        contact=f.get("contact", str, "", *text),
        ethics_approval=f.get("ethics_approval", str, "", *text),
        pay=f.get("pay", str, "", *text),
        minutes=f.get("minutes", int, 0, lambda v: 1 <= v <= 600, "must be an integer from 1 to 600"),
        data_retention=f.get("data_retention", str, "", *text),
    )
    f.done()
    return c


def _exclusions(table: dict) -> Exclusions:
    f = Fields(table, "exclusions")
    e = Exclusions(
        max_failed_attention_checks=f.get(
            "max_failed_attention_checks", int, 0, lambda v: v >= 0, "must be an integer >= 0"
        ),
        min_median_rt_ms=f.get("min_median_rt_ms", int, 300, lambda v: v >= 0, "must be an integer >= 0"),
        require_complete=f.get("require_complete", bool, True),
    )
    f.done()
    return e
