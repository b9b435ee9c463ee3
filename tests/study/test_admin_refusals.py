"""Admin refusals not covered in test_admin.py: every admin route, found from the URL map
(so a route added later is covered too), refuses a visitor without a valid admin session,
and every admin POST form refuses a missing, forged or foreign CSRF token."""

from __future__ import annotations

import re
import secrets
import time
from datetime import timedelta

import pytest
from flask import Flask
from werkzeug.security import generate_password_hash

from study.admin_auth import token_sha256
from study.db import transaction
from study.models import AdminSession, AdminUser, utcnow
from tests.study.test_admin import PASSWORD, login, login_token
from tests.study.test_api import enroll

LOGIN = "admin.login"
ADMIN_COOKIE = "camstudy_admin"


@pytest.fixture
def admin(app) -> str:
    with transaction(app.extensions["camstudy.sessions"]) as s:
        s.add(AdminUser(name="ada", password_hash=generate_password_hash(PASSWORD)))
    return "ada"


def admin_urls(app) -> list[tuple[str, str, str]]:
    """``(method, url, endpoint)`` of every admin route, with a real study's slug filled in."""
    slug = app.config["STUDIES"]["class_discrimination"]
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        url = re.sub(r"<any\(([^)]*)\):\w+>", lambda m: m.group(1).split(",")[0].strip(), rule.rule)
        url = re.sub(r"<(?:\w+:)?slug>", slug, url)
        assert "<" not in url, f"fill in the variables of {rule.rule}"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, url, rule.endpoint))
    assert {e for _, _, e in out} >= {"admin.index", "admin.study_page", "admin.export", LOGIN, "admin.logout"}
    return out


def assert_refused(r, endpoint: str) -> None:
    """A page sends the visitor to the login form; data answers 401; nothing else is served."""
    if r.status_code == 302:
        assert r.headers["Location"].startswith("/admin/login"), r.headers["Location"]
    else:
        assert r.status_code == 401 and r.get_json() == {"error": "admin login required"}, (endpoint, r.status_code)


def forged_session(data: dict, key: str) -> str:
    other = Flask("forger")
    other.secret_key = key
    return other.session_interface.get_signing_serializer(other).dumps(data)


def _session_row(app, user_id: int, hours: float) -> str:
    """A server-side admin session (as a login creates), expiring ``hours`` from now."""
    token = secrets.token_urlsafe(32)
    with transaction(app.extensions["camstudy.sessions"]) as s:
        s.add(
            AdminSession(
                token_sha256=token_sha256(token), user_id=user_id, expires_at=utcnow() + timedelta(hours=hours)
            )
        )
    return token


def test_every_admin_get_route_needs_a_login(app, client, admin):
    gets = [(url, e) for m, url, e in admin_urls(app) if m == "GET" and e != LOGIN]
    with app.extensions["camstudy.sessions"]() as s:
        aid = s.query(AdminUser).filter_by(name="ada").one().id
    # A stranger, a participant, and sessions that claim to be the admin but are not.
    participant = app.test_client()
    enroll(participant, app.config["STUDIES"]["class_discrimination"])
    live = _session_row(app, aid, 1)
    expired = _session_row(app, aid, -0.01)
    claims = {
        "wrong key": (ADMIN_COOKIE, forged_session({"admin_session": live}, "wrong-key")),
        "unknown token": (ADMIN_COOKIE, forged_session({"admin_session": secrets.token_urlsafe(32)}, "test-secret")),
        "expired": (ADMIN_COOKIE, forged_session({"admin_session": expired}, "test-secret")),
        "token as a number": (ADMIN_COOKIE, forged_session({"admin_session": 12345}, "test-secret")),
        "the old claims": (ADMIN_COOKIE, forged_session({"admin_id": aid, "admin_at": time.time()}, "test-secret")),
        "in the participant cookie": ("camstudy", forged_session({"admin_session": live}, "test-secret")),
    }
    visitors = {"stranger": app.test_client(), "participant": participant}
    for name, (cookie_name, cookie) in claims.items():
        visitors[name] = app.test_client()
        visitors[name].set_cookie(cookie_name, cookie, path="/admin" if cookie_name == ADMIN_COOKIE else "/")
    for who, c in visitors.items():
        for url, endpoint in gets:
            r = c.get(url)
            assert_refused(r, f"{who}: {endpoint}")
            assert r.headers["Cache-Control"] == "no-store"
    # The genuine session (a current row, correctly signed cookie) is served: the refusals
    # above are the checks at work, not a broken page.
    genuine = app.test_client()
    genuine.set_cookie(ADMIN_COOKIE, forged_session({"admin_session": live}, "test-secret"), path="/admin")
    for url, endpoint in gets:
        assert genuine.get(url).status_code == 200, endpoint


def test_sessions_end_when_the_password_changes_or_the_user_goes(app, client, admin, migrated, monkeypatch):
    from camstudy.cli import main

    assert login(client).status_code == 302 and client.get("/admin/").status_code == 200
    monkeypatch.setenv("CAMSTUDY_ADMIN_PASSWORD", "a new password")
    assert main(["admin", "set-password", "ada", "--db", migrated]) == 0
    assert_refused(client.get("/admin/"), "after a password change")
    other = app.test_client()
    assert login(other, password="a new password").status_code == 302
    assert other.get("/admin/").status_code == 200
    with transaction(app.extensions["camstudy.sessions"]) as s:
        s.delete(s.query(AdminUser).filter_by(name="ada").one())
    assert_refused(other.get("/admin/"), "after the user was deleted")
    assert login(app.test_client(), password="a new password").status_code == 401


def test_every_admin_post_form_needs_its_csrf_token(app, client, admin):
    posts = [(url, e) for m, url, e in admin_urls(app) if m == "POST"]
    assert {e for _, e in posts} >= {LOGIN, "admin.logout"}
    staff, stranger = app.test_client(), app.test_client()
    assert login(staff).status_code == 302
    foreign = login_token(stranger)  # a genuine token, of another browser's session
    staff_token = re.search(r'name="csrf_token" value="([^"]+)"', staff.get("/admin/").get_data(as_text=True)).group(1)
    form = {"username": "ada", "password": PASSWORD}
    for c, own in ((staff, staff_token), (stranger, foreign)):
        for url, endpoint in posts:
            for token in (None, "", "forged", foreign if c is staff else staff_token, own + "x", "é" + own):
                data = dict(form) if token is None else {**form, "csrf_token": token}
                r = c.post(url, data=data)
                assert r.status_code == 400, (endpoint, token, r.status_code)
    assert staff.get("/admin/").status_code == 200  # no forged logout got through
    assert stranger.get("/admin/").status_code == 302  # and no forged login


def test_failed_logins_count_whatever_the_case_of_the_name(app, client, admin):
    app.config["ADMIN_USER_MAX_FAILURES"] = 5
    for i, name in enumerate(("ADA", "Ada", "aDa", "ada ", " ada")):
        r = login(app.test_client(), name=name, password="wrong", environ_base={"REMOTE_ADDR": f"10.0.0.{i}"})
        assert r.status_code == 401
    other = app.test_client()
    r = login(other, password=PASSWORD, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
