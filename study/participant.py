"""The participant's pages: consent, instructions with a practice trial, the trials (driven by
``static/study.js``), the questionnaire and the debrief with the completion code.

Recruitment: plain links; MTurk (``assignmentId``, ``workerId``, ``hitId``, ``turkSubmitTo``;
the preview with ``ASSIGNMENT_ID_NOT_AVAILABLE`` shows the task and enrolls no one);
Prolific (``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID``). ``mode=sandbox`` or ``mode=debug``
keeps test runs apart from live data (an MTurk sandbox ``turkSubmitTo`` implies sandbox).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from study.api import current_participant_id, finish, sessions, study_by_slug
from study.db import transaction
from study.enroll import AlreadyParticipated, Recruitment, enroll
from study.models import Participant, Stimulus, Study
from study.tokens import issue

bp = Blueprint("participant", __name__, url_prefix="/s/<slug>")

PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
MAX_ID = 200


def _param(name: str) -> str | None:
    v = request.values.get(name)
    if v is None or v == "":
        return None
    return v[:MAX_ID]


def recruitment_from_request(study: Study) -> Recruitment:
    """Platform ids from the query string (or the consent form that carries them on)."""
    turk_submit_to = _param("turkSubmitTo")
    if turk_submit_to and turk_submit_to.rstrip("/") not in current_app.config["MTURK_SUBMIT_HOSTS"]:
        abort(400, "turkSubmitTo is not an MTurk submit host")
    mode = _param("mode") or ("sandbox" if turk_submit_to and "sandbox" in turk_submit_to else "live")
    if mode not in ("live", "sandbox", "debug"):
        abort(400, "mode must be live, sandbox or debug")
    if _param("PROLIFIC_PID"):
        return Recruitment(mode=mode, platform="prolific", worker_id=_param("PROLIFIC_PID"),
                           platform_study_id=_param("STUDY_ID"), session_id=_param("SESSION_ID"),
                           user_agent=request.user_agent.string[:500])
    if _param("workerId") or _param("assignmentId"):
        return Recruitment(mode=mode, platform="mturk", worker_id=_param("workerId"),
                           assignment_id=_param("assignmentId"), hit_id=_param("hitId"),
                           turk_submit_to=turk_submit_to, user_agent=request.user_agent.string[:500])
    return Recruitment(mode=mode, platform="plain", user_agent=request.user_agent.string[:500])


class RateLimit:
    """At most ``per_minute`` enrollments per client address, in this process."""

    def __init__(self) -> None:
        self.hits: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def allow(self, key: str, per_minute: int) -> bool:
        now = time.monotonic()
        with self.lock:
            q = self.hits[key]
            while q and now - q[0] > 60:
                q.popleft()
            if len(q) >= per_minute:
                return False
            q.append(now)
            return True


def _study_or_404(slug: str) -> Study:
    study = study_by_slug(slug) if len(slug) <= 64 else None
    if study is None:
        abort(404)
    return study


def _participant(study: Study) -> Participant | None:
    pid = current_participant_id(study)
    if pid is None:
        return None
    with sessions()() as s:
        return s.get(Participant, pid)


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
        return render_template("preview.html", study=study)
    p = _participant(study)
    if p is not None and (who.worker_id is None or who.worker_id == p.worker_id):
        return redirect(url_for("participant.stage", slug=slug, stage=p.stage if p.stage != "consent" else "task"))
    return render_template("consent.html", study=study, params=request.args, csrf_token=_csrf_token())


@bp.post("/consent")
def consent(slug: str):
    study = _study_or_404(slug)
    _check_csrf()
    if request.form.get("agree") != "yes":
        return render_template("declined.html", study=study)
    if not current_app.extensions["camstudy.enroll_limiter"].allow(request.remote_addr or "?", current_app.config["ENROLL_RATE_PER_MINUTE"]):
        abort(429, "too many enrollments from this address; wait a minute")
    who = recruitment_from_request(study)
    if who.platform == "mturk" and who.assignment_id == PREVIEW:
        abort(400, "accept the HIT before starting")
    try:
        with transaction(sessions()) as s:
            p = enroll(s, study.id, who)
            if p.stage == "consent":
                p.stage = "task"
            pid, stage = p.id, p.stage
    except AlreadyParticipated:
        return render_template("already.html", study=study), 409
    except OperationalError:
        abort(503, "the study is busy; try again in a moment")
    session[f"p{study.id}"] = issue(current_app.config["SECRET_KEY"], pid, study.id)
    return redirect(url_for("participant.stage", slug=slug, stage=stage))


@bp.route("/<any(task, questionnaire, debrief):stage>", methods=["GET", "POST"])
def stage(slug: str, stage: str):
    study = _study_or_404(slug)
    p = _participant(study)
    if p is None:
        return redirect(url_for("participant.entry", slug=slug))
    if stage != p.stage:
        return redirect(url_for("participant.stage", slug=slug, stage=p.stage))
    if stage == "task":
        token = session[f"p{study.id}"]
        return render_template("task.html", study=study, token=token, settings=study.settings)
    if stage == "questionnaire":
        if request.method == "POST":
            _check_csrf()
            answers = {k: request.form.get(k, "")[:2000] for k in ("strategy", "difficulty", "comments")}
            with transaction(sessions()) as s:
                q = s.get(Participant, p.id)
                if q.stage == "questionnaire":
                    q.questionnaire = answers
                    finish(s, s.get(Study, study.id), q)
            return redirect(url_for("participant.stage", slug=slug, stage="debrief"))
        return render_template("questionnaire.html", study=study, csrf_token=_csrf_token())
    completion = study.settings["completion"]
    code = completion["code"] if p.status == "completed" else completion["screened_out_code"]
    redirect_url = completion["redirect_url"].replace("{code}", code) if completion["redirect_url"] else ""
    mturk = None
    if p.platform == "mturk" and p.turk_submit_to and p.assignment_id:
        mturk = {"action": p.turk_submit_to.rstrip("/") + "/mturk/externalSubmit", "assignmentId": p.assignment_id}
    return render_template("debrief.html", study=study, participant=p, code=code, redirect_url=redirect_url, mturk=mturk)


@bp.get("/img/<int(max=2147483647):stimulus_pk>")  # past the column's range: 404
def image(slug: str, stimulus_pk: int):
    study = _study_or_404(slug)
    with sessions()() as s:
        stim = s.scalar(select(Stimulus).where(Stimulus.id == stimulus_pk, Stimulus.study_id == study.id))
    if stim is None:
        abort(404)
    resp = send_from_directory(study.stimuli_dir, stim.file, mimetype="image/png", max_age=3600)
    return resp
