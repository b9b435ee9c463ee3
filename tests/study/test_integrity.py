"""Study integrity against a hostile crowd: each probe of the review is a test here.

One paid participation per person (worker ids in another spelling, test modes from a
plain query parameter, links without the platform's ids), the server behind a proxy
(Secure cookies, HSTS, allowed hosts, no Host-built redirects), caps on a participant's
events, enrollment limits that a database outage does not use up, and CSV exports that a
spreadsheet cannot run.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pandas as pd
import pytest
from sqlalchemy.exc import OperationalError

from analysis.load import load_export
from camstudy.cli import main
from study.api import MAX_EVENTS
from study.models import Event, Participant
from study.recruitment import worker_key
from tests.study.test_api import csrf, enroll, headers, signed, worker


def _consent(app, slug: str, params: dict, remote: str = "127.0.0.1"):
    """A new browser opens the link with ``params`` and agrees: the response."""
    c = app.test_client()
    page = c.get(f"/s/{slug}/?{urlencode(params)}")
    if page.status_code != 200 or 'name="agree"' not in page.get_data(as_text=True):
        return page  # refused, or no consent form (a finished worker gets their code again)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return c.post(
        f"/s/{slug}/consent", data={"csrf_token": token, "agree": "yes", **params}, environ_base={"REMOTE_ADDR": remote}
    )


def _finish(app, slug: str, params: dict, fail_checks: bool = False) -> str:
    """A worker takes the whole study (failing its attention checks on request); returns
    the participant's final status."""
    c = app.test_client()
    enroll(c, slug, params)
    h = headers(c, app, slug)
    plan = c.get(f"/api/s/{slug}/plan", headers=h).get_json()
    with app.extensions["camstudy.sessions"]() as s:
        p = s.query(Participant).order_by(Participant.id.desc()).first()
        truth = {e.position: e.item for e in p.plan}
    for t in plan["trials"]:
        item = truth[t["position"]]
        value = t["options"][0] if "options" in t else 0
        if fail_checks and item.is_attention_check:
            value = next(o for o in t["options"] if o != item.correct_answer) if "options" in t else 2
        assert (
            c.post(
                f"/api/s/{slug}/answers", headers=h, json={"position": t["position"], "answer": value, "rt_ms": 800}
            ).status_code
            == 200
        )
    assert c.post(f"/api/s/{slug}/complete", headers=h, json={}).status_code == 200
    c.post(f"/s/{slug}/questionnaire", data={"csrf_token": csrf(c, f"/s/{slug}/debrief")})
    with app.extensions["camstudy.sessions"]() as s:
        return s.get(Participant, p.id).status


# --- one participation per person ------------------------------------------------------------


@pytest.mark.parametrize(
    "platform, raw, variant",
    [
        ("prolific", "5f1a2b3c4d5e6f7a8b9c0d1e", "5F1A2B3C4D5E6F7A8B9C0D1E"),
        ("prolific", "5f1a2b3c4d5e6f7a8b9c0d1e", "  5f1a2b3c4d5e6f7a8b9c0d1e "),
        ("prolific", "5f1a2b3c4d5e6f7a8b9c0d1e", "\u200b5f1a2b3c4d5e6f7a8b9c0d1e\u200d"),
        ("prolific", "5f1a2b3c4d5e6f7a8b9c0d1e", "\uff15f1a2b3c4d5e6f7a8b9c0d1e"),  # a full-width digit
        ("mturk", "A1B2C3D4E5F6G7", "a1b2c3d4e5f6g7"),
        ("mturk", "A1B2C3D4E5F6G7", "A1B2C3D4E5F6G7\ufeff"),
    ],
)
def test_worker_id_spellings_are_one_person(platform, raw, variant):
    assert worker_key(platform, raw) == worker_key(platform, variant)
    assert worker_key(platform, "\u200b \t") is None  # nothing visible: no id


def test_another_spelling_of_the_id_cannot_take_the_study_again(app):
    slug = app.config["STUDIES"]["class_discrimination"]
    _finish(app, slug, {"PROLIFIC_PID": "5f1a2b3c4d5e6f7a8b9c0d1e"})
    for variant in ("5F1A2B3C4D5E6F7A8B9C0D1E", " 5f1a2b3c4d5e6f7a8b9c0d1e ", "\u200b5f1a2b3c4d5e6f7a8b9c0d1e"):
        r = _consent(app, slug, {"PROLIFIC_PID": variant})
        # The same worker: no second participation, but the code of the first again.
        page = r.get_data(as_text=True)
        assert r.status_code == 200 and "You have finished this study" in page, variant
        assert ("DONE123" in page) != ("SCREEN9" in page) and 'name="agree"' not in page
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).count() == 1


def test_a_mode_from_a_plain_query_parameter_is_refused(app):
    slug = app.config["STUDIES"]["class_discrimination"]
    for mode in ("sandbox", "debug", "live2"):
        r = _consent(app, slug, {**worker(), "mode": mode})
        assert r.status_code == 400 and "admin page" in r.get_data(as_text=True), mode
        r = _consent(app, slug, {**worker(), "mode": mode, "mode_key": "0" * 32})
        assert r.status_code == 400, mode
    # A key for another study or another mode does not carry over.
    other = app.config["STUDIES"]["trust"]
    assert _consent(app, slug, {**worker(), **signed(app, other, "debug")}).status_code == 400
    wrong = {**signed(app, slug, "sandbox"), "mode": "debug"}
    assert _consent(app, slug, {**worker(), **wrong}).status_code == 400
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).count() == 0
    assert _consent(app, slug, {**worker(), **signed(app, slug, "debug")}).status_code == 302  # the signed link works


def test_a_screened_out_worker_cannot_start_again_in_any_mode(app):
    slug = app.config["STUDIES"]["class_discrimination"]
    who = {"PROLIFIC_PID": "careless-worker"}
    assert _finish(app, slug, who, fail_checks=True) == "screened_out"
    for params in (
        {},
        signed(app, slug, "sandbox"),
        signed(app, slug, "debug"),
        {"mode": "debug"},
        {"PROLIFIC_PID": "CARELESS-WORKER"},
    ):
        r = _consent(app, slug, {**who, **params})
        page = r.get_data(as_text=True)
        if r.status_code == 200:  # the live link again: the screened-out code, never the completion code
            assert "SCREEN9" in page and "DONE123" not in page and params in ({}, {"PROLIFIC_PID": "CARELESS-WORKER"})
        else:
            assert r.status_code in (400, 409), params
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).count() == 1


def test_a_platform_study_refuses_links_without_its_ids(app, tmp_path, stimuli_dir):
    cd, trust = app.config["STUDIES"]["class_discrimination"], app.config["STUDIES"]["trust"]
    assert _consent(app, cd, {}).status_code == 400  # Prolific without PROLIFIC_PID
    assert _consent(app, cd, {"workerId": "W1", "assignmentId": "A1"}).status_code == 400  # another platform's ids
    assert _consent(app, trust, {"PROLIFIC_PID": "p1"}).status_code == 400  # MTurk without workerId
    assert _consent(app, cd, {"PROLIFIC_PID": "\u200b"}).status_code == 400  # an id of nothing visible
    assert _consent(app, cd, signed(app, cd, "debug")).status_code == 302  # the researcher's test link may go without
    # A study that allows plain links takes them.
    from study.db import transaction
    from study.settings import load_study_config
    from study.setup import create_study
    from tests.study.conftest import CD_TOML, write_config

    body = CD_TOML.replace('slug = "cd"', 'slug = "cd-plain"').replace(
        'platform = "prolific"', 'platform = "prolific"\nallow_plain_links = true'
    )
    with transaction(app.extensions["camstudy.sessions"]) as s:
        create_study(s, load_study_config(write_config(tmp_path, "plain", body)), stimuli_dir)
    assert _consent(app, "cd-plain", {}).status_code == 302


# --- the server behind a proxy ---------------------------------------------------------------


def _cookie_attrs(resp, name: str) -> str:
    return next(v for v in resp.headers.getlist("Set-Cookie") if v.startswith(f"{name}="))


def test_behind_an_https_proxy_cookies_are_secure_and_hsts_is_sent(app):
    slug = app.config["STUDIES"]["trust"]
    proxied = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}
    # Without configured hops the forwarded headers are not trusted (anyone can send them).
    r = app.test_client().get(f"/s/{slug}/?workerId=W9&assignmentId=A9", environ_base=proxied)
    assert "Secure" not in _cookie_attrs(r, "camstudy") and "Strict-Transport-Security" not in r.headers
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    r = app.test_client().get(f"/s/{slug}/?workerId=W9&assignmentId=A9", environ_base=proxied)
    participant = _cookie_attrs(r, "camstudy")
    assert "Secure" in participant and "SameSite=None" in participant  # sent inside MTurk's frame
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    admin = app.test_client().get("/admin/login", environ_base=proxied)
    cookie = _cookie_attrs(admin, "camstudy_admin")
    assert "Secure" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie


def test_an_mturk_study_may_be_framed_by_mturk_only_and_admin_never(app):
    trust, cd = app.config["STUDIES"]["trust"], app.config["STUDIES"]["class_discrimination"]
    c = app.test_client()
    preview = c.get(f"/s/{trust}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H")
    csp = preview.headers["Content-Security-Policy"]
    assert "frame-ancestors https://www.mturk.com https://workersandbox.mturk.com" in csp
    assert "X-Frame-Options" not in preview.headers
    for r in (c.get(f"/s/{cd}/?PROLIFIC_PID=x"), c.get("/admin/login")):
        assert (
            "frame-ancestors 'none'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"
        )


def test_unknown_hosts_are_refused_and_nothing_redirects_by_the_host_header(app):
    slug = app.config["STUDIES"]["class_discrimination"]
    c = app.test_client()
    evil = c.get(f"/s/{slug}/?PROLIFIC_PID=x", headers={"Host": "evil.example"})
    assert evil.status_code == 400 and "evil.example" not in (evil.headers.get("Location") or "")
    # Without the trailing slash: served, not redirected to an address built from Host.
    r = c.get(f"/s/{slug}?PROLIFIC_PID=x")
    assert r.status_code == 200 and "Location" not in r.headers
    app.config["TRUSTED_HOSTS"] = ["study.example.org"]
    assert c.get(f"/s/{slug}/?PROLIFIC_PID=x", headers={"Host": "study.example.org"}).status_code == 200
    assert c.get(f"/s/{slug}/?PROLIFIC_PID=x", headers={"Host": "localhost"}).status_code == 400


# --- events and limits -----------------------------------------------------------------------


def test_events_are_capped_and_end_with_the_participation(app):
    slug = app.config["STUDIES"]["class_discrimination"]
    c = app.test_client()
    enroll(c, slug)
    h = headers(c, app, slug)
    codes = [
        c.post(f"/api/s/{slug}/events", headers=h, json={"kind": "blur"}).status_code for _ in range(MAX_EVENTS + 20)
    ]
    assert codes[:MAX_EVENTS] == [204] * MAX_EVENTS and set(codes[MAX_EVENTS:]) == {429}
    big = {"kind": "resize", "detail": {"x": "y" * 1900}}
    other = app.test_client()
    enroll(other, slug)
    oh = headers(other, app, slug)
    sizes = [other.post(f"/api/s/{slug}/events", headers=oh, json=big).status_code for _ in range(150)]
    assert 204 in sizes and sizes[-1] == 429  # the bytes cap (256 KiB of detail) ends it first
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Event).count() == MAX_EVENTS + sizes.count(204)
    # After completion: no more events.
    done = app.test_client()
    enroll(done, slug)
    dh = headers(done, app, slug)
    for t in done.get(f"/api/s/{slug}/plan", headers=dh).get_json()["trials"]:
        done.post(
            f"/api/s/{slug}/answers",
            headers=dh,
            json={"position": t["position"], "answer": t["options"][0], "rt_ms": 700},
        )
    done.post(f"/api/s/{slug}/complete", headers=dh, json={})
    done.post(f"/s/{slug}/questionnaire", data={"csrf_token": csrf(done, f"/s/{slug}/debrief")})
    assert done.post(f"/api/s/{slug}/events", headers=dh, json={"kind": "blur"}).status_code == 409


def test_failed_enrollments_do_not_count_against_the_address(app, monkeypatch):
    import study.participant

    slug = app.config["STUDIES"]["class_discrimination"]
    app.config["ENROLL_RATE_PER_MINUTE"] = 3
    real = study.participant.enroll

    def outage(*_a, **_k):
        raise OperationalError("SELECT 1", {}, Exception("the database is restarting"))

    monkeypatch.setattr(study.participant, "enroll", outage)
    for _ in range(5):  # an outage: every enrollment answers 503
        assert _consent(app, slug, worker(), remote="10.7.7.7").status_code == 503
    monkeypatch.setattr(study.participant, "enroll", real)
    codes = [_consent(app, slug, worker(), remote="10.7.7.7").status_code for _ in range(4)]
    assert codes == [302, 302, 302, 429]  # the limit counts only the enrollments that happened


def test_enrollment_limits_are_shared_by_every_worker(app, migrated):
    from study.app import create_app

    slug = app.config["STUDIES"]["class_discrimination"]
    other = create_app({"DATABASE_URL": migrated, "SECRET_KEY": "test-secret", "TESTING": True})
    try:
        for a in (app, other):
            a.config["ENROLL_RATE_PER_MINUTE"] = 2
        codes = [_consent(a, slug, worker(), remote="10.8.8.8").status_code for a in (app, other, app, other)]
        assert codes == [302, 302, 429, 429]
    finally:
        other.extensions["camstudy.engine"].dispose()


# --- exports ---------------------------------------------------------------------------------

HOSTILE_IDS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "'quoted"]


def test_csv_exports_neutralise_formulas_and_round_trip(app, migrated, tmp_path):
    slug = app.config["STUDIES"]["class_discrimination"]
    for wid in HOSTILE_IDS:
        _finish(app, slug, {"PROLIFIC_PID": wid})
    out = tmp_path / "raw.csv"
    assert main(["export", slug, "--out", str(out), "--raw-ids", "--db", migrated]) == 0
    raw = pd.read_csv(out, dtype=str, keep_default_na=False)
    for cell in raw["worker_id"]:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert sorted(raw["worker_id"].unique()) == sorted("'" + w for w in HOSTILE_IDS)
    # The analysis reads the stored values back exactly.
    back = load_export(out)
    assert sorted(back["worker_id"].unique()) == sorted(HOSTILE_IDS)


def test_one_person_enrolling_twice_at_once_gets_one_participation(app, migrated):
    """The prior participation is read before the study's lock; the unique (study, worker
    key, attempt) key settles two simultaneous enrollments of one person, whatever spelling
    and mode each uses: one enrolls, the other resumes it or is refused."""
    import threading

    from study.app import create_app

    slug = app.config["STUDIES"]["class_discrimination"]
    other = create_app({"DATABASE_URL": migrated, "SECRET_KEY": "test-secret", "TESTING": True})
    try:
        for a in (app, other):
            a.config["ENROLL_RATE_PER_MINUTE"] = 10**6
        debug = signed(app, slug, "debug")
        for n in range(8):
            spellings = [({"PROLIFIC_PID": f"twin-{n}"}, app), ({"PROLIFIC_PID": f" TWIN-{n}\u200b", **debug}, other)]
            gate = threading.Barrier(2)
            codes: list[int] = []

            def go(params, a, gate=gate, codes=codes):
                c = a.test_client()
                page = c.get(f"/s/{slug}/?{urlencode(params)}")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
                gate.wait()
                codes.append(
                    c.post(f"/s/{slug}/consent", data={"csrf_token": token, "agree": "yes", **params}).status_code
                )

            threads = [threading.Thread(target=go, args=s) for s in spellings]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(codes) in ([302, 409], [302, 302]), codes  # never a 500
            with app.extensions["camstudy.sessions"]() as s:
                assert s.query(Participant).filter_by(worker_key=f"twin-{n}").count() == 1
    finally:
        other.extensions["camstudy.engine"].dispose()


def test_the_admin_page_gives_links_that_work(app):
    from study.links import participant_links
    from study.models import Study

    with app.extensions["camstudy.sessions"]() as s:
        study = s.query(Study).filter_by(slug=app.config["STUDIES"]["class_discrimination"]).one()
        links = {link.mode: link.url for link in participant_links(study, "http://localhost")}
    assert "{{%PROLIFIC_PID%}}" in links["live"] and "mode=" not in links["live"]
    assert "PROLIFIC_PID" not in links["debug"]  # opened by hand: no placeholder becomes a worker id
    c = app.test_client()
    page = c.get(links["debug"].removeprefix("http://localhost"))
    assert page.status_code == 200 and "I agree, start" in page.get_data(as_text=True)
    filled = links["sandbox"].replace("{{%PROLIFIC_PID%}}", "pilot-1").removeprefix("http://localhost")
    assert c.get(filled).status_code == 200
