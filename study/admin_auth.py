"""Admin authentication: CSRF tokens, database sessions, the login decorator, device cookies.

The security rules these implement are described in :mod:`study.admin`; the login and logout
views that use them live there too.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from werkzeug.exceptions import BadRequest
from werkzeug.security import generate_password_hash

from study.models import AdminSession, AdminUser, utcnow

CSRF_KEY = "admin_csrf"
SESSION_KEY = "admin_session"
DEVICE_COOKIE = "camstudy_device"
DEVICE_DAYS = 180
DEFAULTS = {
    "ADMIN_LOGIN_MAX_FAILURES": 5,
    "ADMIN_USER_MAX_FAILURES": 50,
    "ADMIN_LOGIN_WINDOW_S": 15 * 60,
    "ADMIN_SESSION_HOURS": 12,
}
MAX_NAME = 100
MAX_PASSWORD = 1024


@functools.cache
def dummy_hash() -> str:
    """A hash to check unknown user names against, so they take as long as known ones."""
    return generate_password_hash(secrets.token_hex(16))


def session_maker():
    return current_app.extensions["camstudy.sessions"]


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


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get(CSRF_KEY, "")
    # compare_digest takes str of ASCII only: compare the bytes of whatever was sent.
    if not sent or not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
        back = (
            (url_for("admin.login"), "Open the login form again")
            if request.endpoint == "admin.login"
            else (url_for("admin.index"), "Back to the studies")
        )
        raise Refused(
            "The form has expired",
            "This form has expired (or did not come from this site), so "
            "nothing was done. Reload the page and try again.",
            back,
        )


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
        with session_maker()() as s:
            admin = s.scalar(
                select(AdminUser)
                .join(AdminSession, AdminSession.user_id == AdminUser.id)
                .where(AdminSession.token_sha256 == token_sha256(token), AdminSession.expires_at > utcnow())
            )
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


def safe_next(target: str | None) -> str:
    """Only a path of this app's admin area: never an open redirect."""
    if target:
        parts = urlsplit(target)
        # No control characters either: a line break would split the Location header (500).
        if (
            not parts.scheme
            and not parts.netloc
            and parts.path.startswith("/admin/")
            and "\\" not in target
            and target.isprintable()
        ):
            return target
    return url_for("admin.index")


def device_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="camstudy.admin-device")


def device_of(name: str) -> str | None:
    """The id of this browser's device cookie if it was left by a login of ``name``."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw or len(raw) > 500:
        return None
    try:
        data = device_serializer().loads(raw, max_age=DEVICE_DAYS * 86400)
    except BadSignature:
        return None
    if isinstance(data, dict) and data.get("u") == name.casefold() and isinstance(data.get("d"), str):
        return data["d"]
    return None
