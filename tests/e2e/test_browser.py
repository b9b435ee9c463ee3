"""The participant's side in a real browser: the real app behind a real HTTP server on
loopback, driven through Chromium with Playwright.

Covers both paper studies from consent to debrief (keyboard and click answers, the
practice trial with its feedback, a reload in the middle), a phone-sized screen, and a lost
connection (answers kept in localStorage, then delivered in order, once). Every test
also checks that the pages raise no script error, break no Content-Security-Policy rule
and contact no host other than the test server.

Needs Chromium at ``/usr/bin/chromium`` (Debian's package); skips without it unless
``CAMSTUDY_REQUIRE_BROWSER=1`` (set by CI), which turns a missing browser into a failure.
``CAMSTUDY_E2E_SHOTS=DIR`` saves screenshots of a trial of each study into DIR.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from study.app import create_app
from study.models import Answer, Participant, PlanEntry
from tests.study import conftest as study_fixtures

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE = os.environ.get("CAMSTUDY_REQUIRE_BROWSER") == "1"
SHOTS = os.environ.get("CAMSTUDY_E2E_SHOTS")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is a test dependency
    sync_playwright = expect = None

MISSING = (
    None
    if sync_playwright is not None and CHROMIUM.exists()
    else f"needs Playwright for Python and Chromium at {CHROMIUM} (apt install chromium)"
)

pytestmark = [
    pytest.mark.skipif(
        MISSING is not None and not REQUIRE, reason=f"{MISSING}; CAMSTUDY_REQUIRE_BROWSER=1 makes this a failure"
    ),
    # The browser tests need one database only: the SQLite file of the study fixtures.
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]

# The study-app fixtures (stimulus build, database, both studies), shared with tests/study.
stimuli_dir = study_fixtures.stimuli_dir
db_url = study_fixtures.db_url
migrated = study_fixtures.migrated
studies = study_fixtures.studies

CD_TRIALS = 5  # 4 trials + 1 attention check
TRUST_TRIALS = 6  # 5 trials + 1 attention check
# The trust scale, left to right: its buttons read 1-5, their accessible names and the values stored.
TRUST_LABELS = [
    "1: Model 1 much more reliable",
    "2: Model 1 somewhat more reliable",
    "3: Equally reliable",
    "4: Model 2 somewhat more reliable",
    "5: Model 2 much more reliable",
]
TRUST_VALUES = [2, 1, 0, -1, -2]
PROLIFIC_HOST = "app.prolific.com"  # the automatic return goes there: answered by the test, never reached
TIMEOUT_MS = 15_000


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    if MISSING is not None:
        pytest.fail(f"CAMSTUDY_REQUIRE_BROWSER=1 but the browser is missing: {MISSING}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Server:
    """The app served by werkzeug on 127.0.0.1 in a background thread."""

    def __init__(self, app) -> None:
        from werkzeug.serving import make_server

        self.app = app
        self.httpd = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="e2e-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.thread.join(10)
        self.httpd.server_close()


@pytest.fixture
def server(migrated, studies):
    assert migrated.startswith("sqlite:")
    app = create_app({"DATABASE_URL": migrated, "SECRET_KEY": "e2e-secret"})
    srv = Server(app)
    # The MTurk tests submit to this server, so it joins the allowed submit hosts.
    app.config["MTURK_SUBMIT_HOSTS"] = (*app.config["MTURK_SUBMIT_HOSTS"], srv.base)
    yield srv
    srv.stop()
    app.extensions["camstudy.engine"].dispose()


class Watch:
    """What a browser context did wrong: script errors, CSP reports, foreign hosts."""

    def __init__(self, context, base: str) -> None:
        self.hosts = {urlsplit(base).netloc, PROLIFIC_HOST}
        self.allowed: list[str] = []  # console texts a test expects, such as a rejected answer
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.host = urlsplit(base).netloc
        context.on("request", self._request)
        context.on("console", self._console)
        context.on("weberror", lambda e: self.errors.append(f"page error: {e.error}"))

    def _request(self, req) -> None:
        if req.url.startswith(("http:", "https:", "ws:", "wss:")) and urlsplit(req.url).netloc not in self.hosts:
            self.foreign.append(req.url)

    def _console(self, msg) -> None:
        # Aborted requests (the lost-connection test) log "Failed to load resource"; every
        # other console error or warning is a bug, Content-Security-Policy reports included.
        expected = ("net::ERR_FAILED", "ERR_INTERNET_DISCONNECTED", *self.allowed)
        if msg.type in ("error", "warning") and not any(e in msg.text for e in expected):
            self.errors.append(f"console {msg.type}: {msg.text} ({msg.location.get('url')})")

    def check(self) -> None:
        assert self.foreign == [], f"contacted hosts other than the test server: {self.foreign}"
        assert self.errors == [], "\n".join(self.errors)


@pytest.fixture
def context_for(browser, server):
    """``context_for(**options)``: a fresh browser context (own cookies and localStorage)."""
    made = []

    def make(**options):
        ctx = browser.new_context(base_url=server.base, **options)
        ctx.set_default_timeout(TIMEOUT_MS)
        # Prolific's completion page, stood in for: the debrief's automatic return lands here.
        ctx.route(
            f"https://{PROLIFIC_HOST}/**",
            lambda route: route.fulfill(
                status=200, content_type="text/html", body="<!doctype html><title>Prolific</title><p>returned</p>"
            ),
        )
        made.append((ctx, Watch(ctx, server.base)))
        return ctx, made[-1][1]

    yield make
    for ctx, _ in made:
        ctx.close()


# ---------------------------------------------------------------- helpers


def participant_url(slug: str, params: dict) -> str:
    return f"/s/{slug}/?{urlencode(params)}"


def consent(page, slug: str, params: dict) -> None:
    resp = page.goto(participant_url(slug, params))
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    expect(page.get_by_role("button", name="I agree, start")).to_be_visible()
    page.get_by_role("button", name="I agree, start").click()
    page.wait_for_url(re.compile(rf"/s/{slug}/task$"))
    expect(page.locator("#instructions")).to_be_visible()
    expect(page.locator("#trial")).to_be_hidden()


def plan_of(page, slug: str) -> dict:
    """The participant's plan, read with the page's own session cookie."""
    r = page.request.get(f"/api/s/{slug}/plan")
    assert r.ok, r.text()
    return r.json()


def queued(page) -> list[dict]:
    """The answers waiting in this page's localStorage queue."""
    raw = page.evaluate(
        "() => Object.keys(localStorage).filter((k) => k.endsWith(':queue')).map((k) => localStorage.getItem(k))"
    )
    return [a for q in raw for a in json.loads(q)]


def wait_trial(page, k: int, n: int, choices: int) -> None:
    """Wait until trial ``k`` (1-based) of ``n`` takes answers."""
    expect(page.locator("#progress")).to_have_text(f"Trial {k} of {n}")
    expect(page.locator("#answers button:enabled")).to_have_count(choices)
    expect(page.locator("#images img")).not_to_have_count(0)
    for img in page.locator("#images img").all():
        assert img.evaluate("(i) => i.complete && i.naturalWidth > 0"), "a stimulus did not load"


def do_practice(page, slug: str, *, right: bool, tap: bool = False) -> None:
    """Answer the practice trial (right or wrong on purpose), check its feedback and go on."""
    practice = plan_of(page, slug)["practice"]
    assert practice is not None, "the study has practice on, but the plan has no practice trial"
    expect(page.locator("#progress")).to_have_text(re.compile("Practice"))
    expect(page.locator("#question")).not_to_have_text("")
    if practice["correct"] is not None:
        want = practice["options"].index(practice["correct"])
        pick = want if right else 1 - want
        expect(page.locator("#answers button:enabled")).to_have_count(2)
        feedback = practice["right"] if right else practice["wrong"]
    else:  # trust: no right answer, the same feedback whatever the rating
        pick = 2 if right else 0
        expect(page.locator("#answers button:enabled")).to_have_count(5)
        feedback = practice["right"]
    button = page.locator("#answers button").nth(pick)
    button.tap() if tap else button.click()
    expect(page.locator("#feedback")).to_have_text(feedback)
    go = page.get_by_role("button", name="Start the real trials")
    go.tap() if tap else go.click()
    expect(page.locator("#feedback")).to_have_text("")


def answer_key(page, key: str) -> None:
    page.keyboard.press(key)


def answer_click(page, index: int, tap: bool = False) -> None:
    button = page.locator("#answers button").nth(index)
    button.tap() if tap else button.click()


def reach_debrief(page, slug: str) -> None:
    """After the last answer: the debrief, with the code at once (no questionnaire first)."""
    page.wait_for_url(re.compile(rf"/s/{slug}/debrief$"))
    expect(page.locator("#code")).not_to_have_text("")


def send_questionnaire(page, slug: str) -> None:
    """The optional questionnaire on the debrief."""
    page.get_by_label("How did you decide?").fill("I looked at the highlighted parts.")
    page.get_by_label("How hard was it?").select_option("easy")
    page.get_by_role("button", name=re.compile("^Send answers")).click()


def stored(server: Server, worker_id: str):
    """(participant, answers by position, number of planned trials) from the database."""
    factory = server.app.extensions["camstudy.sessions"]
    with factory() as s:
        p = s.scalar(select(Participant).where(Participant.worker_id == worker_id))
        assert p is not None, f"no participant {worker_id}"
        total = s.scalar(select(func.count()).select_from(PlanEntry).where(PlanEntry.participant_id == p.id))
        answers = s.scalars(select(Answer).where(Answer.participant_id == p.id).order_by(Answer.position)).all()
        s.expunge_all()
    return p, answers, total


def check_answers(answers, total: int) -> None:
    assert [a.position for a in answers] == list(range(total)), "every position answered exactly once"
    for a in answers:
        assert 0 < a.rt_ms < 60_000, a.rt_ms
        assert a.shown_at is not None and a.shown_at <= a.answered_at
    times = [a.answered_at for a in answers]
    assert times == sorted(times), "answers stored out of order"


def until(page, condition, message: str, timeout_ms: int = TIMEOUT_MS) -> None:
    """Wait for a condition on test-side state (the page's events run while waiting)."""
    for _ in range(timeout_ms // 50):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError(message)


def shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / name))


# ---------------------------------------------------------------- the tests


def test_class_discrimination_with_keyboard_and_reload(context_for, server, studies):
    slug = studies["class_discrimination"]
    ctx, watch = context_for(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    params = {"PROLIFIC_PID": "e2e-prolific-1", "STUDY_ID": "study-9", "SESSION_ID": "session-4"}
    consent(page, slug, params)
    expect(page.locator("#start")).to_have_text("Try a practice trial")
    page.locator("#start").click()
    do_practice(page, slug, right=False)

    for k in (1, 2):
        wait_trial(page, k, CD_TRIALS, 2)
        if k == 1:
            shot(page, "e2e-cd.png")
            # Keys that are not an answer: no third option, a browser shortcut, Enter and
            # Space (no option has the focus, so none is chosen by accident).
            for key in ("3", "0", "Control+1", "Enter", " "):
                page.keyboard.press(key)
            page.wait_for_timeout(100)
            expect(page.locator("#progress")).to_have_text(f"Trial 1 of {CD_TRIALS}")
            assert queued(page) == [] and stored(server, "e2e-prolific-1")[1] == []
            expect(page.locator("#answers button[aria-pressed]")).to_have_count(0)
        answer_key(page, "1" if k == 1 else "2")
    wait_trial(page, 3, CD_TRIALS, 2)
    page.reload()  # in the middle: resumes at trial 3, no practice again
    expect(page.locator("#start")).to_have_text("Continue")
    page.locator("#start").click()
    for k in range(3, CD_TRIALS + 1):
        wait_trial(page, k, CD_TRIALS, 2)
        answer_key(page, "2" if k % 2 else "1")
    reach_debrief(page, slug)

    p, answers, total = stored(server, "e2e-prolific-1")
    assert total == CD_TRIALS
    check_answers(answers, total)
    assert p.status in ("completed", "screened_out") and p.stage == "debrief" and p.questionnaire is None
    assert (p.platform, p.platform_study_id, p.session_id) == ("prolific", "study-9", "session-4")
    code = "DONE123" if p.status == "completed" else "SCREEN9"
    done_url = f"https://app.prolific.com/submissions/complete?cc={code}"
    # The code is there before the (optional) questionnaire, with a copy button that copies it.
    expect(page.locator("#code")).to_have_text(code)
    expect(page.locator("#return")).to_have_attribute("href", done_url)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copied")).to_have_text("Copied.")
    assert page.evaluate("() => navigator.clipboard.readText()") == code
    assert queued(page) == []
    # Sent, the questionnaire is stored, and the page returns to Prolific by itself.
    send_questionnaire(page, slug)
    page.wait_for_url(done_url, timeout=TIMEOUT_MS)
    assert stored(server, "e2e-prolific-1")[0].questionnaire["difficulty"] == "easy"
    page.goto(server.base + participant_url(slug, params))  # coming back later: the code again
    page.wait_for_url(re.compile(rf"/s/{slug}/debrief$"))
    expect(page.locator("#code")).to_have_text(code)
    # Another browser (no cookie) with the same Prolific id: the code again, no new participation.
    other, other_watch = context_for(viewport={"width": 1280, "height": 800})
    again = other.new_page()
    again.goto(participant_url(slug, params))
    expect(again.get_by_role("heading", name="You have finished this study")).to_be_visible()
    expect(again.locator("#code")).to_have_text(code)
    assert again.get_by_role("button", name="I agree, start").count() == 0
    other_watch.check()
    watch.check()
    # The policy is enforced (and a breach would be caught): an inline style is refused.
    page.evaluate("() => document.body.setAttribute('style', 'color: red')")
    until(page, lambda: any("Content Security Policy" in e for e in watch.errors), "no CSP report")


def test_trust_with_clicks_and_reload(context_for, server, studies):
    slug = studies["trust"]
    ctx, watch = context_for(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    submit_to = server.base  # MTurk's host, stood in for by the test server: nothing external
    params = {
        "assignmentId": "e2e-assignment",
        "workerId": "e2e-worker-1",
        "hitId": "e2e-hit",
        "turkSubmitTo": submit_to,
    }
    consent(page, slug, params)
    page.locator("#start").click()
    do_practice(page, slug, right=True)

    clicks = [4, 0, 2, 3, 1, 2]
    for k in (1, 2, 3):
        wait_trial(page, k, TRUST_TRIALS, 5)
        buttons = page.locator("#answers button")
        assert buttons.all_inner_texts() == ["1", "2", "3", "4", "5"]
        assert [b.get_attribute("aria-label") for b in buttons.all()] == TRUST_LABELS
        one_row(page, "#answers button")
        expect(page.locator(".scale-anchors span").first).to_have_text("Model 1 much more reliable")
        expect(page.locator(".scale-anchors span").last).to_have_text("Model 2 much more reliable")
        assert page.locator("#images figcaption").all_inner_texts() == ["Model 1", "Model 2"]
        expect(page.locator("#object")).to_have_text(re.compile(r"^Both models named the object: \S.*\.$"))
        if k == 1:
            shot(page, "e2e-trust.png")
        answer_click(page, clicks[k - 1])
    wait_trial(page, 4, TRUST_TRIALS, 5)
    page.reload()
    expect(page.locator("#start")).to_have_text("Continue")
    page.locator("#start").click()
    for k in range(4, TRUST_TRIALS + 1):
        wait_trial(page, k, TRUST_TRIALS, 5)
        answer_click(page, clicks[k - 1])
    reach_debrief(page, slug)

    p, answers, total = stored(server, "e2e-worker-1")
    assert total == TRUST_TRIALS
    check_answers(answers, total)
    assert [int(a.answer) for a in answers] == [TRUST_VALUES[c] for c in clicks]
    assert p.status in ("completed", "screened_out") and p.stage == "debrief"
    assert (p.platform, p.assignment_id, p.hit_id) == ("mturk", "e2e-assignment", "e2e-hit")
    form = page.locator("form.submit")
    expect(form).to_have_attribute("action", submit_to + "/mturk/externalSubmit")
    expect(form).to_have_attribute("method", "post")
    expect(form.locator("input[name=assignmentId]")).to_have_value("e2e-assignment")
    expect(page.get_by_role("button", name="Submit the HIT")).to_be_visible()
    expect(page.locator("#code")).to_have_text("CAMSTUDY-DONE" if p.status == "completed" else "CAMSTUDY-SCREENED")
    watch.check()


def one_row(page, selector: str) -> None:
    """The elements of ``selector`` sit on one row (the same top edge)."""
    tops = {round(b.bounding_box()["y"]) for b in page.locator(selector).all()}
    assert len(tops) == 1, f"{selector} wraps onto {len(tops)} rows"


def in_view(page, locator, width: int, height: int) -> None:
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (box, locator)
    assert box["y"] >= 0 and box["y"] + box["height"] <= height + 0.5, (box, locator)
    assert box["width"] >= 44 or box["height"] >= 32, f"too small to tap: {box}"


@pytest.mark.parametrize("task", ["trust", "class_discrimination"])
def test_phone_sized_screen(context_for, server, studies, task):
    width, height = 390, 844
    slug = studies[task]
    trials, choices = (TRUST_TRIALS, 5) if task == "trust" else (CD_TRIALS, 2)
    ctx, watch = context_for(
        viewport={"width": width, "height": height}, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    page = ctx.new_page()
    worker = f"e2e-phone-{task}"
    consent(
        page,
        slug,
        {"workerId": worker, "assignmentId": "a-phone", "hitId": "h", "turkSubmitTo": server.base}
        if task == "trust"
        else {"PROLIFIC_PID": worker, "STUDY_ID": "s", "SESSION_ID": "x"},
    )
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    expect(page.locator("#example")).to_be_visible()  # the worked example
    expect(page.locator("#example img")).to_have_count(2 if task == "trust" else 1)
    expect(page.locator("#instructions .keys")).to_be_hidden()  # a phone has no number keys to press
    assert "kbd" not in page.locator("#instructions").inner_text().lower()
    page.locator("#start").scroll_into_view_if_needed()
    in_view(page, page.locator("#start"), width, height)
    page.locator("#start").tap()
    do_practice(page, slug, right=True, tap=True)
    picks = [1, 2, 3, 0, 4, 2] if task == "trust" else [1, 0, 1, 0, 1]
    for k in range(1, trials + 1):
        wait_trial(page, k, trials, choices)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        for el in page.locator("#images figure").all() + page.locator("#answers button").all():
            in_view(page, el, width, height)  # everything at once, without scrolling
        if task == "trust":
            one_row(page, "#answers button")
        # Sharp on a 2x screen: the browser picked the 2x file where the study has one.
        for img in page.locator("#images img").all():
            assert img.evaluate("(i) => i.naturalWidth") >= img.evaluate("(i) => i.clientWidth"), "upscaled stimulus"
        if k == 1:
            shot(page, f"e2e-phone-{'trust' if task == 'trust' else 'cd'}.png")
        answer_click(page, picks[k - 1], tap=True)
    reach_debrief(page, slug)
    _, answers, _ = stored(server, worker)
    assert [a.position for a in answers] == list(range(trials))
    if task == "trust":
        assert [int(a.answer) for a in answers] == [TRUST_VALUES[i] for i in picks]
    # The code on one line, on screen, with its copy button beside it.
    code = page.locator("#code")
    in_view(page, page.locator(".code-row"), width, height)
    size = code.evaluate("(c) => parseFloat(getComputedStyle(c).fontSize)")
    assert code.bounding_box()["height"] < 2 * size, "the completion code wraps"
    watch.check()


def test_lost_connection_keeps_answers_and_sends_them_in_order_once(context_for, server, studies):
    slug = studies["class_discrimination"]
    ctx, watch = context_for(viewport={"width": 1024, "height": 768})
    page = ctx.new_page()
    acked: list[int] = []

    def answered(resp):
        req = resp.request
        if req.method == "POST" and req.url.endswith("/answers") and resp.status == 200:
            acked.append(json.loads(req.post_data)["position"])

    page.on("response", answered)
    images: set[str] = set()
    page.on("requestfinished", lambda req: images.add(urlsplit(req.url).path) if "/img/" in req.url else None)
    consent(page, slug, {"PROLIFIC_PID": "e2e-offline", "STUDY_ID": "s", "SESSION_ID": "x"})
    trials = plan_of(page, slug)["trials"]
    page.locator("#start").click()
    do_practice(page, slug, right=True)
    wait_trial(page, 1, CD_TRIALS, 2)
    answer_key(page, "1")
    wait_trial(page, 2, CD_TRIALS, 2)
    until(page, lambda: acked == [0], "the first answer was not acknowledged")

    # The server is unreachable for answers: they stay in the browser, and the page says so.
    page.route("**/api/s/*/answers", lambda route: route.abort("failed"))
    answer_key(page, "2")
    wait_trial(page, 3, CD_TRIALS, 2)
    answer_key(page, "1")
    wait_trial(page, 4, CD_TRIALS, 2)
    expect(page.locator("#status")).to_contain_text("answers are kept")
    assert [a["position"] for a in queued(page)] == [1, 2]
    assert len(stored(server, "e2e-offline")[1]) == 1

    # The browser goes offline too, and one more answer waits. (The last trial's images
    # are preloaded by now: wait for them, so that the trial looks whole offline.)
    until(page, lambda: set(trials[-1]["images"]) <= images, "the last trial's images were not preloaded")
    ctx.set_offline(True)
    answer_key(page, "2")
    wait_trial(page, 5, CD_TRIALS, 2)
    assert [a["position"] for a in queued(page)] == [1, 2, 3]

    # Back online: the queue empties by itself, in order, each answer once.
    page.unroute("**/api/s/*/answers")
    ctx.set_offline(False)
    page.wait_for_function(
        "() => Object.keys(localStorage).filter((k) => k.endsWith(':queue'))"
        ".every((k) => localStorage.getItem(k) === '[]')",
        timeout=TIMEOUT_MS,
    )
    expect(page.locator("#status")).to_have_text("")
    _, answers, _ = stored(server, "e2e-offline")
    assert [a.position for a in answers] == [0, 1, 2, 3]
    until(page, lambda: len(acked) >= 4, f"acknowledgements seen: {acked}")
    page.wait_for_timeout(300)  # a duplicate would show up here
    assert acked == [0, 1, 2, 3], acked

    answer_key(page, "1")
    reach_debrief(page, slug)
    p, answers, total = stored(server, "e2e-offline")
    check_answers(answers, total)
    until(page, lambda: len(acked) >= CD_TRIALS, f"acknowledgements seen: {acked}")
    assert acked == list(range(CD_TRIALS)), acked
    assert p.status in ("completed", "screened_out")
    watch.check()


def test_rejected_answer_is_asked_again(context_for, server, studies):
    """An answer the server refuses is not lost silently: the trials resume where the
    server's record ends (the server, not the browser, says what is answered)."""
    slug = studies["class_discrimination"]
    ctx, watch = context_for(viewport={"width": 1024, "height": 768})
    watch.allowed += ["answer rejected", "status of 422", "status of 409"]
    page = ctx.new_page()
    rejected = []

    def reject_once(route):
        if not rejected and json.loads(route.request.post_data)["position"] == 1:
            rejected.append(1)
            route.fulfill(status=422, json={"error": "refused by the test"})
        else:
            route.continue_()

    page.route("**/api/s/*/answers", reject_once)
    consent(page, slug, {"PROLIFIC_PID": "e2e-rejected", "STUDY_ID": "s", "SESSION_ID": "x"})
    options = [t["options"] for t in plan_of(page, slug)["trials"]]
    page.locator("#start").click()
    do_practice(page, slug, right=True)
    for k in range(1, CD_TRIALS + 1):
        wait_trial(page, k, CD_TRIALS, 2)
        answer_key(page, "1")
    # The server lacks trial 2 (and so refused 3-5 as out of order): back to trial 2.
    expect(page.locator("#start")).to_have_text("Continue")
    assert [a.position for a in stored(server, "e2e-rejected")[1]] == [0]
    page.locator("#start").click()
    for k in range(2, CD_TRIALS + 1):
        wait_trial(page, k, CD_TRIALS, 2)
        answer_key(page, "2")
    reach_debrief(page, slug)
    _, answers, total = stored(server, "e2e-rejected")
    check_answers(answers, total)
    # The first answer to trial 2 was refused; the one stored is the second ("2"), like 3-5.
    assert [a.answer for a in answers] == [options[0][0]] + [o[1] for o in options[1:]]
    watch.check()


def test_a_double_click_answers_one_trial_only(context_for, server, studies):
    """A double click (and a second click 150 ms after the first, where the next trial's
    buttons would be) stores one answer: the next trial waits behind a blank interval and
    takes input only once painted."""
    slug = studies["class_discrimination"]
    ctx, watch = context_for(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    consent(page, slug, {"PROLIFIC_PID": "e2e-double", "STUDY_ID": "s", "SESSION_ID": "x"})
    page.locator("#start").click()
    do_practice(page, slug, right=True)
    wait_trial(page, 1, CD_TRIALS, 2)
    page.locator("#answers button").nth(0).dblclick()
    wait_trial(page, 2, CD_TRIALS, 2)
    box = page.locator("#answers button").nth(1).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(150)
    page.mouse.click(x, y)  # where trial 3's second button will be
    wait_trial(page, 3, CD_TRIALS, 2)
    page.wait_for_timeout(500)  # a second answer would be on its way by now
    expect(page.locator("#progress")).to_have_text(f"Trial 3 of {CD_TRIALS}")
    until(page, lambda: len(stored(server, "e2e-double")[1]) == 2, "the two answers were not stored")
    page.wait_for_timeout(300)
    assert [a.position for a in stored(server, "e2e-double")[1]] == [0, 1]
    assert queued(page) == []
    watch.check()


def test_a_slow_network_shows_a_spinner_and_times_from_the_paint(context_for, server, studies):
    """On a slow link the images load behind a spinner, with no answer buttons, and the
    reaction time counts from the moment the trial is on screen, not from the request."""
    slug = studies["trust"]
    ctx, watch = context_for(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    params = {"assignmentId": "a-slow", "workerId": "e2e-slow", "hitId": "h", "turkSubmitTo": server.base}
    consent(page, slug, params)
    expect(page.locator("#start")).to_be_enabled()
    # From here every request takes 1.5 s more, and images trickle in at 20 kB/s.
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 1500, "downloadThroughput": 20_000, "uploadThroughput": 20_000},
    )
    page.locator("#start").click()
    expect(page.locator("#spinner")).to_be_visible()
    expect(page.locator("#progress")).to_have_text(re.compile("Practice"))  # not a trial's number yet
    assert page.locator("#answers button").count() == 0, "answer buttons before the images"
    do_practice(page, slug, right=True)
    expect(page.locator("#progress")).to_have_text(f"Trial 1 of {TRUST_TRIALS}")
    started = time.monotonic()
    expect(page.locator("#spinner")).to_be_visible()
    assert page.locator("#answers button").count() == 0
    expect(page.locator("#answers button:enabled")).to_have_count(5, timeout=TIMEOUT_MS)
    expect(page.locator("#spinner")).to_be_hidden()
    answer_click(page, 2)
    waited = time.monotonic() - started
    until(page, lambda: len(stored(server, "e2e-slow")[1]) == 1, "the answer was not stored")
    rt = stored(server, "e2e-slow")[1][0].rt_ms
    # The images took over a second and a half to come; the clock started when they showed.
    assert waited > 1.5 and rt < (waited - 1.0) * 1000, (waited, rt)
    watch.check()
