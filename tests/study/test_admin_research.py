"""What a researcher needs from the admin pages and the export (issue 12, part 8): the
participant links with copy buttons, empty modes collapsed, time on task, a preview of the
exclusion rules, the questionnaire and focus events in the exports, error pages in the
study's style, and the landing page.

Expected values come from the database or from times the tests set there, never from the
code under test."""

from __future__ import annotations

import html as htmllib
import io
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select, update
from werkzeug.security import generate_password_hash

from analysis.load import load_export
from study.db import transaction
from study.export import EVENT_COUNTS, PARTICIPANT_COLUMNS, columns, export_columns
from study.links import participant_links
from study.models import AdminUser, Event, Item, Participant, PlanEntry, Study
from tests.study.test_admin import PASSWORD, cd_slug, login, send_questionnaire, trust_slug
from tests.study.test_api import enroll, headers, signed, worker

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def admin(app) -> str:
    with transaction(app.extensions["camstudy.sessions"]) as s:
        s.add(AdminUser(name="ada", password_hash=generate_password_hash(PASSWORD)))
    return "ada"


def sessions(app):
    return app.extensions["camstudy.sessions"]


def section(html: str, mode: str) -> str:
    return re.search(rf'<section id="mode-{mode}"[^>]*>(.*?)</section>', html, re.S).group(1)


def text(fragment: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


class Person:
    """One participant driven through the API, answering from the answer key in the
    database: ``checks_right`` decides the attention checks, ``rt_ms`` every reaction time."""

    def __init__(self, app, slug: str, mode: str = "live") -> None:
        self.app, self.slug = app, slug
        self.client = app.test_client()
        with sessions(app)() as s:
            study = s.scalar(select(Study).where(Study.slug == slug))
            self.kind, platform = study.kind, study.settings["platform"]
        params = worker()
        self.worker_id = params["PROLIFIC_PID" if platform == "prolific" else "workerId"]
        enroll(self.client, slug, {**params, **(signed(app, slug, mode) if mode != "live" else {})})
        self.h = headers(self.client, app, slug)
        with sessions(app)() as s:
            self.pid = s.scalar(
                select(Participant.id).where(Participant.study_id == study.id, Participant.worker_id == self.worker_id)
            )
            self.key = {
                pos: (check, correct)
                for pos, check, correct in s.execute(
                    select(PlanEntry.position, Item.is_attention_check, Item.correct_answer)
                    .join(Item, Item.id == PlanEntry.item_pk)
                    .where(PlanEntry.participant_id == self.pid)
                )
            }
        self.plan = self.client.get(f"/api/s/{slug}/plan", headers=self.h).get_json()

    def answer(self, n: int | None = None, checks_right: bool = True, rt_ms: float = 800) -> None:
        for t in self.plan["trials"][:n]:
            check, correct = self.key[t["position"]]
            if self.kind == "trust":
                value = (0 if checks_right else 2) if check else 1
            else:
                wrong = next(o for o in t["options"] if o != correct)
                value = correct if (checks_right or not check) else wrong
            r = self.client.post(
                f"/api/s/{self.slug}/answers",
                headers=self.h,
                json={"position": t["position"], "answer": value, "rt_ms": rt_ms},
            )
            assert r.status_code == 200, r.get_json()

    def event(self, kind: str, detail: dict | None = None) -> None:
        r = self.client.post(f"/api/s/{self.slug}/events", headers=self.h, json={"kind": kind, "detail": detail})
        assert r.status_code == 204, r.get_data(as_text=True)

    def complete(self, questionnaire: dict | None = None) -> str:
        r = self.client.post(f"/api/s/{self.slug}/complete", headers=self.h, json={})
        assert r.status_code == 200, r.get_json()
        if questionnaire is not None:
            send_questionnaire(self.client, r.get_json()["next_url"], questionnaire)
        return r.get_json()["status"]

    def set_times(self, created: datetime, completed: datetime | None) -> None:
        with transaction(sessions(self.app)) as s:
            s.execute(
                update(Participant).where(Participant.id == self.pid).values(created_at=created, completed_at=completed)
            )


def admin_client(app):
    c = app.test_client()
    assert login(c).status_code == 302
    return c


# --- 1. participant links with copy buttons ---------------------------------------------------


@pytest.mark.parametrize("task", ["class_discrimination", "trust"])
def test_links_have_copy_buttons_for_the_platform(app, admin, task):
    slug = app.config["STUDIES"][task]
    client = admin_client(app)
    r = client.get(f"/admin/s/{slug}")
    page = r.get_data(as_text=True)
    with sessions(app)() as s:
        study = s.scalar(select(Study).where(Study.slug == slug))
        platform = study.settings["platform"]
        links = participant_links(study, "http://localhost/")
    assert platform == {"class_discrimination": "prolific", "trust": "mturk"}[task]
    table = re.search(r'<table id="links">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r'<tr data-mode="(\w+)">(.*?)</tr>', table, re.S)
    assert [m for m, _ in rows] == ["live", "sandbox", "debug"] == [link.mode for link in links]
    for (mode, row), link in zip(rows, links, strict=True):
        code = re.search(rf'<code class="link" id="link-{mode}">(.*?)</code>', row, re.S)
        assert code and htmllib.unescape(code.group(1)) == link.url
        assert re.search(rf'<button type="button"[^>]* data-copy="link-{mode}"[^>]*>Copy</button>', row)
    live = links[0].url
    if platform == "prolific":
        assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in live
    else:
        assert "PROLIFIC_PID" not in live and "workerId" not in live  # MTurk appends its own ids
    # The copy script is a file of this site, which the admin page's CSP allows; nothing inline.
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts == [(' src="/static/admin.js" defer', "")]
    js = client.get("/static/admin.js")
    assert js.status_code == 200 and "javascript" in js.mimetype
    assert "data-copy" in js.get_data(as_text=True) and "clipboard" in js.get_data(as_text=True)
    assert client.get("/static/admin.css").status_code == 200


# --- 2. empty modes collapsed -----------------------------------------------------------------


def _details_open(html: str, mode: str) -> bool:
    tag = re.search(r"<details([^>]*)>", section(html, mode)).group(1)
    return "open" in tag.split()


def test_empty_modes_are_collapsed_on_index_and_study_page(app, admin):
    slug = cd_slug(app)
    client = admin_client(app)
    Person(app, slug).answer(2)
    page = client.get(f"/admin/s/{slug}").get_data(as_text=True)
    assert _details_open(page, "live")
    for mode in ("sandbox", "debug"):
        assert not _details_open(page, mode)
        assert "no participants yet" in text(re.search(r"<summary>(.*?)</summary>", section(page, mode), re.S).group(1))
    assert "1 participant, 2 answers" in text(
        re.search(r"<summary>(.*?)</summary>", section(page, "live"), re.S).group(1)
    )

    def study_rows(index: str, s: str) -> str:
        return re.search(rf'<tbody data-study="{s}">(.*?)</tbody>', index, re.S).group(1)

    index = client.get("/admin/").get_data(as_text=True)
    cd = study_rows(index, slug)
    assert re.findall(r'<tr data-mode="(\w+)">', cd) == ["live"]
    assert "sandbox, debug: no participants yet" in text(cd)
    trust = study_rows(index, trust_slug(app))  # nobody at all: live keeps its row of zeros
    assert re.findall(r'<tr data-mode="(\w+)">', trust) == ["live"]
    assert "sandbox, debug: no participants yet" in text(trust)

    Person(app, slug, mode="debug").answer(1)
    page = client.get(f"/admin/s/{slug}").get_data(as_text=True)
    assert _details_open(page, "live") and _details_open(page, "debug") and not _details_open(page, "sandbox")
    cd = study_rows(client.get("/admin/").get_data(as_text=True), slug)
    assert re.findall(r'<tr data-mode="(\w+)">', cd) == ["live", "debug"]
    assert "sandbox: no participants yet" in text(cd) and "debug: no" not in text(cd)


# --- 3. time on task --------------------------------------------------------------------------


def test_time_on_task_median_and_iqr_per_mode(app, admin):
    slug = cd_slug(app)
    people = {}
    for minutes in (5, 7, 9, 11):
        p = Person(app, slug)
        p.answer()
        assert p.complete() == "completed"
        p.set_times(T0, T0 + timedelta(minutes=minutes))
        people[p.pid] = minutes
    slow = Person(app, slug)  # screened out: not counted for pay
    slow.answer(checks_right=False)
    assert slow.complete() == "screened_out"
    slow.set_times(T0, T0 + timedelta(minutes=60))
    Person(app, slug).answer(1)  # still active: no time yet
    debug = Person(app, slug, mode="debug")
    debug.answer()
    debug.complete()
    debug.set_times(T0, T0 + timedelta(minutes=20, seconds=30))

    page = admin_client(app).get(f"/admin/s/{slug}").get_data(as_text=True)
    live = section(page, "live")
    summary = text(re.search(r'<p class="time-on-task">(.*?)</p>', live, re.S).group(1))
    # 5, 7, 9, 11 minutes: median 8, quartiles 6.5 and 9.5 (linear interpolation).
    assert "over 4 completed participants" in summary
    assert "median 8.0 min" in summary and "interquartile range 6.5–9.5 min" in summary
    assert "fastest 5.0, slowest 11.0 min" in summary
    debug_summary = text(re.search(r'<p class="time-on-task">(.*?)</p>', section(page, "debug"), re.S).group(1))
    assert "over 1 completed participant:" in debug_summary and "median 20.5 min" in debug_summary
    assert "Nobody has completed" in text(section(page, "sandbox"))
    # Per participant, in the list of the latest.
    with sessions(app)() as s:
        pseudonyms = {pid: ps for pid, ps in s.execute(select(Participant.id, Participant.pseudonym))}
    for pid, minutes in {**people, slow.pid: 60}.items():
        row = re.search(rf'<tr data-pseudonym="{pseudonyms[pid]}">(.*?)</tr>', live, re.S).group(1)
        assert re.search(r'<td class="time-on-task">(.*?)</td>', row).group(1) == f"{minutes:.1f} min"
    active = [pid for pid in pseudonyms if pid not in people and pid not in (slow.pid, debug.pid)]
    row = re.search(rf'<tr data-pseudonym="{pseudonyms[active[0]]}">(.*?)</tr>', live, re.S).group(1)
    assert '<td class="time-on-task">-</td>' in row


# --- 4. exclusion preview ---------------------------------------------------------------------


def _preview(page: str, mode: str) -> dict[str, str]:
    table = re.search(r'<table class="exclusions">(.*?)</table>', section(page, mode), re.S).group(1)
    return {
        rule: text(cells.split("</td>")[-2])
        for rule, cells in re.findall(r'<tr data-rule="(\w+)"[^>]*>(.*?)</tr>', table, re.S)
    }


def test_exclusion_preview_counts_each_rule_on_the_data_so_far(app, admin):
    slug = cd_slug(app)
    good = Person(app, slug)
    good.answer()
    good.complete()
    fast = Person(app, slug)  # median reaction time under the study's 300 ms
    fast.answer(rt_ms=120)
    fast.complete()
    stopped = Person(app, slug)  # two trials, then gone
    stopped.answer(2)
    careless = Person(app, slug)  # fails the attention check: screened out
    careless.answer(checks_right=False)
    assert careless.complete() == "screened_out"
    Person(app, slug)  # enrolled, no answer: not in the export, so not in the preview
    client = admin_client(app)
    with sessions(app)() as s:
        rules = s.scalar(select(Study).where(Study.slug == slug)).settings["exclusions"]
    assert rules == {"max_failed_attention_checks": 0, "min_median_rt_ms": 300, "require_complete": True}
    got = _preview(client.get(f"/admin/s/{slug}").get_data(as_text=True), "live")
    assert got == {"attention": "1", "too_fast": "1", "incomplete": "1", "any": "3", "remain": "1 of 4"}
    page = client.get(f"/admin/s/{slug}").get_data(as_text=True)
    assert "more than 0 failed attention checks" in text(section(page, "live"))
    assert "median reaction time under 300 ms" in text(section(page, "live"))
    assert "<p>No answers yet.</p>" in section(page, "debug")

    # The preview follows the study's own rules: switch two off.
    with transaction(sessions(app)) as s:
        study = s.scalar(select(Study).where(Study.slug == slug))
        study.settings = {
            **study.settings,
            "exclusions": {**rules, "min_median_rt_ms": None, "require_complete": False},
        }
    page = client.get(f"/admin/s/{slug}").get_data(as_text=True)
    assert _preview(page, "live") == {
        "attention": "1",
        "too_fast": "-",
        "incomplete": "-",
        "any": "1",
        "remain": "3 of 4",
    }
    assert "too fast: off" in text(section(page, "live"))


# --- 5. questionnaire and focus events in the exports -----------------------------------------

FREE_TEXT = {
    "strategy": '=HYPERLINK("http://evil.example","x")',
    "difficulty": "hard, at times",
    "comments": '-1 line one\nline "two"',
}


def test_exports_carry_questionnaire_and_focus_events(app, admin, tmp_path):
    slug = cd_slug(app)
    watcher = Person(app, slug)
    watcher.answer(2)
    for kind, detail in [
        ("blur", None),
        ("visibility", {"state": "hidden"}),
        ("visibility", {"state": "visible"}),
        ("focus", None),
        ("blur", None),
        ("visibility", {"state": "hidden"}),
        ("resize", None),
    ]:
        watcher.event(kind, detail)
    watcher.answer()
    watcher.complete(FREE_TEXT)
    # Fix the times: hidden 30 s (0..30), then from 60 s until completion at 100 s.
    with transaction(sessions(app)) as s:
        ids = s.scalars(select(Event.id).where(Event.participant_id == watcher.pid).order_by(Event.id)).all()
        for eid, second in zip(ids, (0, 0, 30, 31, 50, 60, 61), strict=True):
            s.execute(update(Event).where(Event.id == eid).values(at=T0 + timedelta(seconds=second)))
    watcher.set_times(T0 - timedelta(minutes=4), T0 + timedelta(seconds=100))
    quiet = Person(app, slug)  # no events, no questionnaire, still active
    quiet.answer(1)

    client = admin_client(app)
    r = client.get(f"/admin/s/{slug}/export.csv")
    assert r.status_code == 200
    raw = pd.read_csv(io.BytesIO(r.data), dtype=str, keep_default_na=False)
    # The old columns keep their order; the new ones come after them.
    assert list(raw.columns) == columns("class_discrimination") + PARTICIPANT_COLUMNS
    assert PARTICIPANT_COLUMNS == [
        "time_on_task_s",
        "questionnaire_strategy",
        "questionnaire_difficulty",
        "questionnaire_comments",
        "blur_events",
        "focus_events",
        "hidden_events",
        "hidden_s",
    ]
    with sessions(app)() as s:
        pseudonym = {pid: ps for pid, ps in s.execute(select(Participant.id, Participant.pseudonym))}
    mine = raw[raw["participant"] == pseudonym[watcher.pid]]
    assert len(mine) == len(watcher.plan["trials"]) == 5
    # The free text is neutralised for spreadsheets (a formula gets a leading quote) ...
    assert set(mine["questionnaire_strategy"]) == {"'" + FREE_TEXT["strategy"]}
    assert set(mine["questionnaire_comments"]) == {"'" + FREE_TEXT["comments"]}
    assert set(mine["questionnaire_difficulty"]) == {FREE_TEXT["difficulty"]}
    assert set(mine["blur_events"]) == {"2"} and set(mine["focus_events"]) == {"1"}
    assert set(mine["hidden_events"]) == {"2"} and set(mine["hidden_s"]) == {"70.0"}
    assert set(mine["time_on_task_s"]) == {"340.0"}
    other = raw[raw["participant"] == pseudonym[quiet.pid]]
    assert len(other) == 1 and other.iloc[0][EVENT_COUNTS + ["hidden_s"]].tolist() == ["0", "0", "0", "0.0"]
    assert other.iloc[0][["time_on_task_s", "questionnaire_strategy", "questionnaire_comments"]].tolist() == [
        "",
        "",
        "",
    ]

    # ... and analysis/ reads back exactly what was sent, from CSV and Parquet alike.
    (tmp_path / "e.csv").write_bytes(r.data)
    pq = client.get(f"/admin/s/{slug}/export.parquet")
    (tmp_path / "e.parquet").write_bytes(pq.data)
    from_csv, from_pq = load_export(tmp_path / "e.csv"), load_export(tmp_path / "e.parquet")
    pd.testing.assert_frame_equal(from_csv, from_pq)
    row = from_csv[from_csv["participant"] == pseudonym[watcher.pid]].iloc[0]
    for k, v in FREE_TEXT.items():
        assert row[f"questionnaire_{k}"] == v
    assert (row["blur_events"], row["focus_events"], row["hidden_events"], row["hidden_s"]) == (2, 1, 2, 70.0)
    assert str(from_csv["blur_events"].dtype) == "Int64" and str(from_csv["hidden_s"].dtype) == "float64"
    assert pd.isna(from_csv[from_csv["participant"] == pseudonym[quiet.pid]].iloc[0]["time_on_task_s"])

    # An export from before these columns still loads, to the same frame less them.
    old = tmp_path / "old.csv"
    raw.drop(columns=PARTICIPANT_COLUMNS).to_csv(old, index=False)
    before = load_export(old)
    assert list(before.columns) == columns("class_discrimination")
    pd.testing.assert_frame_equal(before, from_csv.drop(columns=PARTICIPANT_COLUMNS))
    old_pq = tmp_path / "old.parquet"
    pd.read_parquet(io.BytesIO(pq.data)).drop(columns=PARTICIPANT_COLUMNS).to_parquet(old_pq)
    pd.testing.assert_frame_equal(load_export(old_pq), before)


def test_trust_export_has_the_participant_columns(app, admin):
    slug = trust_slug(app)
    p = Person(app, slug)
    p.answer()
    p.event("blur")
    p.complete({"strategy": "@SUM(1)", "difficulty": "", "comments": ""})
    client = admin_client(app)
    raw = pd.read_csv(io.BytesIO(client.get(f"/admin/s/{slug}/export.csv").data), dtype=str, keep_default_na=False)
    assert list(raw.columns) == export_columns("trust")
    assert set(raw["questionnaire_strategy"]) == {"'@SUM(1)"} and set(raw["blur_events"]) == {"1"}


# --- 6. error pages -----------------------------------------------------------------------------


def _is_page(r, status: int) -> str:
    assert r.status_code == status and r.mimetype == "text/html", (r.status_code, r.mimetype)
    page = r.get_data(as_text=True)
    assert 'href="/static/study.css"' in page and "<h1>" in page  # the study's own style
    return page


def test_error_pages_are_html_in_the_study_style(app, admin):
    slug = cd_slug(app)
    client = admin_client(app)
    # A bad export mode: an HTML page for the browser that followed a link.
    page = _is_page(client.get(f"/admin/s/{slug}/export.csv?mode=bogus"), 400)
    assert "<h1>No such export</h1>" in page and "live, sandbox, debug or all" in page
    assert f'href="/admin/s/{slug}"' in page
    _is_page(client.get(f"/admin/s/{slug}/export.parquet?mode=bogus"), 400)
    # 404s: an unknown page, study and export.
    for path in ("/nowhere", "/admin/s/nope", "/admin/s/nope/export.csv", "/s/nope/"):
        assert "There is no page at this address" in _is_page(client.get(path), 404)
    assert 'href="/admin/"' in _is_page(client.get("/admin/s/nope"), 404)
    # A form that expired: the login and the logout.
    stale = app.test_client()
    stale.get("/admin/login")
    page = _is_page(stale.post("/admin/login", data={"csrf_token": "old", "username": "ada", "password": "x"}), 400)
    assert "The form has expired" in page and "Reload the page and try again" in page
    assert 'href="/admin/login"' in page
    page = _is_page(client.post("/admin/logout", data={"csrf_token": "from another session"}), 400)
    assert "Reload the page and try again" in page and 'href="/admin/"' in page
    assert client.get("/admin/").status_code == 200  # nothing was done
    # Other refusals of pages: a wrong method, a NUL, a body over the limit.
    _is_page(client.get("/admin/logout"), 405)
    _is_page(client.get("/admin/s/c%00d"), 400)
    _is_page(app.test_client().post(f"/s/{slug}/consent", data={"x": "y" * 100_000}), 413)
    # The JSON API keeps JSON errors.
    someone = Person(app, slug)
    for r, status in [
        (client.get(f"/api/s/{slug}/nope"), 404),
        (client.get(f"/api/s/{slug}/answers"), 405),
        (client.get("/api/s/c%00d/plan"), 400),
        (
            someone.client.post(
                f"/api/s/{slug}/answers", data="[" * 100_000, headers={**someone.h, "Content-Type": "application/json"}
            ),
            413,
        ),
    ]:
        assert r.status_code == status and r.is_json and "error" in r.get_json(), (r.status_code, r.data[:100])
    # Data without a login stays a 401 JSON answer (scripts read it).
    r = app.test_client().get(f"/admin/s/{slug}/export.csv")
    assert r.status_code == 401 and r.is_json


def test_unexpected_errors_render_a_page(app):
    app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)

    def boom():
        raise RuntimeError("a bug")

    app.add_url_rule("/s/boom/x", "boom_page", boom)
    app.add_url_rule("/api/s/boom/x", "boom_api", boom)
    page = _is_page(app.test_client().get("/s/boom/x"), 500)
    assert "Something went wrong" in page and "a bug" not in page
    r = app.test_client().get("/api/s/boom/x")
    assert r.status_code == 500 and r.is_json


def test_database_unavailable_is_a_page_for_pages_and_json_for_the_api(app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    import study.participant

    def down(*_a, **_k):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(study.participant, "study_by_slug", down)
    r = app.test_client().get(f"/s/{cd_slug(app)}/")
    page = _is_page(r, 503)
    assert r.headers["Retry-After"] == "1" and "reload the page" in page
    monkeypatch.setattr(study.api, "study_by_slug", down)
    r = app.test_client().get(f"/api/s/{cd_slug(app)}/plan")
    assert r.status_code == 503 and r.is_json


# --- 7. the landing page ----------------------------------------------------------------------


def test_landing_page_explains_and_lists_no_study(app, admin):
    Person(app, cd_slug(app)).answer(1)
    for client in (app.test_client(), admin_client(app)):  # the same for a stranger and an admin
        r = client.get("/")
        page = _is_page(r, 200)
        assert "<h1>camstudy</h1>" in page
        assert 'href="/admin/"' in page
        assert "link that your recruitment platform" in text(page)
        with sessions(app)() as s:
            for study in s.scalars(select(Study)):
                assert study.slug not in page and study.title not in page and f"/s/{study.slug}" not in page
        assert "script-src 'self'" in r.headers["Content-Security-Policy"] and "<script" not in page
