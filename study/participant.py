"""The participant's pages: consent, instructions with a practice trial, the trials (driven by
``static/study.js``), the questionnaire and the debrief with the completion code.

Recruitment (:mod:`study.recruitment`): a study reads the ids of its own platform only.
MTurk: ``workerId``, ``assignmentId``, ``hitId``, ``turkSubmitTo``; the preview with
``ASSIGNMENT_ID_NOT_AVAILABLE`` shows the task and enrolls no one. Prolific:
``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID``. A live link without the platform's worker id
is refused unless the study config sets ``allow_plain_links = true``. The mode comes only
from a link signed by the admin pages (``mode`` and ``mode_key``); test modes never show
the live completion code.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from camstudy.kinds import kind_of
from study import throttle
from study.api import autocommit, current_participant_id, reads, sessions, study_by_slug
from study.blinding import PRACTICE, pad_png, read_image_token
from study.completion import finish
from study.db import transaction
from study.enroll import UNREAD, AlreadyParticipated, before_enrolling, enroll, prior_participation
from study.models import Participant, PlanEntry, Stimulus, Study
from study.recruitment import MAX_ID, MTURK_SITES, Recruitment, clean_id, verify_mode
from study.teaching import EXAMPLE, teaching_items
from study.tokens import issue

bp = Blueprint("participant", __name__, url_prefix="/s/<slug>")

PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
IMAGE_CACHE = "private, max-age=86400, immutable"


@bp.before_request
def _framing() -> None:
    """An MTurk study's pages may be framed by MTurk (and the configured extra origins);
    every other page may not be framed at all."""
    slug = (request.view_args or {}).get("slug", "")
    study = study_by_slug(slug) if len(slug) <= 64 else None
    if study is not None and study.settings.get("platform") == "mturk":
        g.frame_ancestors = (*MTURK_SITES, *current_app.config["EXTRA_FRAME_ANCESTORS"])


def _param(name: str) -> str | None:
    v = request.values.get(name)
    if v is None or v == "":
        return None
    return v[:MAX_ID]


def recruitment_from_request(study: Study) -> Recruitment:
    """Platform ids and mode from the query string (or the consent form that carries them
    on); a 400 page for a link that no platform of this study would send."""
    mode = verify_mode(study.secret, study.slug, _param("mode"), _param("mode_key"))
    if mode is None:
        abort(400, "This link's test mode is not valid: test links come from the study's admin page.")
    if mode == "live" and study.settings.get("pilot"):
        abort(400, "This study is a pilot: only its sandbox and debug links work, not the live link.")
    turk_submit_to = _param("turkSubmitTo")
    hosts = current_app.config["MTURK_SUBMIT_HOSTS"]
    if turk_submit_to and turk_submit_to.rstrip("/") not in hosts:
        abort(400, "turkSubmitTo is not an MTurk submit host")
    if turk_submit_to and "sandbox" in turk_submit_to and mode == "live":
        abort(400, "This is the live study's link; the MTurk sandbox needs the study's sandbox link.")
    platform = study.settings.get("platform", "plain")
    ua = request.user_agent.string[:500]
    if platform == "prolific" and clean_id(_param("PROLIFIC_PID")):
        return Recruitment(
            mode=mode,
            platform="prolific",
            worker_id=_param("PROLIFIC_PID"),
            platform_study_id=_param("STUDY_ID"),
            session_id=_param("SESSION_ID"),
            user_agent=ua,
        )
    if platform == "mturk" and (clean_id(_param("workerId")) or _param("assignmentId") == PREVIEW):
        return Recruitment(
            mode=mode,
            platform="mturk",
            worker_id=_param("workerId"),
            assignment_id=_param("assignmentId"),
            hit_id=_param("hitId"),
            turk_submit_to=turk_submit_to,
            user_agent=ua,
        )
    if platform != "plain" and mode == "live" and not study.settings.get("allow_plain_links"):
        where = "Prolific" if platform == "prolific" else "MTurk"
        abort(400, f"This study runs on {where}: please open it from {where}, which adds your worker id to the link.")
    return Recruitment(mode=mode, platform="plain", user_agent=ua)


def _study_or_404(slug: str) -> Study:
    study = study_by_slug(slug) if len(slug) <= 64 else None
    if study is None:
        abort(404)
    return study


def _participant(study: Study) -> Row | None:
    """The session's participant of this study: the columns the pages need."""
    pid = current_participant_id(study)
    if pid is None:
        return None
    with reads()() as s:
        return s.execute(_PAGE_COLUMNS, {"pid": pid}).first()


_PAGE_COLUMNS = select(
    Participant.id,
    Participant.stage,
    Participant.status,
    Participant.mode,
    Participant.platform,
    Participant.worker_key,
    Participant.assignment_id,
    Participant.turk_submit_to,
).where(Participant.id == bindparam("pid"))


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    # compare_digest takes str of ASCII only: compare the bytes of whatever was sent.
    if not sent or not secrets.compare_digest(sent.encode(), session.get("csrf", "").encode()):
        abort(400, "the form expired; reload the page")


@bp.get("/")
def entry(slug: str):
    study = _study_or_404(slug)
    who = recruitment_from_request(study)
    if who.platform == "mturk" and who.assignment_id == PREVIEW:
        return render_template("preview.html", study=study, kind=kind_of(study.kind))
    p = _participant(study)
    if p is not None and (who.worker_key is None or who.worker_key == p.worker_key):
        return redirect(url_for("participant.stage", slug=slug, stage=p.stage if p.stage != "consent" else "task"))
    if who.worker_key is not None:
        with reads()() as s:
            again = _finished_before(s, study, who, prior_participation(s, study.id, who.worker_key))
        if again is not None:
            return again
    return render_template(
        "consent.html",
        study=study,
        params=request.args,
        csrf_token=_csrf_token(),
        consent=study.settings.get("consent") or {},
    )


def _finished_before(s, study: Study, who: Recruitment, prior: Row | None):
    """A worker who finished this study in this mode and opens its link again (another
    browser, a closed tab): their code again, with the platform's way back, so a finished
    worker is never stranded without it. None where that is not the case."""
    if prior is None or prior.status == "active" or prior.mode != who.mode or study.settings.get("allow_repeat"):
        return None
    p = s.execute(_PAGE_COLUMNS, {"pid": prior.id}).first()
    if who.platform == "mturk" and who.assignment_id and who.turk_submit_to:
        # The HIT as it was opened now (the first assignment may have been returned since).
        p = SimpleNamespace(**{**p._asdict(), "assignment_id": who.assignment_id, "turk_submit_to": who.turk_submit_to})
    page, _ = debrief_page(study, p, again=True)
    return page


@bp.post("/consent")
def consent(slug: str):
    study = _study_or_404(slug)
    _check_csrf()
    if request.form.get("agree") != "yes":
        return render_template("declined.html", study=study)
    who = recruitment_from_request(study)
    if who.platform == "mturk" and who.assignment_id == PREVIEW:
        abort(400, "accept the HIT before starting")
    key = f"enroll:{request.remote_addr or '?'}"
    prior = UNREAD
    try:
        # Read before the study's lock is taken, which every enrollment of the study waits for.
        with reads()() as s:  # the prior participation too: read outside the lock (see enroll)
            recent, prior = before_enrolling(s, study.id, who.worker_key, key, 60)
        if recent >= current_app.config["ENROLL_RATE_PER_MINUTE"]:
            abort(429, "Too many enrollments from this address; wait a minute.")
        try:
            with transaction(sessions()) as s:
                p = enroll(s, study, who, stage="task", prior=prior)  # takes the study's lock
        except IntegrityError:  # the same worker enrolled at this moment elsewhere: now it is their prior
            with transaction(sessions()) as s:
                p = enroll(s, study, who, stage="task")
        pid, stage = p.id, p.stage
        if p.new:
            # Counted once the enrollment is committed (an enrollment that fails, 503, costs
            # nothing), outside the lock that the next enrollment waits for.
            with autocommit() as conn:
                throttle.hit(conn, key)
                if pid % 100 == 0:
                    throttle.sweep(conn)
    except AlreadyParticipated:
        if prior is not UNREAD:
            with reads()() as s:
                again = _finished_before(s, study, who, prior_participation(s, study.id, who.worker_key))
            if again is not None:
                return again
        return render_template("already.html", study=study), 409
    except OperationalError:
        abort(503, "the study is busy; try again in a moment")
    session[f"p{study.id}"] = issue(current_app.config["SECRET_KEY"], pid, study.id)
    return redirect(url_for("participant.stage", slug=slug, stage=stage))


def completion_code(study: Study, p: Row) -> str:
    """The code the debrief shows. Test modes get a code that no platform accepts, never
    the live one (a test link must not be a way to a paid completion)."""
    completion = study.settings["completion"]
    if p.mode != "live":
        return f"TEST-{p.mode.upper()}-NOT-A-COMPLETION-CODE"
    return completion["code"] if p.status == "completed" else completion["screened_out_code"]


@bp.get("/<any(task, questionnaire, debrief):stage>")
def stage(slug: str, stage: str):
    study = _study_or_404(slug)
    p = _participant(study)
    if p is None:
        return redirect(url_for("participant.entry", slug=slug))
    if p.stage == "questionnaire":  # left there by an older version: the code never waits for it
        with transaction(sessions()) as s:
            finish(s.connection(), study.settings, p.id)
        p = _participant(study)
    if stage != p.stage:
        return redirect(url_for("participant.stage", slug=slug, stage=p.stage))
    if stage == "task":
        token = session[f"p{study.id}"]
        return render_template("task.html", study=study, kind=kind_of(study.kind), token=token, settings=study.settings)
    return debrief_page(study, p, sent=request.args.get("sent") == "1")


def debrief_page(study: Study, p: Row, sent: bool = False, again: bool = False):
    """The code (with a copy button), the platform's way back, and the optional questionnaire
    where the study has one and it is not answered yet."""
    completion = study.settings["completion"]
    code = completion_code(study, p)
    redirect_url = completion["redirect_url"].replace("{code}", code) if completion["redirect_url"] else ""
    mturk = None
    if p.platform == "mturk" and p.turk_submit_to and p.assignment_id and p.mode != "debug":
        mturk = {"action": p.turk_submit_to.rstrip("/") + "/mturk/externalSubmit", "assignmentId": p.assignment_id}
    with reads()() as s:
        answered = s.scalar(select(Participant.questionnaire).where(Participant.id == p.id)) is not None
    ask = bool(study.settings.get("questionnaire")) and not answered and not again
    return render_template(
        "debrief.html",
        study=study,
        participant=p,
        code=code,
        redirect_url=redirect_url,
        mturk=mturk,
        ask=ask,
        sent=sent,
        again=again,
        csrf_token=_csrf_token(),
        consent=study.settings.get("consent") or {},
    ), 200


@bp.post("/questionnaire")
def questionnaire(slug: str):
    """The optional questionnaire, sent from the debrief: stored once, after the code was shown."""
    study = _study_or_404(slug)
    p = _participant(study)
    if p is None:
        return redirect(url_for("participant.entry", slug=slug))
    _check_csrf()
    answers = {k: request.form.get(k, "")[:2000] for k in QUESTIONNAIRE_FIELDS}
    if any(answers.values()):
        with transaction(sessions()) as s:
            s.execute(
                update(Participant)
                .where(Participant.id == p.id, Participant.stage == "debrief", Participant.questionnaire.is_(None))
                .values(questionnaire=answers)
            )
    return redirect(url_for("participant.stage", slug=slug, stage="debrief", sent=1))


QUESTIONNAIRE_FIELDS = ("strategy", "difficulty", "comments")


@bp.get("/img/<token>")
def image(slug: str, token: str):
    """An image of a participant's trial, by a token signed for them (see study.blinding):
    the stimulus padded to its group's size, with no file name, ETag or modification time."""
    return _image(slug, token, hi=False)


@bp.get("/img/<token>/2x")
def image_2x(slug: str, token: str):
    """The same image rendered at twice its display size (the page's ``srcset`` for dense
    screens), padded per group from the 2x sizes, with the same headers."""
    return _image(slug, token, hi=True)


def _image(slug: str, token: str, hi: bool) -> Response:
    study = _study_or_404(slug)
    found = read_image_token(current_app.config["SECRET_KEY"], token)
    if found is None:
        abort(404)
    pid, position, slot = found
    with reads()() as s:
        if position in (PRACTICE, EXAMPLE):
            item = teaching_items(s, study, pid).at(position)
            shown = list(item.stimulus_ids) if item is not None else []
        else:
            layout = s.scalar(
                select(PlanEntry.layout)
                .join(Participant, Participant.id == PlanEntry.participant_id)
                .where(
                    PlanEntry.participant_id == pid, PlanEntry.position == position, Participant.study_id == study.id
                )
            )
            shown = list(layout["stimuli"]) if layout else []
        if not 0 <= slot < len(shown):
            abort(404)
        file, size = (Stimulus.file_2x, Stimulus.served_size_2x) if hi else (Stimulus.file, Stimulus.served_size)
        stim = s.execute(
            select(file.label("file"), size.label("size")).where(
                Stimulus.study_id == study.id, Stimulus.stimulus_id == shown[slot]
            )
        ).first()
    if stim is None or stim.file is None:
        abort(404)
    body = _served_bytes(study.stimuli_dir, stim.file, stim.size)
    resp = Response(body, mimetype="image/png")
    resp.headers["Cache-Control"] = IMAGE_CACHE
    return resp


@lru_cache(maxsize=256)
def _served_bytes(folder: str, file: str, size: int | None) -> bytes:
    """The stimulus file padded to its served size (cached: files never change once a study
    is created; a study checks their sha256 then)."""
    path = Path(folder) / file
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        abort(404)
    try:
        data = path.read_bytes()
    except OSError:
        abort(404)
    return pad_png(data, size) if size else data
