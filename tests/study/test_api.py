"""The participant flow through the HTTP API: enrollment, plan, answers, completion."""

from __future__ import annotations

import itertools
import re

import pytest

from study.models import Answer, Participant, PlanEntry
from study.tokens import issue

PROLIFIC = {"PROLIFIC_PID": "pid-1", "STUDY_ID": "st-1", "SESSION_ID": "se-1"}


def csrf(client, path):
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


_workers = itertools.count(1)


def worker(n: int | None = None) -> dict:
    """The ids a recruitment platform adds to the link, for a new worker (each study reads
    only its own platform's: the test studies run on Prolific and MTurk)."""
    n = next(_workers) if n is None else n
    return {
        "PROLIFIC_PID": f"w-{n}",
        "STUDY_ID": "st-1",
        "SESSION_ID": f"se-{n}",
        "workerId": f"W{n}",
        "assignmentId": f"A{n}",
        "hitId": "H1",
    }


def enroll(client, slug, params=None):
    params = worker() if params is None else params
    query = "&".join(f"{k}={v}" for k, v in params.items())
    token = csrf(client, f"/s/{slug}/?{query}")
    r = client.post(f"/s/{slug}/consent", data={"csrf_token": token, "agree": "yes", **params})
    assert r.status_code == 302, r.get_data(as_text=True)
    return r


def signed(app, slug, mode) -> dict:
    """The signed link parameters of a test mode (as the admin pages give them)."""
    from study.models import Study
    from study.recruitment import mode_link_params

    with app.extensions["camstudy.sessions"]() as s:
        secret = s.query(Study).filter_by(slug=slug).one().secret
    return mode_link_params(secret, slug, mode)


def token_of(client, app, slug):
    with client.session_transaction() as sess:
        return next(v for k, v in sess.items() if k.startswith("p"))


def headers(client, app, slug):
    return {"X-Participant-Token": token_of(client, app, slug)}


def answer_all(client, app, slug):
    h = headers(client, app, slug)
    plan = client.get(f"/api/s/{slug}/plan", headers=h).get_json()
    for t in plan["trials"]:
        value = t["options"][0] if plan["task"] == "class_discrimination" else 1
        r = client.post(
            f"/api/s/{slug}/answers", headers=h, json={"position": t["position"], "answer": value, "rt_ms": 850.5}
        )
        assert r.status_code == 200, r.get_json()
    return plan


def test_full_class_discrimination_flow(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug, PROLIFIC)
    h = headers(client, app, slug)
    plan = client.get(f"/api/s/{slug}/plan", headers=h).get_json()
    assert plan["total"] == 5 and len(plan["trials"]) == 5  # 4 trials + 1 attention check
    for t in plan["trials"]:
        assert len(t["options"]) == 2 and len(t["images"]) == 1
        assert re.fullmatch(rf"/s/{slug}/img/[\w-]+\.[\w-]{{27}}", t["images"][0])  # a signed token (study/blinding.py)
        assert client.get(t["images"][0]).status_code == 200
    assert plan["practice"] is None or plan["practice"]["correct"] in plan["practice"]["options"]
    assert plan["question"] and plan["blank_ms"] == 300
    answer_all(client, app, slug)
    r = client.post(f"/api/s/{slug}/complete", headers=h, json={})
    # The code comes with the last acknowledgement: the debrief, not the questionnaire, is next.
    assert r.status_code == 200 and r.get_json()["next_url"] == f"/s/{slug}/debrief"
    debrief = client.get(f"/s/{slug}/debrief").get_data(as_text=True)
    assert ("DONE123" in debrief) != ("SCREEN9" in debrief) and 'name="strategy"' in debrief
    assert 'data-redirect=""' in debrief  # no automatic return while the optional questionnaire is offered
    page = client.post(
        f"/s/{slug}/questionnaire", data={"csrf_token": csrf(client, f"/s/{slug}/debrief"), "strategy": "<b>looked</b>"}
    )
    assert page.status_code == 302 and page.headers["Location"].endswith(f"/s/{slug}/debrief?sent=1")
    debrief = client.get(f"/s/{slug}/debrief?sent=1").get_data(as_text=True)
    assert ("DONE123" in debrief) != ("SCREEN9" in debrief) and 'name="strategy"' not in debrief
    assert 'data-redirect="https://app.prolific.com/submissions/complete?cc=' in debrief  # now it returns by itself


def test_answers_are_idempotent_and_ordered(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug)
    h = headers(client, app, slug)
    plan = client.get(f"/api/s/{slug}/plan", headers=h).get_json()
    first = plan["trials"][0]
    body = {"position": 0, "answer": first["options"][0], "rt_ms": 700}
    a = client.post(f"/api/s/{slug}/answers", headers=h, json=body)
    b = client.post(f"/api/s/{slug}/answers", headers=h, json=body)
    other = client.post(f"/api/s/{slug}/answers", headers=h, json={**body, "answer": first["options"][1]})
    assert a.get_json() == b.get_json() == other.get_json()  # the first answer is kept
    skip = client.post(f"/api/s/{slug}/answers", headers=h, json={"position": 3, "answer": "x", "rt_ms": 700})
    assert skip.status_code == 409
    sessions = app.extensions["camstudy.sessions"]
    with sessions() as s:
        assert s.query(Answer).count() == 1


@pytest.mark.parametrize(
    "body, status",
    [
        ({"position": 0, "answer": "not-an-option", "rt_ms": 500}, 422),
        ({"position": 0, "answer": None, "rt_ms": 500}, 422),
        ({"position": 0, "rt_ms": -5, "answer": "x"}, 422),
        ({"position": 0, "rt_ms": 1e12, "answer": "x"}, 422),
        ({"position": "0", "rt_ms": 500, "answer": "x"}, 422),
        ({"position": 99, "rt_ms": 500, "answer": "x"}, 404),
        ({"position": 0, "rt_ms": 500, "answer": "x", "admin": True}, 400),
        ({"position": 0, "rt_ms": 500, "answer": "x", "shown_at": "yesterday"}, 422),
    ],
)
def test_bad_answers_are_rejected_without_writing(app, client, body, status):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug)
    r = client.post(f"/api/s/{slug}/answers", headers=headers(client, app, slug), json=body)
    assert r.status_code == status and "error" in r.get_json()
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Answer).count() == 0


def test_tokens_protect_other_participants(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug)
    assert client.get(f"/api/s/{slug}/plan", headers={"X-Participant-Token": "forged"}).status_code in (200, 403)
    other = app.test_client()
    assert other.get(f"/api/s/{slug}/plan").status_code == 403
    assert (
        other.get(f"/api/s/{slug}/plan", headers={"X-Participant-Token": issue("wrong-secret", 1, 1)}).status_code
        == 403
    )
    trust = app.config["STUDIES"]["trust"]
    assert client.get(f"/api/s/{trust}/plan", headers=headers(client, app, slug)).status_code == 403
    assert other.post("/api/s/nope/answers", json={}).status_code == 404
    big = client.post(
        f"/api/s/{slug}/answers",
        data="x" * 20000,
        headers={**headers(client, app, slug), "Content-Type": "application/json"},
    )
    assert big.status_code == 413


def test_malformed_body(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug)
    h = {**headers(client, app, slug), "Content-Type": "application/json"}
    for data in ("{", "[1, 2]", '"text"'):
        assert client.post(f"/api/s/{slug}/answers", headers=h, data=data).status_code == 400


def test_trust_scores_are_resigned_for_the_stronger_model(app, client):
    slug = app.config["STUDIES"]["trust"]
    enroll(
        client,
        slug,
        {
            "workerId": "W1",
            "assignmentId": "A1",
            "hitId": "H1",
            "turkSubmitTo": "https://workersandbox.mturk.com",
            **signed(app, slug, "sandbox"),
        },
    )
    answer_all(client, app, slug)
    with app.extensions["camstudy.sessions"]() as s:
        p = s.query(Participant).one()
        assert p.mode == "sandbox" and p.platform == "mturk"
        scores = {a.position: a.score_stronger for a in s.query(Answer)}
        layouts = {e.position: e.layout for e in p.plan}
    for pos, score in scores.items():
        if score is not None:
            assert score == (1 if layouts[pos]["model_1"] == "stronger" else -1)
    h = headers(client, app, slug)
    assert client.post(f"/api/s/{slug}/complete", headers=h, json={}).status_code == 200
    # Counterbalancing: the stronger model is "Model 1" on some model-vs-model trials and
    # not on others. One participant's few such trials can all fall one way (the flips are
    # balanced over all their trials, photos and checks included), so look at nine.
    for i in range(8):
        enroll(app.test_client(), slug, {"workerId": f"BAL{i}", "assignmentId": f"BA{i}", "hitId": "H1"})
    with app.extensions["camstudy.sessions"]() as s:
        firsts = [e.layout["model_1"] for e in s.query(PlanEntry) if e.layout["stimuli"][0] != e.layout["stimuli"][1]]
    assert len(firsts) >= 9 and set(firsts) == {"stronger", "weaker"}


def test_completion_waits_for_every_answer(app, client):
    slug = app.config["STUDIES"]["trust"]
    enroll(client, slug)
    r = client.post(f"/api/s/{slug}/complete", headers=headers(client, app, slug), json={})
    assert r.status_code == 409


def test_foreign_turk_submit_host_is_refused(app, client):
    slug = app.config["STUDIES"]["trust"]
    r = client.get(f"/s/{slug}/?workerId=W&assignmentId=A&hitId=H&turkSubmitTo=https://evil.example")
    assert r.status_code == 400


def test_mturk_preview_enrolls_no_one(app, client):
    slug = app.config["STUDIES"]["trust"]
    page = client.get(f"/s/{slug}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H")
    assert page.status_code == 200 and "Preview" in page.get_data(as_text=True)
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).count() == 0


def test_one_participation_per_worker(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug, PROLIFIC)
    answer_all(client, app, slug)
    h = headers(client, app, slug)
    client.post(f"/api/s/{slug}/complete", headers=h, json={})
    client.post(f"/s/{slug}/questionnaire", data={"csrf_token": csrf(client, f"/s/{slug}/debrief")})
    again = app.test_client()
    token = csrf(again, f"/s/{slug}/?PROLIFIC_PID=someone-else")
    r = again.post(f"/s/{slug}/consent", data={"csrf_token": token, "agree": "yes", **PROLIFIC})
    # No second participation; the worker who finished gets their code again, never stranded.
    assert r.status_code == 200 and "You have finished this study" in r.get_data(as_text=True)
    assert ("DONE123" in r.get_data(as_text=True)) != ("SCREEN9" in r.get_data(as_text=True))
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).count() == 1
    # Not in a test mode either, even with a genuinely signed debug link.
    r = again.post(
        f"/s/{slug}/consent", data={"csrf_token": token, "agree": "yes", **signed(app, slug, "debug"), **PROLIFIC}
    )
    assert r.status_code == 409


def test_reload_resumes_the_same_plan(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug, PROLIFIC)
    h = headers(client, app, slug)
    before = client.get(f"/api/s/{slug}/plan", headers=h).get_json()
    t = before["trials"][0]
    client.post(f"/api/s/{slug}/answers", headers=h, json={"position": 0, "answer": t["options"][0], "rt_ms": 600})
    # A new browser with the same Prolific id resumes the same participant and plan.
    other = app.test_client()
    enroll(other, slug, PROLIFIC)
    after = other.get(f"/api/s/{slug}/plan", headers=headers(other, app, slug)).get_json()
    assert after["trials"] == before["trials"] and after["next"] == 1


def test_security_headers(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    r = client.get(f"/s/{slug}/")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert client.get("/console").status_code == 404


def test_no_answer_after_completion(app, client):
    slug = app.config["STUDIES"]["trust"]
    enroll(client, slug)
    answer_all(client, app, slug)
    h = headers(client, app, slug)
    client.post(f"/api/s/{slug}/complete", headers=h, json={})
    client.post(f"/s/{slug}/questionnaire", data={"csrf_token": csrf(client, f"/s/{slug}/debrief")})
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Participant).one().status in ("completed", "screened_out")
        n = s.query(Answer).count()
    late = client.post(f"/api/s/{slug}/answers", headers=h, json={"position": n, "answer": 0, "rt_ms": 500})
    assert late.status_code in (404, 409)
    with app.extensions["camstudy.sessions"]() as s:
        assert s.query(Answer).count() == n


def test_enrollment_is_rate_limited(app):
    app.config["ENROLL_RATE_PER_MINUTE"] = 2
    slug = app.config["STUDIES"]["class_discrimination"]
    codes = []
    for _ in range(3):
        c = app.test_client()
        who = worker()
        token = csrf(c, f"/s/{slug}/?PROLIFIC_PID={who['PROLIFIC_PID']}")
        codes.append(
            c.post(
                f"/s/{slug}/consent",
                data={"csrf_token": token, "agree": "yes", **who},
                environ_base={"REMOTE_ADDR": "127.0.0.9"},
            ).status_code
        )
    assert codes == [302, 302, 429]


def test_consent_needs_the_form_token(app, client):
    slug = app.config["STUDIES"]["class_discrimination"]
    client.get(f"/s/{slug}/")
    assert client.post(f"/s/{slug}/consent", data={"agree": "yes"}).status_code == 400
    assert client.post(f"/s/{slug}/consent", data={"agree": "yes", "csrf_token": "forged"}).status_code == 400


@pytest.mark.parametrize(
    "body, status",
    [
        ({"kind": "blur"}, 204),
        ({"kind": "focus", "position": 2}, 204),
        ({"kind": "hack"}, 400),
        ({"kind": "blur", "position": -1}, 400),
        ({"kind": "blur", "detail": "x"}, 400),
        ([], 400),
    ],
)
def test_events(app, client, body, status):
    slug = app.config["STUDIES"]["class_discrimination"]
    enroll(client, slug)
    r = client.post(f"/api/s/{slug}/events", headers=headers(client, app, slug), json=body)
    assert r.status_code == status
