"""The admin pages and the landing page in a real browser (Chromium through Playwright, as
in tests/e2e/test_browser.py): the copy buttons put each participant link on the
clipboard, empty modes are folded shut, and no page breaks its Content-Security-Policy or
raises a script error.

Skips without Playwright and ``/usr/bin/chromium`` unless ``CAMSTUDY_REQUIRE_BROWSER=1``.
``CAMSTUDY_ADMIN_SHOTS=DIR`` saves screenshots of the pages into DIR.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from study.app import create_app
from study.db import transaction
from study.links import participant_links
from study.models import AdminUser, Participant, Study
from tests.e2e.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MISSING,
    REQUIRE,
    Server,
    Watch,
    expect,
    sync_playwright,
)
from tests.study.test_admin import PASSWORD
from tests.study.test_admin_research import Person

SHOTS = os.environ.get("CAMSTUDY_ADMIN_SHOTS")
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.skipif(
        MISSING is not None and not REQUIRE, reason=f"{MISSING}; CAMSTUDY_REQUIRE_BROWSER=1 makes this a failure"
    ),
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def server(migrated, studies):
    app = create_app({"DATABASE_URL": migrated, "SECRET_KEY": "admin-browser-secret"})
    app.config["STUDIES"] = studies
    with transaction(app.extensions["camstudy.sessions"]) as s:
        s.add(AdminUser(name="ada", password_hash=generate_password_hash(PASSWORD)))
    srv = Server(app)
    yield srv
    srv.stop()
    app.extensions["camstudy.engine"].dispose()


@pytest.fixture
def page_of(server):
    if MISSING is not None:
        pytest.fail(f"CAMSTUDY_REQUIRE_BROWSER=1 but the browser is missing: {MISSING}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        ctx = browser.new_context(base_url=server.base, viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(TIMEOUT_MS)
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
        watch = Watch(ctx, server.base)
        yield ctx.new_page(), watch
        ctx.close()
        browser.close()


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def test_copy_buttons_and_folded_modes(server, page_of):
    page, watch = page_of
    app = server.app
    slug = app.config["STUDIES"]["class_discrimination"]
    for minutes in (6, 8, 11):  # three completed, with realistic times on task
        person = Person(app, slug)
        person.answer()
        assert person.complete({"strategy": "looked at the highlighted parts"}) == "completed"
        with transaction(app.extensions["camstudy.sessions"]) as s:
            done = s.get(Participant, person.pid)
            done.created_at = done.completed_at - timedelta(minutes=minutes)
    Person(app, slug).answer(2)  # and one still at it
    page.goto("/admin/s/" + slug)  # to the login form, then back here
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(rf"/admin/s/{slug}$"))
    with app.extensions["camstudy.sessions"]() as s:
        study = s.query(Study).filter_by(slug=slug).one()
        links = participant_links(study, server.base + "/")
    for link in links:
        row = page.locator(f'#links tr[data-mode="{link.mode}"]')
        button = row.get_by_role("button", name="Copy")
        expect(button).to_be_visible()
        button.click()
        expect(row.locator(".copy-status")).to_have_text("Copied")
        assert page.evaluate("() => navigator.clipboard.readText()") == link.url
    # Live has participants and is open; the empty test modes are folded shut.
    assert page.locator("#mode-live details").evaluate("(d) => d.open")
    for mode in ("sandbox", "debug"):
        details = page.locator(f"#mode-{mode} details")
        assert not details.evaluate("(d) => d.open")
        expect(details.locator("summary")).to_contain_text("no participants yet")
        expect(details.locator("table.conditions")).to_be_hidden()
    expect(page.locator("#mode-live p.time-on-task")).to_contain_text(
        "over 3 completed participants: median 8.0 min, interquartile range 7.0–9.5 min"
    )
    expect(page.locator("#mode-live table.exclusions tr[data-rule='remain']")).to_contain_text("of 4")
    shot(page, "admin-study.png")
    page.locator("#mode-debug summary").click()  # unfolds
    assert page.locator("#mode-debug details").evaluate("(d) => d.open")
    page.goto("/admin/")
    expect(page.locator(f'tbody[data-study="{slug}"] tr.empty-modes')).to_have_text(
        "sandbox, debug: no participants yet"
    )
    shot(page, "admin-index.png")
    watch.allowed.append("status of 400 (BAD REQUEST)")  # the console notes the error page's status
    r = page.goto(f"/admin/s/{slug}/export.csv?mode=bogus")
    assert r.status == 400 and "text/html" in r.headers["content-type"]
    expect(page.locator("h1")).to_have_text("No such export")
    expect(page.get_by_role("link", name="Back to the study")).to_have_attribute("href", f"/admin/s/{slug}")
    shot(page, "admin-bad-export.png")
    watch.check()


def test_landing_page(server, page_of):
    page, watch = page_of
    r = page.goto("/")
    assert r.status == 200
    expect(page.locator("h1")).to_have_text("camstudy")
    shot(page, "landing.png")
    page.get_by_role("link", name=re.compile("researchers")).click()
    page.wait_for_url(re.compile(r"/admin/login"))
    watch.allowed.append("status of 404 (NOT FOUND)")
    r = page.goto("/no/such/page")
    assert r.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    shot(page, "not-found.png")
    watch.check()
