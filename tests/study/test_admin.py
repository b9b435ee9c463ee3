"""The admin area (login, CSRF, rate limit, progress pages) and the export (library and CLI)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pandas as pd
import pytest
from werkzeug.security import generate_password_hash

from camstudy.cli import main
from study.db import transaction
from study.export import PARTICIPANT_COLUMNS, columns, export_columns, export_rows
from study.models import Answer, Participant, Stimulus, Study
from tests.study.test_api import enroll, headers, signed, worker

PASSWORD = "correct horse battery"
XSS = "<script>alert(1)</script>"
OUR_SCRIPT = '<script src="/static/admin.js" defer>'
DOCUMENTED = [
    "study",
    "study_kind",
    "mode",
    "participant",
    "condition",
    "position",
    "item_id",
    "is_attention_check",
    "image_id",
    "method",
    "stimulus_ids",
    "answer",
    "rt_ms",
    "shown_at",
    "answered_at",
    "weights_sha256",
    "layer",
    "code_version",
    "participant_status",
]


@pytest.fixture
def admin(app):
    from study.models import AdminUser

    with transaction(app.extensions["camstudy.sessions"]) as s:
        s.add(AdminUser(name="ada", password_hash=generate_password_hash(PASSWORD)))
    return "ada"


def login_token(client) -> str:
    html = client.get("/admin/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, name="ada", password=PASSWORD, **kw):
    return client.post(
        "/admin/login", data={"csrf_token": login_token(client), "username": name, "password": password}, **kw
    )


def participate(app, slug, params=None, n_answers=None, choose=None, finish=True, questionnaire=None):
    """A new browser that enrolls, answers ``n_answers`` trials (all by default) and finishes."""
    client = app.test_client()
    enroll(client, slug, params)
    h = headers(client, app, slug)
    plan = client.get(f"/api/s/{slug}/plan", headers=h).get_json()
    trials = plan["trials"] if n_answers is None else plan["trials"][:n_answers]
    for i, t in enumerate(trials):
        if choose is not None:
            value = choose(i, t)
        else:
            value = t["options"][i % 2] if plan["task"] == "class_discrimination" else (i % 5) - 2
        body = {"position": t["position"], "answer": value, "rt_ms": 500 + i, "shown_at": "2024-05-01T12:00:00Z"}
        assert client.post(f"/api/s/{slug}/answers", headers=h, json=body).status_code == 200
    if finish and n_answers is None:
        r = client.post(f"/api/s/{slug}/complete", headers=h, json={})
        assert r.status_code == 200
        send_questionnaire(client, r.get_json()["next_url"], questionnaire or {"comments": "<b>bold</b> claim"})
    return client


def send_questionnaire(client, page: str, answers: dict) -> None:
    """Send the questionnaire form that ``page`` (the page after the last trial) shows."""
    html = client.get(page).get_data(as_text=True)
    form = re.search(
        r'<form method="post"(?: action="([^"]*questionnaire)")?[^>]*>(?:(?!</form>).)*'
        r'name="csrf_token" value="([^"]+)"',
        html,
        re.S,
    )
    assert form, "no questionnaire form after the last trial"
    assert client.post(form.group(1) or page, data={"csrf_token": form.group(2), **answers}).status_code == 302


def cd_slug(app):
    return app.config["STUDIES"]["class_discrimination"]


def trust_slug(app):
    return app.config["STUDIES"]["trust"]


# --- access control --------------------------------------------------------------------------


def test_routes_refuse_without_login(app, client, admin):
    slug = cd_slug(app)
    for path in ("/admin/", f"/admin/s/{slug}"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login")
    for fmt in ("csv", "parquet"):
        r = client.get(f"/admin/s/{slug}/export.{fmt}")
        assert r.status_code == 401 and r.get_json() == {"error": "admin login required"}
    page = client.get("/admin/login")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "<script" not in page.get_data(as_text=True)  # CSP: no inline scripts


def test_login_then_logout(app, client, admin):
    with client.session_transaction("/admin/") as sess:
        sess["stale"] = "from before the login"
    r = login(client)
    assert r.status_code == 302 and r.headers["Location"] == "/admin/"
    with client.session_transaction("/admin/") as sess:
        assert "stale" not in sess and isinstance(sess["admin_session"], str)  # the session was rotated
    page = client.get("/admin/")
    assert page.status_code == 200 and "cd" in page.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    copied = client.get_cookie("camstudy_admin", path="/admin").value  # what a thief copies before logout
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302
    thief = app.test_client()
    thief.set_cookie("camstudy_admin", copied, path="/admin")
    assert thief.get("/admin/").status_code == 302  # the session ended on the server, not just in the browser
    assert thief.get(f"/admin/s/{cd_slug(app)}/export.csv").status_code == 401


def test_login_redirects_only_inside_admin(app, client, admin):
    token = login_token(client)
    r = client.post(
        "/admin/login",
        data={"csrf_token": token, "username": "ada", "password": PASSWORD, "next": "https://evil.example/admin/"},
    )
    assert r.headers["Location"] == "/admin/"
    other = app.test_client()
    assert other.get(f"/admin/s/{cd_slug(app)}").headers["Location"] == f"/admin/login?next=/admin/s/{cd_slug(app)}"
    r = other.post(
        "/admin/login",
        data={
            "csrf_token": login_token(other),
            "username": "ada",
            "password": PASSWORD,
            "next": f"/admin/s/{cd_slug(app)}",
        },
    )
    assert r.headers["Location"] == f"/admin/s/{cd_slug(app)}"


def test_csrf_is_required_on_login_and_logout(app, client, admin):
    login_token(client)
    assert client.post("/admin/login", data={"username": "ada", "password": PASSWORD}).status_code == 400
    r = client.post("/admin/login", data={"csrf_token": "forged", "username": "ada", "password": PASSWORD})
    assert r.status_code == 400
    fresh = app.test_client()  # a token without its session cookie is no token
    assert (
        fresh.post(
            "/admin/login", data={"csrf_token": login_token(client), "username": "ada", "password": PASSWORD}
        ).status_code
        == 400
    )
    assert login(client).status_code == 302
    assert client.post("/admin/logout").status_code == 400
    assert client.post("/admin/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/admin/").status_code == 200  # still logged in


def test_wrong_passwords_are_refused_and_rate_limited(app, client, admin):
    for _ in range(5):
        r = login(client, password="wrong password!")
        assert r.status_code == 401 and "Wrong user name or password" in r.get_data(as_text=True)
    assert login(client, name="nobody", password="x").status_code == 429  # this address is blocked
    r = login(client)  # even the right password, while blocked
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "Too many failed logins" in r.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    # The attacker slowed only their own address: the admin elsewhere is not locked out.
    other = app.test_client()
    assert login(other, password=PASSWORD, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 302


def test_guessing_from_many_addresses_cannot_lock_out_a_known_browser(app, admin):
    app.config["ADMIN_USER_MAX_FAILURES"] = 8
    admins_browser = app.test_client()
    assert login(admins_browser, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 302  # leaves a device cookie
    token = re.search(r'name="csrf_token" value="([^"]+)"', admins_browser.get("/admin/").get_data(as_text=True)).group(
        1
    )
    admins_browser.post("/admin/logout", data={"csrf_token": token})
    for i in range(8):  # a distributed guesser: 8 addresses, one try each
        attacker = app.test_client()
        assert login(attacker, password="guess", environ_base={"REMOTE_ADDR": f"198.51.100.{i}"}).status_code == 401
    fresh = app.test_client()  # the name is now slowed for browsers it never logged in from ...
    assert login(fresh, environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 429
    # ... but the admin's own browser, counted on its own, still logs in.
    assert login(admins_browser, environ_base={"REMOTE_ADDR": "203.0.113.8"}).status_code == 302


def test_limits_and_sessions_are_shared_by_every_worker(app, admin, migrated):
    """Two app instances on one database stand for two gunicorn workers (or two hosts)."""
    from study.app import create_app

    other_worker = create_app({"DATABASE_URL": migrated, "SECRET_KEY": "test-secret", "TESTING": True})
    try:
        a, b = app.test_client(), other_worker.test_client()
        for client in (a, b, a, b, a):
            assert login(client, password="wrong").status_code == 401
        assert login(b).status_code == 429 and login(a).status_code == 429  # 5 failures in all
        ok = app.test_client()
        assert login(ok, environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 302
        cookie = ok.get_cookie("camstudy_admin", path="/admin").value
        twin = other_worker.test_client()
        twin.set_cookie("camstudy_admin", cookie, path="/admin")
        assert twin.get("/admin/").status_code == 200  # the session is valid on the other worker
        token = re.search(r'name="csrf_token" value="([^"]+)"', twin.get("/admin/").get_data(as_text=True)).group(1)
        assert twin.post("/admin/logout", data={"csrf_token": token}).status_code == 302
        assert ok.get("/admin/").status_code == 302  # logged out there: ended here too
    finally:
        other_worker.extensions["camstudy.engine"].dispose()


def test_a_password_change_ends_every_session(app, admin, migrated, monkeypatch, capsys):
    client = app.test_client()
    assert login(client).status_code == 302 and client.get("/admin/").status_code == 200
    monkeypatch.setenv("CAMSTUDY_ADMIN_PASSWORD", "a new long password")
    assert main(["admin", "set-password", "ada", "--db", migrated]) == 0
    assert "sessions have ended" in capsys.readouterr().out
    assert client.get("/admin/").status_code == 302
    assert login(client, password="a new long password").status_code == 302


def test_rate_limit_window_expires(app, client, admin, monkeypatch):
    import study.throttle
    from study.models import utcnow

    start = utcnow()
    now = [start]
    monkeypatch.setattr(study.throttle, "utcnow", lambda: now[0])
    for _ in range(5):
        login(client, password="nope")
    r = login(client)
    assert r.status_code == 429 and r.headers["Retry-After"] == str(15 * 60 + 1)
    now[0] = start + timedelta(seconds=15 * 60 - 1)
    assert login(client).status_code == 429
    now[0] = start + timedelta(seconds=15 * 60 + 1)
    assert login(client).status_code == 302


# --- pages -----------------------------------------------------------------------------------


def _cells(html: str, mode: str, condition: str) -> list[int]:
    row = re.search(rf'<tr data-mode="{mode}" data-condition="{re.escape(condition)}">(.*?)</tr>', html, re.S).group(1)
    return [int(x) for x in re.findall(r"<td>(\d+)</td>", row)]


def _section(html: str, mode: str) -> str:
    return re.search(rf'<section id="mode-{mode}"[^>]*>(.*?)</section>', html, re.S).group(1)


def test_dashboard_shows_progress_per_condition_and_mode(app, client, admin):
    slug = cd_slug(app)
    for _ in range(3):
        participate(app, slug)
    participate(app, slug, n_answers=2)  # still active
    participate(app, slug, {**worker(), **signed(app, slug, "debug")})
    participate(app, trust_slug(app))
    login(client)
    index = client.get("/admin/").get_data(as_text=True)
    assert slug in index and trust_slug(app) in index
    html = client.get(f"/admin/s/{slug}").get_data(as_text=True)
    sessions = app.extensions["camstudy.sessions"]
    with sessions() as s:
        study = s.query(Study).filter_by(slug=slug).one()
        people = s.query(Participant).filter_by(study_id=study.id).all()
        n_answers = {
            m: s.query(Answer).join(Participant).filter(Participant.study_id == study.id, Participant.mode == m).count()
            for m in ("live", "sandbox", "debug")
        }
        df = export_rows(s, study, mode="live")
    for mode in ("live", "sandbox", "debug"):
        sec = _section(html, mode)
        assert f'<strong class="answers-stored">{n_answers[mode]}</strong>' in sec
        for cond in study.settings["conditions"]:
            mine = [p for p in people if p.mode == mode and p.condition == cond]
            expect = [len(mine)] + [sum(p.status == st for p in mine) for st in ("active", "completed", "screened_out")]
            assert _cells(html, mode, cond) == expect
    assert _cells(html, "live", study.settings["conditions"][0])[0] >= 1
    assert sum(_cells(html, "debug", c)[0] for c in study.settings["conditions"]) == 1
    # Live accuracy per method: share correct of the non-check answers, with n.
    live = _section(html, "live")
    trials = df[~df["is_attention_check"]]
    for method, g in trials.groupby("method"):
        row = re.search(rf'<tr data-method="{method}">(.*?)</tr>', live, re.S).group(1)
        assert f"<td>{len(g)}</td>" in row
        assert f"{100 * g['correct'].mean():.1f}%" in row
    checks = df[df["is_attention_check"]]
    assert f"{int(checks['correct'].sum())} of {len(checks)}" in live
    assert "Raters per item (target 3)" in html


def test_trust_page_shows_mean_score_for_the_stronger_model(app, client, admin):
    slug = trust_slug(app)
    participate(app, slug)
    participate(app, slug, choose=lambda i, t: 2)
    login(client)
    html = client.get(f"/admin/s/{slug}").get_data(as_text=True)
    with app.extensions["camstudy.sessions"]() as s:
        df = export_rows(s, slug, mode="live")
    trials = df[~df["is_attention_check"]]
    live = _section(html, "live")
    for method, g in trials.groupby("method"):
        row = re.search(rf'<tr data-method="{method}">(.*?)</tr>', live, re.S).group(1)
        assert f"<td>{g['score_stronger'].count()}</td>" in row
        assert f"{g['score_stronger'].mean():.2f}" in row


def test_worker_ids_and_free_text_are_escaped(app, client, admin):
    slug = cd_slug(app)
    participate(app, slug, {"PROLIFIC_PID": XSS, "STUDY_ID": "st", "SESSION_ID": "se"})
    login(client)
    pages = [
        client.get(p).get_data(as_text=True) for p in ("/admin/", f"/admin/s/{slug}", f"/admin/s/{trust_slug(app)}")
    ]
    for html in pages:
        assert XSS not in html and "<b>bold</b>" not in html
        assert re.findall(r"<script[^>]*>", html) == [OUR_SCRIPT]  # only the admin pages' own file
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]
    assert "&lt;b&gt;bold&lt;/b&gt; claim" in pages[1]
    download = client.get(f"/admin/s/{slug}/export.csv").get_data(as_text=True)
    assert "alert(1)" not in download  # the download is pseudonymous


# --- export ----------------------------------------------------------------------------------


def _stored(app, slug):
    with app.extensions["camstudy.sessions"]() as s:
        return s.query(Answer).join(Participant).join(Study).filter(Study.slug == slug).all()


def test_export_csv_has_one_row_per_answer(app, client, admin):
    slug = cd_slug(app)
    pid = "W-raw-1"
    participate(app, slug, {"PROLIFIC_PID": pid, "STUDY_ID": "st", "SESSION_ID": "se"})
    participate(app, slug, n_answers=3)
    participate(app, slug, {**worker(), **signed(app, slug, "debug")})
    login(client)
    r = client.get(f"/admin/s/{slug}/export.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert f'filename="{slug}-live.csv"' in r.headers["Content-Disposition"]
    df = pd.read_csv(io.BytesIO(r.data), dtype={"participant": str})
    stored = _stored(app, slug)
    with app.extensions["camstudy.sessions"]() as s:
        live = {a.id for a in s.query(Answer).join(Participant).filter(Participant.mode == "live")}
    assert len(df) == len([a for a in stored if a.id in live]) == 5 + 3
    assert (
        list(df.columns)
        == export_columns("class_discrimination")
        == columns("class_discrimination") + PARTICIPANT_COLUMNS
    )
    assert set(DOCUMENTED + ["model", "options", "correct_answer", "correct"]) <= set(df.columns)
    assert "worker_id" not in df.columns and pid not in r.get_data(as_text=True)
    assert df["participant"].str.fullmatch(r"[0-9a-f]{16}").all() and df["participant"].nunique() == 2
    assert (df["mode"] == "live").all() and (df["study_kind"] == "class_discrimination").all()
    assert df["answered_at"].str.endswith("+00:00").all() and df["shown_at"].str.endswith("+00:00").all()
    assert (df["shown_at"] == "2024-05-01T12:00:00+00:00").all()
    assert (df["correct"] == (df["answer"] == df["correct_answer"])).all()
    for _, row in df.iterrows():
        assert row["answer"] in row["options"].split(";") and len(row["options"].split(";")) == 2
        assert row["stimulus_ids"] and ";" not in row["stimulus_ids"]
        if row["is_attention_check"]:
            assert row["model"] == "none" and row["method"] == "photo"
        else:
            assert row["model_role"] in ("stronger", "weaker") and row["model"] != "none"
            assert isinstance(row["weights_sha256"], str) and len(row["weights_sha256"]) == 64
            assert isinstance(row["layer"], str) and row["layer"]
    status = df.groupby("participant").agg(n=("position", "size"), status=("participant_status", "first"))
    assert status.set_index("n")["status"].to_dict() in (
        {5: "completed", 3: "active"},
        {5: "screened_out", 3: "active"},
    )
    # Every mode, and the raw ids only when asked for.
    with app.extensions["camstudy.sessions"]() as s:
        everything = export_rows(s, slug, mode=None)
        raw = export_rows(s, slug, mode="live", raw_ids=True)
        debug = export_rows(s, slug, mode="debug")
    assert len(everything) == len(stored) and set(everything["mode"]) == {"live", "debug"}
    assert list(raw.columns) == export_columns("class_discrimination", raw_ids=True)
    assert raw.columns[4] == "worker_id" and pid in set(raw["worker_id"])
    assert (raw["participant"] == df["participant"]).all()
    assert len(debug) == 5 and (debug["mode"] == "debug").all()
    bogus = client.get(f"/admin/s/{slug}/export.csv?mode=bogus")
    assert bogus.status_code == 400 and bogus.mimetype == "text/html"
    assert client.get(f"/admin/s/{slug}/export.csv?raw_ids=1").get_data(as_text=True).count(pid) == 0
    assert client.get("/admin/s/nope/export.csv").status_code == 404


def test_export_trust_scores_follow_the_side(app, client, admin):
    slug = trust_slug(app)
    participate(app, slug, {"workerId": "W1", "assignmentId": "A1", "hitId": "H1"})
    participate(app, slug, {"workerId": "W2", "assignmentId": "A2", "hitId": "H2"}, choose=lambda i, t: 2 - i % 3)
    with app.extensions["camstudy.sessions"]() as s:
        df = export_rows(s, slug)
        roles = {st.stimulus_id: st.model_role for st in s.query(Stimulus)}
    assert len(df) == len(_stored(app, slug)) == 12
    assert list(df.columns) == export_columns("trust")
    assert set(DOCUMENTED + ["model_left", "model_right", "score_stronger"]) <= set(df.columns)
    assert "model" not in df.columns and "options" not in df.columns
    sides = set()
    for _, row in df.iterrows():
        left, right = row["model_left"].split(":")[0], row["model_right"].split(":")[0]
        assert len(row["stimulus_ids"].split(";")) == 2 and len(row["layer"].split(";")) == 2
        if row["is_attention_check"]:
            assert pd.isna(row["score_stronger"]) and row["correct"] == (row["answer"] == 0)
            continue
        sides.add(left)
        assert {left, right} == {"stronger", "weaker"}
        assert row["score_stronger"] == (row["answer"] if left == "stronger" else -row["answer"])
        if row["method"] != "photo":
            assert [roles[x] for x in row["stimulus_ids"].split(";")] == [left, right]
    assert sides == {"stronger", "weaker"}  # counterbalanced
    assert df["answered_at"].str.endswith("+00:00").all()


def test_parquet_round_trips(app, client, admin):
    slug = trust_slug(app)
    participate(app, slug)
    login(client)
    r = client.get(f"/admin/s/{slug}/export.parquet?mode=all")
    assert r.status_code == 200 and r.data[:4] == b"PAR1"
    got = pd.read_parquet(io.BytesIO(r.data))
    with app.extensions["camstudy.sessions"]() as s:
        want = export_rows(s, slug, mode="all")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert str(got["score_stronger"].dtype) == "Int64" and str(got["correct"].dtype) == "boolean"


def test_export_cli(app, tmp_path, capsys):
    slug = cd_slug(app)
    participate(app, slug, {"PROLIFIC_PID": "cli-worker", "STUDY_ID": "s", "SESSION_ID": "x"})
    url = app.config["DATABASE_URL"]
    out = tmp_path / "out" / "cd.csv"
    assert main(["export", slug, "--format", "csv", "--out", str(out), "--db", url]) == 0
    assert "wrote 5 answer rows" in capsys.readouterr().out
    df = pd.read_csv(out)
    assert len(df) == 5 and "worker_id" not in df.columns
    pq = tmp_path / "cd.parquet"
    assert (
        main(["export", slug, "--format", "parquet", "--out", str(pq), "--raw-ids", "--mode", "all", "--db", url]) == 0
    )
    raw = pd.read_parquet(pq)
    assert set(raw["worker_id"]) == {"cli-worker"} and len(raw) == 5
    assert main(["export", slug, "--out", str(tmp_path / "inferred.parquet"), "--db", url]) == 0
    assert (tmp_path / "inferred.parquet").read_bytes()[:4] == b"PAR1"
    capsys.readouterr()
    assert main(["export", "nope", "--format", "csv", "--out", str(tmp_path / "x.csv"), "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study 'nope'" in err and not (tmp_path / "x.csv").exists()
    assert main(["export", slug, "--out", str(tmp_path / "x.txt"), "--db", url]) == 2
    assert "--format" in capsys.readouterr().err


def test_export_cli_checks_the_schema(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["export", "cd", "--format", "csv", "--out", str(tmp_path / "x.csv"), "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "camstudy db upgrade" in err
