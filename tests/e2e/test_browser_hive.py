"""HIVE distinction in a real browser (Chromium through Playwright, the real app on
loopback): four explanations captioned with the model's four best guesses, the practice
and its feedback, keyboard and click answers, a reload, and a phone-sized screen where the
four images and their buttons fit at once. Fixtures and helpers are test_browser.py's."""

from __future__ import annotations

import re

import pytest

from study.db import session_factory, transaction
from study.settings import load_study_config
from study.setup import create_study
from tests.e2e import test_browser as tb
from tests.study import conftest as study_fixtures

expect = tb.expect
pytestmark = tb.pytestmark

stimuli_dir = study_fixtures.stimuli_dir
hive_stimuli_dir = study_fixtures.hive_stimuli_dir
db_url = study_fixtures.db_url
migrated = study_fixtures.migrated
studies = study_fixtures.studies
browser, server, context_for = tb.browser, tb.server, tb.context_for

TRIALS = 5  # 4 trials + 1 attention check
HIVE_TOML = (
    """
title = "Which object did the model predict?"
task = "hive_distinction"
slug = "e2e-hive"
trials_per_participant = 4
raters_per_item = 3
attention_checks = 1
design = "between"
platform = "prolific"
practice = true
questionnaire = false
"""
    + study_fixtures.CONSENT_TOML
)


@pytest.fixture
def hive(migrated, hive_stimuli_dir, tmp_path) -> str:
    cfg = load_study_config(study_fixtures.write_config(tmp_path, "hive", HIVE_TOML))
    factory = session_factory(study_fixtures.create_engine_for(migrated))
    with transaction(factory) as s:
        return create_study(s, cfg, hive_stimuli_dir).slug


def four_choices(page, trial: dict) -> None:
    """Four images, each captioned "n. option", and four buttons with the same words."""
    words = [f"{i + 1}. {o}" for i, o in enumerate(trial["options"])]
    assert len(words) == 4 and len(set(trial["options"])) == 4
    expect(page.locator("#images img")).to_have_count(4)
    assert page.locator("#images figcaption").all_inner_texts() == words
    assert page.locator("#answers button").all_inner_texts() == words
    alts = [img.get_attribute("alt") for img in page.locator("#images img").all()]
    assert alts == [f"explanation {i + 1}, for {o}" for i, o in enumerate(trial["options"])]


def practice(page, slug: str, tap: bool = False) -> None:
    p = tb.plan_of(page, slug)["practice"]
    assert p is not None and p["correct"] in p["options"] and len(p["options"]) == 4
    expect(page.locator("#answers button:enabled")).to_have_count(4)
    wrong = next(i for i, o in enumerate(p["options"]) if o != p["correct"])
    button = page.locator("#answers button").nth(wrong)
    button.tap() if tap else button.click()
    expect(page.locator("#feedback")).to_have_text(p["wrong"])
    go = page.get_by_role("button", name="Start the real trials")
    go.tap() if tap else go.click()


def test_hive_distinction_with_keys_clicks_and_reload(context_for, server, hive):
    ctx, watch = context_for(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    worker = "e2e-hive-1"
    tb.consent(page, hive, {"PROLIFIC_PID": worker, "STUDY_ID": "s", "SESSION_ID": "x"})
    expect(page.locator("#example img")).to_have_count(4)  # the worked example shows four, too
    page.locator("#start").click()
    practice(page, hive)
    plan = tb.plan_of(page, hive)
    assert plan["display"]["images"] == 4 and plan["widget"]["type"] == "options" and plan["scale"] is None
    trials = plan["trials"]
    picks = []
    for k in range(1, TRIALS + 1):
        tb.wait_trial(page, k, TRIALS, 4)
        trial = trials[k - 1]
        four_choices(page, trial)
        tb.one_row(page, "#images img")  # side by side on a desktop screen
        for el in page.locator("#images figure").all() + page.locator("#answers button").all():
            tb.in_view(page, el, 1280, 800)
        if k == 1:
            tb.shot(page, "e2e-hive.png")
        # Blind as a hostile worker would check it: the four files (the right one among them)
        # are one size, with the same headers, under URLs that name no class.
        served = [page.request.get(img.evaluate("(i) => i.currentSrc")) for img in page.locator("#images img").all()]
        assert len({len(r.body()) for r in served}) == 1, [len(r.body()) for r in served]
        assert len({tuple(sorted(r.headers)) for r in served}) == 1
        for r in served:
            assert not any(o.lower() in r.url.lower() for o in trial["options"]), r.url
            assert not any(t in r.url for t in ("top1", "top2", "top3", "top4", "__")), r.url
        pick = k % 4
        picks.append(trial["options"][pick])
        tb.answer_key(page, str(pick + 1)) if k % 2 else tb.answer_click(page, pick)
        if k == 2:
            tb.wait_trial(page, 3, TRIALS, 4)
            page.reload()
            expect(page.locator("#start")).to_have_text("Continue")
            page.locator("#start").click()
    tb.reach_debrief(page, hive)
    p, answers, total = tb.stored(server, worker)
    assert total == TRIALS
    tb.check_answers(answers, total)
    assert [a.answer for a in answers] == picks
    watch.check()


def test_hive_distinction_on_a_phone(context_for, server, hive):
    width, height = 390, 844
    ctx, watch = context_for(
        viewport={"width": width, "height": height}, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    page = ctx.new_page()
    worker = "e2e-hive-phone"
    tb.consent(page, hive, {"PROLIFIC_PID": worker, "STUDY_ID": "s", "SESSION_ID": "x"})
    page.locator("#start").scroll_into_view_if_needed()
    page.locator("#start").tap()
    practice(page, hive, tap=True)
    trials = tb.plan_of(page, hive)["trials"]
    for k in range(1, TRIALS + 1):
        tb.wait_trial(page, k, TRIALS, 4)
        four_choices(page, trials[k - 1])
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        for img in page.locator("#images img").all():  # at most two abreast (study.css)
            assert img.evaluate("(i) => i.clientWidth") <= 0.42 * width + 1
        for el in page.locator("#images figure").all() + page.locator("#answers button").all():
            tb.in_view(page, el, width, height)  # everything at once, without scrolling
        if k == 1:
            tb.shot(page, "e2e-phone-hive.png")
        tb.answer_click(page, 0, tap=True)
    tb.reach_debrief(page, hive)
    assert [a.position for a in tb.stored(server, worker)[1]] == list(range(TRIALS))
    expect(page.locator("#code")).to_have_text(re.compile(r"\S"))
    watch.check()
