"""The participant's path as issue 12 set it: consent text from the config (required unless
a pilot), the worked example and practice from real items, the code before the optional
questionnaire, the code again for a finished worker, a legacy questionnaire stage."""

from __future__ import annotations

import pytest

from camstudy.errors import UserError
from study.db import transaction
from study.models import Item, Participant, PlanEntry
from study.settings import CONSENT_FIELDS, load_study_config
from study.setup import create_study
from tests.study.conftest import CD_TOML, CONSENT_TOML, write_config
from tests.study.test_api import answer_all, csrf, enroll, headers, signed, worker

PILOT = CD_TOML.replace('slug = "cd"', 'slug = "cd-pilot"').replace("[completion]", "pilot = true\n[completion]", 1)


def test_a_study_that_can_run_live_needs_every_consent_field(tmp_path):
    bare = CD_TOML.replace(CONSENT_TOML, "")
    with pytest.raises(UserError, match=r"consent\.researcher: missing.*pilot = true"):
        load_study_config(write_config(tmp_path, "bare", bare))
    for name in CONSENT_FIELDS:
        lines = [line for line in CD_TOML.splitlines() if not line.startswith(f"{name} =")]
        with pytest.raises(UserError, match=rf"consent\.{name}: missing"):
            load_study_config(write_config(tmp_path, "one-less", "\n".join(lines)))
    with pytest.raises(UserError, match=r"consent\.minutes: must be an integer from 1 to 600"):
        load_study_config(write_config(tmp_path, "zero", CD_TOML.replace("minutes = 5", "minutes = 0")))
    with pytest.raises(UserError, match="blank_ms"):
        load_study_config(
            write_config(tmp_path, "blank", CD_TOML.replace("[completion]", "blank_ms = -1\n[completion]", 1))
        )
    cfg = load_study_config(write_config(tmp_path, "pilot", PILOT.replace(CONSENT_TOML, "")))
    assert cfg.pilot and cfg.consent.missing() == list(CONSENT_FIELDS)


def test_the_consent_page_says_who_what_and_for_how_much(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    page = client.get(f"/s/{slug}/?PROLIFIC_PID=p-consent").get_data(as_text=True)
    for text in (
        "Dr Test Researcher",
        "Test University",
        "researcher@example.org",
        "TEST-ETHICS-1",
        "USD 1.00",
        "about 5 minutes",
        "Kept for the test run only.",
    ):
        assert text in page, text


def test_a_pilot_refuses_its_live_link_and_takes_its_test_links(app, tmp_path, stimuli_dir):
    with transaction(app.extensions["camstudy.sessions"]) as s:
        create_study(
            s, load_study_config(write_config(tmp_path, "pilot", PILOT.replace(CONSENT_TOML, ""))), stimuli_dir
        )
    c = app.test_client()
    r = c.get("/s/cd-pilot/?PROLIFIC_PID=p-1")
    assert r.status_code == 400 and "pilot" in r.get_data(as_text=True)
    query = "&".join(f"{k}={v}" for k, v in {"PROLIFIC_PID": "p-1", **signed(app, "cd-pilot", "sandbox")}.items())
    page = c.get(f"/s/cd-pilot/?{query}")
    assert page.status_code == 200 and "Pilot run" in page.get_data(as_text=True)


def test_the_worked_example_and_the_practice_are_real_items_of_the_method_outside_the_plan(app, client):
    for kind in ("class_discrimination", "trust"):
        slug = app.config["STUDIES"][kind]
        c = app.test_client()
        enroll(c, slug)
        plan = c.get(f"/api/s/{slug}/plan", headers=headers(c, app, slug)).get_json()
        ex, practice = plan["example"], plan["practice"]
        assert ex is not None and practice is not None and ex["images"] != practice["images"]
        assert ex["explanation"] and plan["question"].endswith("?")
        for url in ex["images"] + practice["images"]:
            assert c.get(url).status_code == 200
        with app.extensions["camstudy.sessions"]() as s:
            p = s.query(Participant).order_by(Participant.id.desc()).first()
            planned = {e.item_pk for e in s.query(PlanEntry).filter_by(participant_id=p.id)}
            methods = {
                it.method for it in s.query(Item).filter(Item.id.in_(planned), Item.is_attention_check.is_(False))
            }
            from study.models import Study
            from study.teaching import teaching_items

            study = s.query(Study).filter_by(slug=slug).one()
            taught = teaching_items(s, study, p.id)
        assert taught.example.id not in planned and taught.practice.id not in planned
        assert not taught.example.is_attention_check and not taught.practice.is_attention_check
        assert taught.example.method == taught.practice.method
        assert taught.example.method in methods  # the method the participant rates
        if kind == "class_discrimination":
            assert practice["correct"] in practice["options"] and practice["wrong"] != practice["right"]
            assert ex["answer"].endswith(taught.example.correct_answer)
        else:
            assert practice["correct"] is None and ex["object"] == taught.example.category
            assert taught.example.category in ex["explanation"]


def test_the_code_comes_first_and_the_questionnaire_is_optional(app, client):
    slug = app.config["STUDIES"]["trust"]
    enroll(client, slug)
    answer_all(client, app, slug)
    r = client.post(f"/api/s/{slug}/complete", headers=headers(client, app, slug), json={})
    assert r.get_json()["next_url"] == f"/s/{slug}/debrief"
    page = client.get(f"/s/{slug}/debrief").get_data(as_text=True)
    assert 'id="code"' in page and 'id="copy"' in page and "CAMSTUDY-" in page and 'name="strategy"' in page
    # An empty form stores nothing; the page stays the debrief, the code with it.
    r = client.post(f"/s/{slug}/questionnaire", data={"csrf_token": csrf(client, f"/s/{slug}/debrief")})
    assert r.status_code == 302
    with app.extensions["camstudy.sessions"]() as s:
        p = s.query(Participant).one()
        assert p.status in ("completed", "screened_out") and p.questionnaire is None
    token = csrf(client, f"/s/{slug}/debrief")
    client.post(f"/s/{slug}/questionnaire", data={"csrf_token": token, "comments": "first"})
    client.post(f"/s/{slug}/questionnaire", data={"csrf_token": token, "comments": "second"})  # stored once
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).one().questionnaire["comments"] == "first"
    assert 'name="strategy"' not in client.get(f"/s/{slug}/debrief").get_data(as_text=True)


def test_a_participant_left_at_the_old_questionnaire_stage_gets_the_debrief(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug)
    answer_all(client, app, slug)
    with transaction(app.extensions["camstudy.sessions"]) as s:
        s.query(Participant).one().stage = "questionnaire"  # as an older version left it
    r = client.get(f"/s/{slug}/questionnaire")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/s/{slug}/debrief")
    page = client.get(f"/s/{slug}/debrief").get_data(as_text=True)
    assert ("DONE123" in page) != ("SCREEN9" in page)
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).one().status in ("completed", "screened_out")


def test_a_finished_mturk_worker_reopening_the_hit_gets_the_code_and_a_submit_for_this_assignment(app, client):
    slug = app.config["STUDIES"]["trust"]
    who = {**worker(), "turkSubmitTo": "https://workersandbox.mturk.com"}
    who = {k: v for k, v in who.items() if k in ("workerId", "assignmentId", "hitId")}
    enroll(client, slug, who)
    answer_all(client, app, slug)
    client.post(f"/api/s/{slug}/complete", headers=headers(client, app, slug), json={})
    again = app.test_client()
    params = {**who, "assignmentId": "A-second", "turkSubmitTo": "https://www.mturk.com"}
    page = again.get(f"/s/{slug}/?" + "&".join(f"{k}={v}" for k, v in params.items()))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "You have finished this study" in html and "CAMSTUDY-" in html
    assert 'action="https://www.mturk.com/mturk/externalSubmit"' in html and 'value="A-second"' in html
    assert 'name="agree"' not in html and 'name="strategy"' not in html
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).count() == 1
