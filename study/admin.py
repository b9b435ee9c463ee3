"""The admin pages (views): login, progress per study, mode and condition, live results, export.

The authentication helpers live in :mod:`study.admin_auth`, the queries behind the pages in
:mod:`study.admin_progress`.

Security:

- Admin users come from ``camstudy admin create-user`` (werkzeug password hashes). A login
  form carries a CSRF token.
- Sessions live in the database (:class:`study.models.AdminSession`): the ``camstudy_admin``
  cookie holds a random token whose sha256 is the row's key. A session ends after
  ``ADMIN_SESSION_HOURS`` (12), at logout (the row is deleted, so a copy of the cookie made
  before is worthless), and when ``camstudy admin set-password`` changes the password (every
  row of the user is deleted). Every worker and host sees the same rows.
- Failed logins are counted in the database (:mod:`study.throttle`), shared by every worker
  and host: an address gets 429 after ``ADMIN_LOGIN_MAX_FAILURES`` (5) failures within
  ``ADMIN_LOGIN_WINDOW_S`` (15 minutes). A user name gets 429 after
  ``ADMIN_USER_MAX_FAILURES`` (50) failures in that window from all addresses together
  (guessing spread over many addresses), except in a browser where that user logged in
  before: a successful login leaves a signed device cookie, and a browser with it is
  counted on its own. So an attacker slows only themselves and cannot lock the admin out.
- Pages redirect to the login when there is no admin session; data (the exports) answer 401
  JSON. Logout is a POST with the CSRF token. Every admin response is ``no-store``.
- Worker ids and questionnaire answers are shown through Jinja's autoescape only; the
  dashboard's export is always pseudonymous (raw ids only through ``camstudy export --raw-ids``).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import delete, func, select
from werkzeug.security import check_password_hash

from camstudy.kinds import kind_of
from study import throttle
from study.admin_auth import (
    DEFAULTS,
    DEVICE_COOKIE,
    DEVICE_DAYS,
    MAX_NAME,
    MAX_PASSWORD,
    SESSION_KEY,
    Refused,
    check_csrf,
    csrf_token,
    current_admin,
    device_of,
    device_serializer,
    dummy_hash,
    login_required,
    safe_next,
    session_maker,
    token_sha256,
)
from study.admin_progress import (
    RECENT,
    exclusion_preview,
    preregistration_record,
    status_counts,
    study_progress,
    time_on_task,
)
from study.cookies import ADMIN_PATH
from study.db import transaction
from study.links import participant_links
from study.models import (
    MODES,
    STATUSES,
    AdminSession,
    AdminUser,
    Answer,
    Participant,
    Study,
    utcnow,
)

bp = Blueprint("admin", __name__, url_prefix=ADMIN_PATH)


@bp.record_once
def _setup(state) -> None:
    for k, v in DEFAULTS.items():
        state.app.config.setdefault(k, v)


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _login_page(status: int, error: str, **extra):
    page = render_template(
        "admin_login.html", csrf_token=csrf_token(), next=request.form.get("next", ""), error=error, **extra
    )
    return page, status


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if current_admin() is not None:
            return redirect(safe_next(request.args.get("next")))
        return render_template("admin_login.html", csrf_token=csrf_token(), next=request.args.get("next", ""))
    check_csrf()
    name = request.form.get("username", "").strip()[:MAX_NAME]
    password = request.form.get("password", "")[:MAX_PASSWORD]
    cfg = current_app.config
    window = cfg["ADMIN_LOGIN_WINDOW_S"]
    device = device_of(name)
    addr_key = f"login-device:{device}" if device else f"login-addr:{request.remote_addr or '?'}"
    limits = [(addr_key, cfg["ADMIN_LOGIN_MAX_FAILURES"])]
    if device is None:  # a browser the user never logged in from: the name's own limit too
        limits.append((f"login-user:{name.casefold()}", cfg["ADMIN_USER_MAX_FAILURES"]))
    with session_maker()() as s:
        wait = max(throttle.retry_after(s, key, limit, window) for key, limit in limits)
    if wait:
        page, status = _login_page(
            429, f"Too many failed logins. Try again in about {max(1, round(wait / 60))} minute(s)."
        )
        return page, status, {"Retry-After": str(wait)}
    with session_maker()() as s:
        user = s.scalar(select(AdminUser).where(AdminUser.name == name)) if name else None
    ok = check_password_hash(user.password_hash if user else dummy_hash(), password) and user is not None
    if not ok:
        with transaction(session_maker()) as s:
            throttle.hit(s, *(key for key, _ in limits))
            throttle.sweep(s)
        current_app.logger.warning("admin login failed for %r from %s", name, request.remote_addr)
        return _login_page(401, "Wrong user name or password.", username=name)
    token = secrets.token_urlsafe(32)
    with transaction(session_maker()) as s:
        throttle.clear(s, addr_key)
        s.execute(delete(AdminSession).where(AdminSession.expires_at <= utcnow()))
        s.add(
            AdminSession(
                token_sha256=token_sha256(token),
                user_id=user.id,
                expires_at=utcnow() + timedelta(hours=cfg["ADMIN_SESSION_HOURS"]),
            )
        )
    target = safe_next(request.form.get("next"))
    session.clear()  # a fresh session: nothing from before the login carries over
    session[SESSION_KEY] = token
    csrf_token()
    current_app.logger.info("admin %r logged in from %s", name, request.remote_addr)
    resp = redirect(target)
    resp.set_cookie(
        DEVICE_COOKIE,
        device_serializer().dumps({"u": name.casefold(), "d": device or secrets.token_urlsafe(16)}),
        max_age=DEVICE_DAYS * 86400,
        path=ADMIN_PATH,
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
    )
    return resp


@bp.post("/logout")
def logout():
    check_csrf()
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        with transaction(session_maker()) as s:
            s.execute(delete(AdminSession).where(AdminSession.token_sha256 == token_sha256(token)))
    session.clear()
    return redirect(url_for("admin.login"))


# --- pages -----------------------------------------------------------------------------------


def _study_or_404(s, slug: str) -> Study:
    study = s.scalar(select(Study).where(Study.slug == slug)) if len(slug) <= 64 else None
    if study is None:
        abort(404)
    return study


@bp.get("/")
@login_required()
def index():
    with session_maker()() as s:
        studies = s.scalars(select(Study).order_by(Study.created_at, Study.id)).all()
        people = defaultdict(lambda: defaultdict(int))
        for sid, mode, status, n in s.execute(
            select(Participant.study_id, Participant.mode, Participant.status, func.count()).group_by(
                Participant.study_id, Participant.mode, Participant.status
            )
        ):
            people[(sid, mode)][status] += n
            people[(sid, mode)]["enrolled"] += n
        answers = dict(
            ((sid, mode), n)
            for sid, mode, n in s.execute(
                select(Participant.study_id, Participant.mode, func.count(Answer.id))
                .join(Participant, Participant.id == Answer.participant_id)
                .group_by(Participant.study_id, Participant.mode)
            )
        )
    rows = []
    for st in studies:
        modes = [{"mode": m, "answers": answers.get((st.id, m), 0), **status_counts(people[(st.id, m)])} for m in MODES]
        # Live always has its row; a test mode only once someone took part in it.
        shown = [m for m in modes if m["mode"] == "live" or m["enrolled"]]
        rows.append({"study": st, "modes": shown, "empty": [m["mode"] for m in modes if m not in shown]})
    return render_template("admin_index.html", rows=rows, admin=current_admin(), csrf_token=csrf_token())


@bp.get("/s/<slug>")
@login_required()
def study_page(slug: str):
    with session_maker()() as s:
        study = _study_or_404(s, slug)
        progress, role_models = study_progress(s, study)
        times = time_on_task(s, study)
        preview = exclusion_preview(s, study)
    links = participant_links(study, request.host_url)
    enrolled = {m: sum(c["enrolled"] for c in progress[m]["conditions"].values()) for m in MODES}
    return render_template(
        "admin_study.html",
        study=study,
        kind=kind_of(study.kind),
        progress=progress,
        modes=MODES,
        links=links,
        enrolled=enrolled,
        times=times,
        preview=preview,
        prereg=preregistration_record(study),
        statuses=STATUSES,
        role_models=role_models,
        recent=RECENT,
        target=study.settings.get("raters_per_item"),
        admin=current_admin(),
        csrf_token=csrf_token(),
    )


@bp.get("/s/<slug>/export.<any(csv, parquet):fmt>")
@login_required(data=True)
def export(slug: str, fmt: str):
    from study.export import export_bytes, export_rows

    mode = request.args.get("mode", "live")
    if mode not in (*MODES, "all"):
        raise Refused(
            "No such export",
            "An export's mode must be live, sandbox, debug or all. Use the export links on the study's page.",
            (url_for("admin.study_page", slug=slug), "Back to the study"),
        )
    with session_maker()() as s:
        study = _study_or_404(s, slug)
        df = export_rows(s, study, mode=mode, raw_ids=False)  # the download is always pseudonymous
    body = export_bytes(df, fmt)
    mimetype = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
    current_app.logger.info("admin %r exported %s (%s, %d rows)", current_admin().name, slug, mode, len(df))
    return Response(
        body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{study.slug}-{mode}.{fmt}"'}
    )
