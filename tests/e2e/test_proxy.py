"""The deployment of docs/deployment.md, for real, on loopback: Debian's nginx with a
self-signed certificate from openssl, in front of two ``camstudy serve`` hosts that share
one PostgreSQL database (and nothing else: each has its own instance folder and no
``CAMSTUDY_SECRET_KEY``, so the signing key, the sessions and the limits come from the
database).

Through that proxy:

- a framed MTurk HIT works: Chromium opens a stand-in for MTurk's page (another origin, so
  the study is a cross-site frame) and a worker goes from consent to the HIT's submit;
- cookies are ``Secure`` (and the participant's ``SameSite=None``, or the frame could not
  keep its session), HSTS is sent, and the admin pages refuse to be framed;
- SIGKILL of one host in the middle of a run loses nothing: the simulated participants
  finish through the other host, and every acknowledged answer is stored exactly once;
- Locust (headless, bounded in users and time) drives the participant flow
  (``bench/locustfile.py``) with no failed request.

Needs nginx, openssl and PostgreSQL; skips without them unless CI sets
``CAMSTUDY_REQUIRE_PROXY=1`` (and ``CAMSTUDY_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from bots import PROFILES, simulate
from study.db import make_engine, session_factory
from study.models import Answer, Participant, Study
from study.recruitment import mode_link_params
from tests.e2e.deployment import MISSING
from tests.e2e.deployment import deployment as deploy
from tests.e2e.servers import wait_until
from tests.e2e.test_faults import assert_exactly_once
from tests.study import conftest as study_fixtures

# The study-app fixtures (stimulus build, database, both studies), shared with tests/study.
stimuli_dir = study_fixtures.stimuli_dir
db_url = study_fixtures.db_url
migrated = study_fixtures.migrated
studies = study_fixtures.studies

ROOT = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("CAMSTUDY_REQUIRE_PROXY") == "1"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.skipif(
        bool(MISSING) and not REQUIRE,
        reason=f"needs {', '.join(MISSING)}; CAMSTUDY_REQUIRE_PROXY=1 makes this a failure",
    ),
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


def shot(page, name: str) -> None:
    """A screenshot into CAMSTUDY_E2E_SHOTS, when it names a folder (to look at by eye)."""
    if os.environ.get("CAMSTUDY_E2E_SHOTS"):
        page.screenshot(path=str(Path(os.environ["CAMSTUDY_E2E_SHOTS"]) / name))


@pytest.fixture
def deployment(migrated, studies, tmp_path):
    with deploy(migrated, tmp_path) as d:
        yield d


def signed_query(db: str, slug: str, mode: str) -> dict[str, str]:
    engine = make_engine(db)
    try:
        with session_factory(engine)() as s:
            secret = s.scalar(select(Study.secret).where(Study.slug == slug))
    finally:
        engine.dispose()
    return mode_link_params(secret, slug, mode)


def test_through_the_proxy_cookies_are_secure_and_headers_hold(deployment, studies):
    ctx = deployment.context()
    slug = studies["trust"]
    with urllib.request.urlopen(
        f"{deployment.base}/s/{slug}/?workerId=W1&assignmentId=A1&hitId=H1", context=ctx, timeout=10
    ) as r:
        cookie = r.headers["Set-Cookie"]
        assert "Secure" in cookie and "SameSite=None" in cookie and "Partitioned" in cookie and "HttpOnly" in cookie
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        assert (
            f"frame-ancestors https://www.mturk.com https://workersandbox.mturk.com {deployment.frame_origin}"
            in r.headers["Content-Security-Policy"]
        )
    with urllib.request.urlopen(f"{deployment.base}/admin/login", context=ctx, timeout=10) as r:
        cookie = r.headers["Set-Cookie"]
        assert "Secure" in cookie and "Path=/admin" in cookie
        assert (
            r.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        )
    # A Host the deployment does not serve is refused, not echoed.
    req = urllib.request.Request(f"{deployment.base}/s/{slug}", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    assert e.value.code == 400 and "evil" not in (e.value.headers.get("Location") or "")


@pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CAMSTUDY_REQUIRE_BROWSER") != "1",
    reason="needs Chromium at /usr/bin/chromium",
)
def test_a_framed_mturk_hit_works_from_consent_to_submit(deployment, studies):
    from playwright.sync_api import expect, sync_playwright

    slug = studies["trust"]
    params = {
        "assignmentId": "framed-assignment",
        "workerId": "FRAMEDWORKER1",
        "hitId": "framed-hit",
        "turkSubmitTo": deployment.frame_origin,
    }
    study_url = f"{deployment.base}/s/{slug}/?{urlencode(params)}"
    preview_url = f"{deployment.base}/s/{slug}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=framed-hit"
    www = deployment.folder / "nginx" / "www"
    (www / "hit.html").write_text(
        f'<!doctype html><title>HIT</title><iframe id="hit" src="{study_url}" width="1200" height="900"></iframe>'
    )
    (www / "preview.html").write_text(
        f'<!doctype html><title>HIT</title><iframe id="hit" src="{preview_url}" width="1200" height="900"></iframe>'
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 1000})
            context.set_default_timeout(20_000)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{deployment.frame_origin}/preview.html")
            expect(page.frame_locator("#hit").locator("text=Preview")).to_be_visible()
            page.goto(f"{deployment.frame_origin}/hit.html")
            frame = page.frame_locator("#hit")
            expect(frame.get_by_role("button", name="I agree, start")).to_be_visible()
            shot(page, "proxy-framed-consent.png")
            frame.get_by_role("button", name="I agree, start").click()
            expect(frame.locator("#instructions")).to_be_visible()
            frame.locator("#start").click()
            expect(frame.locator("#progress")).to_have_text(re.compile("Practice"))
            frame.locator("#answers button").nth(2).click()  # a rating: the practice has no wrong one
            frame.get_by_role("button", name="Start the real trials").click()
            expect(frame.locator("#feedback")).to_have_text("")
            n = 0
            while True:
                progress = frame.locator("#progress")
                expect(progress).to_have_text(re.compile(r"Trial \d+ of \d+"))
                k, total = map(int, re.findall(r"\d+", progress.inner_text()))
                expect(frame.locator("#answers button:enabled")).to_have_count(5)
                expect(frame.locator("#images img")).to_have_count(2)
                if n == 0:
                    shot(page, "proxy-framed-trust-trial.png")
                frame.locator("#answers button").nth(2).click()
                n += 1
                if k == total:
                    break
                expect(progress).not_to_have_text(f"Trial {k} of {total}")
            # The code at once, the questionnaire optional (skipped here), the submit primary.
            expect(frame.locator("#code")).not_to_have_text("")
            expect(frame.get_by_role("button", name="Submit the HIT")).to_be_visible()
            assert "primary" in frame.get_by_role("button", name="Submit the HIT").get_attribute("class")
            frame.get_by_role("button", name="Submit the HIT").click()
            expect(frame.locator("body")).to_contain_text("HIT submitted")
            assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
        finally:
            browser.close()
    engine = make_engine(deployment.db)
    try:
        with session_factory(engine)() as s:
            p = s.scalar(select(Participant).where(Participant.worker_id == "FRAMEDWORKER1"))
            answers = s.scalars(select(Answer.position).where(Answer.participant_id == p.id)).all()
            assert p.status in ("completed", "screened_out") and p.stage == "debrief" and p.mode == "live"
            assert sorted(answers) == list(range(n)) and n == total
    finally:
        engine.dispose()


def test_sigkill_of_one_host_loses_nothing(deployment, studies):
    slug = studies["class_discrimination"]
    out: dict = {}

    def run() -> None:
        out["report"] = simulate(
            deployment.base,
            slug,
            24,
            concurrency=8,
            profile=PROFILES["steady"],
            db_url=deployment.db,
            mode="debug",
            pace_s=0.05,
            give_up_s=60,
            cafile=str(deployment.cafile),
        )

    bots = threading.Thread(target=run)
    bots.start()

    def answers_stored() -> int:
        engine = make_engine(deployment.db)
        try:
            with engine.connect() as c:
                return len(c.execute(select(Answer.id)).all())
        finally:
            engine.dispose()

    wait_until(lambda: answers_stored() >= 20 or not bots.is_alive(), 60, "the first answers through the proxy")
    assert bots.is_alive(), out["report"].summary() if "report" in out else "the bots stopped"
    victim = deployment.backends[0]
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    bots.join(180)
    assert not bots.is_alive(), "the simulated participants did not finish"
    report = out["report"]
    assert set(report.counts()) <= {"completed", "screened_out"}, report.summary()  # nobody failed
    assert_exactly_once(deployment.db, report)


def test_locust_drives_the_participant_flow_through_the_proxy(deployment, studies):
    slug = studies["class_discrimination"]
    stats = deployment.folder / "locust"
    env = {
        **os.environ,
        "CAMSTUDY_LOCUST_STUDY": slug,
        "CAMSTUDY_LOCUST_PLATFORM": "prolific",
        "CAMSTUDY_LOCUST_QUERY": urlencode(signed_query(deployment.db, slug, "debug")),
        "REQUESTS_CA_BUNDLE": str(deployment.cafile),
    }
    locust = Path(sys.executable).with_name("locust")
    run = subprocess.run(
        [
            str(locust),
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "--users",
            "8",
            "--spawn-rate",
            "8",
            "--run-time",
            "12s",
            "--stop-timeout",
            "10",
            "--host",
            deployment.base,
            "--csv",
            str(stats),
            "--only-summary",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = {r["Name"]: r for r in csv.DictReader(open(f"{stats}_stats.csv"))}
    answers = rows["POST /api/s/[slug]/answers"]
    assert int(answers["Request Count"]) > 50 and int(answers["Failure Count"]) == 0, answers
    assert int(rows["Aggregated"]["Failure Count"]) == 0, rows["Aggregated"]
    # Every answer Locust got acknowledged is in the database once.
    engine = make_engine(deployment.db)
    try:
        with engine.connect() as c:
            stored = c.execute(select(Answer.participant_id, Answer.position)).all()
    finally:
        engine.dispose()
    assert len(stored) == len(set(stored)) >= int(answers["Request Count"])
