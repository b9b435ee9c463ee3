"""The admin pages: login, progress per study, mode and condition, live results, export.

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

import functools
import hashlib
import secrets
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import and_, case, delete, func, select
from werkzeug.exceptions import BadRequest
from werkzeug.security import check_password_hash, generate_password_hash

from study import throttle
from study.cookies import ADMIN_PATH
from study.db import transaction
from study.links import participant_links
from study.models import (
    MODES,
    STATUSES,
    AdminSession,
    AdminUser,
    Answer,
    Item,
    Participant,
    PlanEntry,
    Stimulus,
    Study,
    utcnow,
)

bp = Blueprint("admin", __name__, url_prefix=ADMIN_PATH)

CSRF_KEY = "admin_csrf"
SESSION_KEY = "admin_session"
DEVICE_COOKIE = "camstudy_device"
DEVICE_DAYS = 180
DEFAULTS = {"ADMIN_LOGIN_MAX_FAILURES": 5, "ADMIN_USER_MAX_FAILURES": 50, "ADMIN_LOGIN_WINDOW_S": 15 * 60,
            "ADMIN_SESSION_HOURS": 12}
MAX_NAME = 100
MAX_PASSWORD = 1024
RECENT = 50  # participants listed per mode on a study's page


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown user names against, so they take as long as known ones."""
    return generate_password_hash(secrets.token_hex(16))


@bp.record_once
def _setup(state) -> None:
    for k, v in DEFAULTS.items():
        state.app.config.setdefault(k, v)


def _sessions():
    return current_app.extensions["camstudy.sessions"]


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


# --- CSRF, sessions and login ----------------------------------------------------------------

def csrf_token() -> str:
    if CSRF_KEY not in session:
        session[CSRF_KEY] = secrets.token_urlsafe(32)
    return session[CSRF_KEY]


class Refused(BadRequest):
    """A 400 of the admin pages with its own title and a link onward: study.app's 400
    handler renders it as an HTML page (error.html)."""

    def __init__(self, title: str, description: str, back: tuple[str, str]) -> None:
        super().__init__(description)
        self.title = title
        self.back = back  # (link, its text)

    @property
    def name(self) -> str:
        return self.title


def _check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get(CSRF_KEY, "")
    # compare_digest takes str of ASCII only: compare the bytes of whatever was sent.
    if not sent or not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
        back = ((url_for("admin.login"), "Open the login form again") if request.endpoint == "admin.login"
                else (url_for("admin.index"), "Back to the studies"))
        raise Refused("The form has expired", "This form has expired (or did not come from this site), so "
                      "nothing was done. Reload the page and try again.", back)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def current_admin() -> AdminUser | None:
    """The logged-in admin of this request, or None (no session, expired, logged out,
    password changed, user deleted)."""
    if "admin" in g:
        return g.admin
    admin = None
    token = session.get(SESSION_KEY)
    if isinstance(token, str) and 0 < len(token) <= 100:
        with _sessions()() as s:
            admin = s.scalar(
                select(AdminUser).join(AdminSession, AdminSession.user_id == AdminUser.id)
                .where(AdminSession.token_sha256 == token_sha256(token), AdminSession.expires_at > utcnow()))
    g.admin = admin
    return admin


def end_sessions(s, user_id: int) -> None:
    """End every session of a user (a password change)."""
    s.execute(delete(AdminSession).where(AdminSession.user_id == user_id))


def login_required(data: bool = False):
    """Pages redirect to the login form; data routes answer 401 JSON."""

    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            if current_admin() is None:
                if data:
                    return jsonify(error="admin login required"), 401
                return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
            return view(*args, **kwargs)

        return inner

    return wrap


def _safe_next(target: str | None) -> str:
    """Only a path of this app's admin area: never an open redirect."""
    if target:
        parts = urlsplit(target)
        # No control characters either: a line break would split the Location header (500).
        if (not parts.scheme and not parts.netloc and parts.path.startswith("/admin/") and "\\" not in target
                and target.isprintable()):
            return target
    return url_for("admin.index")


def _devices() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="camstudy.admin-device")


def _device_of(name: str) -> str | None:
    """The id of this browser's device cookie if it was left by a login of ``name``."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw or len(raw) > 500:
        return None
    try:
        data = _devices().loads(raw, max_age=DEVICE_DAYS * 86400)
    except BadSignature:
        return None
    if isinstance(data, dict) and data.get("u") == name.casefold() and isinstance(data.get("d"), str):
        return data["d"]
    return None


def _login_page(status: int, error: str, **extra):
    page = render_template("admin_login.html", csrf_token=csrf_token(), next=request.form.get("next", ""),
                           error=error, **extra)
    return page, status


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if current_admin() is not None:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("admin_login.html", csrf_token=csrf_token(), next=request.args.get("next", ""))
    _check_csrf()
    name = request.form.get("username", "").strip()[:MAX_NAME]
    password = request.form.get("password", "")[:MAX_PASSWORD]
    cfg = current_app.config
    window = cfg["ADMIN_LOGIN_WINDOW_S"]
    device = _device_of(name)
    addr_key = f"login-device:{device}" if device else f"login-addr:{request.remote_addr or '?'}"
    limits = [(addr_key, cfg["ADMIN_LOGIN_MAX_FAILURES"])]
    if device is None:  # a browser the user never logged in from: the name's own limit too
        limits.append((f"login-user:{name.casefold()}", cfg["ADMIN_USER_MAX_FAILURES"]))
    with _sessions()() as s:
        wait = max(throttle.retry_after(s, key, limit, window) for key, limit in limits)
    if wait:
        page, status = _login_page(429, f"Too many failed logins. Try again in about {max(1, round(wait / 60))} minute(s).")
        return page, status, {"Retry-After": str(wait)}
    with _sessions()() as s:
        user = s.scalar(select(AdminUser).where(AdminUser.name == name)) if name else None
    ok = check_password_hash(user.password_hash if user else _dummy_hash(), password) and user is not None
    if not ok:
        with transaction(_sessions()) as s:
            throttle.hit(s, *(key for key, _ in limits))
            throttle.sweep(s)
        current_app.logger.warning("admin login failed for %r from %s", name, request.remote_addr)
        return _login_page(401, "Wrong user name or password.", username=name)
    token = secrets.token_urlsafe(32)
    with transaction(_sessions()) as s:
        throttle.clear(s, addr_key)
        s.execute(delete(AdminSession).where(AdminSession.expires_at <= utcnow()))
        s.add(AdminSession(token_sha256=token_sha256(token), user_id=user.id,
                           expires_at=utcnow() + timedelta(hours=cfg["ADMIN_SESSION_HOURS"])))
    target = _safe_next(request.form.get("next"))
    session.clear()  # a fresh session: nothing from before the login carries over
    session[SESSION_KEY] = token
    csrf_token()
    current_app.logger.info("admin %r logged in from %s", name, request.remote_addr)
    resp = redirect(target)
    resp.set_cookie(DEVICE_COOKIE, _devices().dumps({"u": name.casefold(), "d": device or secrets.token_urlsafe(16)}),
                    max_age=DEVICE_DAYS * 86400, path=ADMIN_PATH, secure=request.is_secure, httponly=True,
                    samesite="Lax")
    return resp


@bp.post("/logout")
def logout():
    _check_csrf()
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        with transaction(_sessions()) as s:
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
    with _sessions()() as s:
        studies = s.scalars(select(Study).order_by(Study.created_at, Study.id)).all()
        people = defaultdict(lambda: defaultdict(int))
        for sid, mode, status, n in s.execute(
            select(Participant.study_id, Participant.mode, Participant.status, func.count())
            .group_by(Participant.study_id, Participant.mode, Participant.status)
        ):
            people[(sid, mode)][status] += n
            people[(sid, mode)]["enrolled"] += n
        answers = dict(((sid, mode), n) for sid, mode, n in s.execute(
            select(Participant.study_id, Participant.mode, func.count(Answer.id))
            .join(Participant, Participant.id == Answer.participant_id)
            .group_by(Participant.study_id, Participant.mode)
        ))
    rows = []
    for st in studies:
        modes = [{"mode": m, "answers": answers.get((st.id, m), 0), **_counts(people[(st.id, m)])} for m in MODES]
        # Live always has its row; a test mode only once someone took part in it.
        shown = [m for m in modes if m["mode"] == "live" or m["enrolled"]]
        rows.append({"study": st, "modes": shown, "empty": [m["mode"] for m in modes if m not in shown]})
    return render_template("admin_index.html", rows=rows, admin=current_admin(), csrf_token=csrf_token())


def _counts(c: dict) -> dict:
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
    role_models = dict(s.execute(
        select(Stimulus.model_role, Stimulus.model).where(Stimulus.study_id == study.id,
                                                          Stimulus.model_role.in_(("stronger", "weaker"))).distinct()
    ).all())
    out = {m: {"conditions": {c: _counts({}) for c in conditions}, "answers": 0, "raters": {}, "results": [],
               "checks": {"n": 0, "passed": 0}, "participants": []} for m in MODES}

    for mode, cond, status, n in s.execute(
        select(Participant.mode, Participant.condition, Participant.status, func.count())
        .where(Participant.study_id == study.id).group_by(Participant.mode, Participant.condition, Participant.status)
    ):
        cell = out[mode]["conditions"].setdefault(cond, _counts({}))
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
        .where(Participant.study_id == study.id).group_by(Participant.mode, PlanEntry.item_pk)
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
                "items": len(its), "assigned": _spread([assigned[(mode, it.id)] for it in its]),
                "answered": _spread(done), "full": sum(1 for d in done if d >= target),
            }

    # Live results over every stored answer (before analysis/'s exclusions).
    correct = func.sum(case((Answer.correct.is_(True), 1), else_=0))
    decided = func.count(Answer.correct)
    plan_join = and_(PlanEntry.participant_id == Answer.participant_id, PlanEntry.position == Answer.position)
    groups = s.execute(
        select(Participant.mode, Item.method, Item.model_role, Item.is_attention_check, func.count(Answer.id),
               correct, decided, func.avg(Answer.score_stronger), func.count(Answer.score_stronger))
        .join(Participant, Participant.id == Answer.participant_id)
        .join(PlanEntry, plan_join).join(Item, Item.id == PlanEntry.item_pk)
        .where(Participant.study_id == study.id)
        .group_by(Participant.mode, Item.method, Item.model_role, Item.is_attention_check)
    ).all()
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
        if study.kind != "trust" and role:
            name = role_models.get(role, role)
            r["by_model"][f"{role} ({name})" if name != role else role] = {
                "n": n, "accuracy": (int(n_correct or 0) / n) if n else None}
    for (mode, method), r in sorted(results.items()):
        out[mode]["results"].append({
            "method": method, "n": r["n"] if study.kind != "trust" else r["score_n"],
            "accuracy": r["correct"] / r["n"] if study.kind != "trust" and r["n"] else None,
            "mean_score_stronger": r["score_sum"] / r["score_n"] if r["score_n"] else None,
            "by_model": dict(sorted(r["by_model"].items())),
        })
    for mode in MODES:
        c = out[mode]["checks"]
        c["rate"] = c["passed"] / c["n"] if c["n"] else None

    # The latest participants (support: a worker writes in about a payment or a problem).
    answered_n = (select(func.count(Answer.id)).where(Answer.participant_id == Participant.id)
                  .correlate(Participant).scalar_subquery())
    total_n = (select(func.count(PlanEntry.id)).where(PlanEntry.participant_id == Participant.id)
               .correlate(Participant).scalar_subquery())
    for mode in MODES:
        for p, n_done, n_total in s.execute(
            select(Participant, answered_n, total_n)
            .where(Participant.study_id == study.id, Participant.mode == mode)
            .order_by(Participant.id.desc()).limit(RECENT)
        ):
            out[mode]["participants"].append({
                "p": p, "answered": n_done, "total": n_total, "enrolled_at": _utc_minute(p.created_at),
                "time_on_task": _minutes(seconds_between(p.created_at, p.completed_at))})
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
        select(Participant.mode, Participant.created_at, Participant.completed_at)
        .where(Participant.study_id == study.id, Participant.status == "completed",
               Participant.completed_at.is_not(None))
    ):
        minutes[mode].append(seconds_between(created, completed) / 60)
    out: dict[str, dict | None] = {}
    for mode in MODES:
        v = sorted(minutes[mode])
        out[mode] = {"n": len(v), "median": _quantile(v, 0.5), "q1": _quantile(v, 0.25), "q3": _quantile(v, 0.75),
                     "min": v[0], "max": v[-1]} if v else None
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
            "rules": [{"rule": rule, "text": rule_text(rule, rules), "excluded": flow[f"excluded_{rule}"]}
                      for rule in RULES],
            "enrolled": flow["enrolled"], "excluded": flow["excluded"], "remain": flow["analysed_participants"],
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
    when = "" if t is None else (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)).strftime(
        "%Y-%m-%d %H:%M:%S UTC")
    return {"sha256": study.prereg_sha256, "frozen_at": when}


@bp.get("/s/<slug>")
@login_required()
def study_page(slug: str):
    with _sessions()() as s:
        study = _study_or_404(s, slug)
        progress, role_models = study_progress(s, study)
        times = time_on_task(s, study)
        preview = exclusion_preview(s, study)
    links = participant_links(study, request.host_url)
    enrolled = {m: sum(c["enrolled"] for c in progress[m]["conditions"].values()) for m in MODES}
    return render_template("admin_study.html", study=study, progress=progress, modes=MODES, links=links,
                           enrolled=enrolled, times=times, preview=preview, prereg=preregistration_record(study),
                           statuses=STATUSES, role_models=role_models, recent=RECENT,
                           target=study.settings.get("raters_per_item"), admin=current_admin(),
                           csrf_token=csrf_token())


@bp.get("/s/<slug>/export.<any(csv, parquet):fmt>")
@login_required(data=True)
def export(slug: str, fmt: str):
    from study.export import export_bytes, export_rows

    mode = request.args.get("mode", "live")
    if mode not in (*MODES, "all"):
        raise Refused("No such export", "An export's mode must be live, sandbox, debug or all. "
                      "Use the export links on the study's page.",
                      (url_for("admin.study_page", slug=slug), "Back to the study"))
    with _sessions()() as s:
        study = _study_or_404(s, slug)
        df = export_rows(s, study, mode=mode, raw_ids=False)  # the download is always pseudonymous
    body = export_bytes(df, fmt)
    mimetype = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
    current_app.logger.info("admin %r exported %s (%s, %d rows)", current_admin().name, slug, mode, len(df))
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{study.slug}-{mode}.{fmt}"'})
