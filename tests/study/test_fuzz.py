"""Hostile input, property-based (hypothesis): every JSON endpoint, page and form of the app.

The inputs: random JSON of every type, missing and extra fields, huge bodies (1-5 MB),
deeply nested bodies (up to 10,000 levels), odd unicode (lone surrogates, NUL, controls,
bidi marks), SQL and HTML injection strings, and forged participant tokens (random text,
tokens signed with the wrong key, tokens of another participant or of another study).

The properties:

- no response is a 5xx;
- a rejected request (4xx) leaves every table as it was (a snapshot of the study, stimulus,
  item, participant, plan_entry, answer, event and admin_user rows before and after);
- a participant's token reads and writes that participant's rows only, and only on its
  own study; an admin route writes nothing, and without a login it serves nothing.

Every test runs on SQLite and, where the ``db_url`` fixture provides it, on PostgreSQL
(with a third of the examples, so the run stays short there too). Each test builds its
``@given`` function inside itself, over the fixtures' app and participants, so no
function-scoped fixture is shared across examples behind hypothesis's back: the state
that examples do share (the database) is what the properties check. The hypothesis
example database is off: nothing is written into the working tree. The inputs that the
fuzzing once turned into a 500 are pinned in ``test_known_hostile_inputs`` at the end.
"""

from __future__ import annotations

import io
import json
import os
import re
from urllib.parse import quote

import markupsafe
import pandas as pd
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from sqlalchemy import null as sql_null
from sqlalchemy import text
from werkzeug.datastructures import MultiDict
from werkzeug.security import generate_password_hash
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from study.api import EVENT_KINDS
from study.db import transaction
from study.export import export_bytes, export_rows, unneutralise
from study.models import AdminUser, Participant, Study
from study.participant import MAX_ID
from study.recruitment import worker_key
from study.tokens import SALT, issue
from tests.study.test_admin import PASSWORD, login
from tests.study.test_api import csrf, enroll

TABLES = ("study", "stimulus", "item", "participant", "plan_entry", "answer", "event", "admin_user")
PG_SHARE = 3  # PostgreSQL runs a third of the examples
DERANDOMIZE = os.environ.get("CAMSTUDY_FUZZ_DERANDOMIZE") == "1"


def fuzz(db_url: str, n: int):
    """Bounded hypothesis settings: ``n`` examples on SQLite, fewer on PostgreSQL."""
    if db_url.startswith("postgresql"):
        n = max(8, n // PG_SHARE)
    # CI (CAMSTUDY_FUZZ_DERANDOMIZE=1) runs a fixed set of examples, so a landing cannot
    # hinge on a lucky draw; local runs draw afresh each time and keep finding new inputs.
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        print_blob=True,
        derandomize=DERANDOMIZE,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# --- strategies ------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "null",
    "NaN",
    "-0",
    "1e309",
    "0x10",
    "true",
    "' OR '1'='1",
    "'; DROP TABLE answer; --",
    '" OR ""="',
    "1; DELETE FROM participant",
    "%' --",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "{{7*7}}",
    "${jndi:ldap://x}",
    "javascript:alert(1)",
    "../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ufeff",
    "\u202eevil",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃ 漢字",
    "\r\nSet-Cookie: x=1",
    "\\",
    "%00",
    "%",
    "A" * 5000,
]
CHARS = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("\x00<>'\";&%\\/\r\n\t="))
TEXT = st.one_of(st.sampled_from(NASTY), st.text(CHARS, max_size=24), st.text(CHARS, min_size=190, max_size=260))
INTS = st.one_of(
    st.integers(-3, 8),
    st.integers(),
    st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -1]),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), TEXT)


def _containers(children):
    return st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)


JSON = st.recursive(SCALARS, _containers, max_leaves=10)
EXTRA = st.dictionaries(TEXT, JSON, max_size=2)


def _answer_like(draw_answer):
    """Answers, mostly well-formed but for one or two fields, so that the checks past the
    first one are reached too."""
    shown_at = st.one_of(
        st.sampled_from(
            [
                "2024-05-01T12:00:00Z",
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
                "2024-13-01",
                "0001-01-01",
                "2024-05-01T12:00:00+23:59",
            ]
        ),
        TEXT,
        JSON,
    )
    fields = st.fixed_dictionaries(
        {
            "position": st.one_of(st.integers(0, 6), INTS, JSON),
            "answer": st.one_of(draw_answer, JSON),
            "rt_ms": st.one_of(st.floats(0.001, 3.6e6), st.integers(1, 3_600_000), st.floats(), JSON),
        },
        optional={"shown_at": shown_at, "client_time": JSON},
    )
    some_missing = fields.flatmap(
        lambda d: st.sets(st.sampled_from(sorted(d))).map(lambda drop: {k: v for k, v in d.items() if k not in drop})
    )
    return st.one_of(fields, some_missing, st.builds(lambda a, b: {**a, **b}, fields, EXTRA))


EVENTS = st.fixed_dictionaries(
    {"kind": st.one_of(st.sampled_from(EVENT_KINDS), TEXT, JSON)},
    optional={
        "position": st.one_of(INTS, JSON),
        "detail": st.one_of(st.dictionaries(TEXT, JSON, max_size=4), JSON),
    },
)


@st.composite
def bodies(draw, answers):
    """``(bytes, content type)`` of a request body: JSON, raw bytes, huge or deeply nested."""
    kind = draw(st.sampled_from(["answer", "answer", "event", "event", "json", "raw", "huge", "deep", "none"]))
    ctype = draw(
        st.sampled_from(
            ["application/json"] * 4
            + ["application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", None]
        )
    )
    if kind == "answer":
        data = json.dumps(draw(_answer_like(answers))).encode()
    elif kind == "event":
        data = json.dumps(draw(st.one_of(EVENTS, st.builds(lambda a, b: {**a, **b}, EVENTS, EXTRA)))).encode()
    elif kind == "json":
        data = json.dumps(draw(JSON)).encode()
    elif kind == "raw":
        data = draw(st.binary(max_size=200))
    elif kind == "huge":  # 1-5 MB in one string
        size = draw(st.integers(1_000_000, 5_000_000))
        filler = draw(st.sampled_from([b"x", b"\\u0000", b"1,"]))
        data = b'{"detail": {"k": "' + filler * (size // len(filler)) + b'"}}'
    elif kind == "deep":  # nesting deeper than any parser's recursion limit
        depth = draw(st.one_of(st.sampled_from([1_000, 2_000, 3_000, 5_000, 8_000, 10_000]), st.integers(500, 10_000)))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"detail":', b"}")]))
        data = opener * depth + b"1" + closer * depth
    else:
        data = b""
    return data, ctype


def encode_pairs(pairs: list[tuple[str, str]]) -> str:
    """A query string or form body; lone surrogates go out as the (invalid UTF-8) bytes they
    stand for, as a hostile client could send them."""
    enc = lambda s: quote(s.encode("utf-8", "surrogatepass"), safe="")  # noqa: E731
    return "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs)


def received(pairs: list[tuple[str, str]]) -> MultiDict:
    """The form the app reads from ``pairs`` sent through :func:`encode_pairs` (werkzeug's
    own decoding: invalid UTF-8 is kept as its percent escapes)."""
    environ = EnvironBuilder(
        method="POST", data=encode_pairs(pairs), content_type="application/x-www-form-urlencoded"
    ).get_environ()
    return Request(environ).form


def path_part(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


RECRUITMENT = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId", "turkSubmitTo", "mode")
PARAMS = st.lists(st.tuples(st.one_of(st.sampled_from(RECRUITMENT), TEXT), TEXT), max_size=5)


# --- the database and the people in it -------------------------------------------------------


def snapshot(app) -> dict:
    """Every row of every table, by (table, id)."""
    with app.extensions["camstudy.engine"].connect() as conn:
        return {(t, r.id): r for t in TABLES for r in conn.execute(text(f"SELECT * FROM {t}"))}


def changes(before: dict, after: dict) -> dict:
    return {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def owners(changed: dict) -> set:
    """The participants whose rows changed (a study or admin row counts as ``"global"``)."""
    out = set()
    for (table, key), (old, new) in changed.items():
        row = new if new is not None else old
        if table == "participant":
            out.add(key)
        elif table in ("plan_entry", "answer", "event"):
            out.add(row._mapping["participant_id"])
        else:
            out.add(f"global:{table}")
    return out


def participant_token(client) -> str:
    with client.session_transaction() as sess:
        return next(v for k, v in sess.items() if re.fullmatch(r"p\d+", k))


def forged_cookie(data: dict, key: str = "wrong-key") -> str:
    """A Flask session cookie holding ``data``, signed with ``key``."""
    other = Flask("forger")
    other.secret_key = key
    return other.session_interface.get_signing_serializer(other).dumps(data)


@pytest.fixture
def admin(app) -> str:
    with transaction(app.extensions["camstudy.sessions"]) as s:
        s.add(AdminUser(name="ada", password_hash=generate_password_hash(PASSWORD)))
    return "ada"


@pytest.fixture
def world(app):
    """Three participants: A and B in the class discrimination study (A answered one trial),
    C in the trust study; their tokens, plans and ids, and tokens that must be refused."""
    cd, trust = app.config["STUDIES"]["class_discrimination"], app.config["STUDIES"]["trust"]
    app.config["ENROLL_RATE_PER_MINUTE"] = 10**6
    people = {}
    for name, slug in (("A", cd), ("B", cd), ("C", trust)):
        c = app.test_client()
        enroll(c, slug, {"PROLIFIC_PID": f"worker-{name}", "workerId": f"worker-{name}", "assignmentId": f"A-{name}"})
        token = participant_token(c)
        plan = c.get(f"/api/s/{slug}/plan", headers={"X-Participant-Token": token}).get_json()
        pid = URLSafeSerializer("test-secret", salt=SALT).loads(token)["p"]
        people[name] = {"slug": slug, "token": token, "plan": plan, "pid": pid, "client": c}
    first = people["A"]["plan"]["trials"][0]
    r = people["A"]["client"].post(
        f"/api/s/{cd}/answers",
        headers={"X-Participant-Token": people["A"]["token"]},
        json={"position": 0, "answer": first["options"][0], "rt_ms": 640},
    )
    assert r.status_code == 200
    with app.extensions["camstudy.sessions"]() as s:
        ids = {st_.slug: st_.id for st_ in s.query(Study)}
    a = people["A"]
    forged = {
        "random": "not-a-token",
        "empty": "",
        "long": "x" * 600,
        "wrong key": issue("wrong-secret", a["pid"], ids[cd]),
        "wrong key, other study": issue("wrong-secret", a["pid"], ids[trust]),
        "tampered": a["token"][:-2] + ("AA" if not a["token"].endswith("AA") else "BB"),
        "bad payload": URLSafeSerializer("test-secret", salt=SALT).dumps({"p": str(a["pid"]), "s": ids[cd]}),
        "list payload": URLSafeSerializer("test-secret", salt=SALT).dumps([a["pid"], ids[cd]]),
        "other salt": URLSafeSerializer("test-secret", salt="other").dumps({"p": a["pid"], "s": ids[cd]}),
        "nul": "\x00" + a["token"],
    }
    return {"people": people, "forged": forged, "cd": cd, "trust": trust, "ids": ids}


def options_of(world) -> list:
    out = [-2, -1, 0, 1, 2]
    for p in world["people"].values():
        for t in p["plan"]["trials"]:
            out += t.get("options", [])
    return out


# --- the API ---------------------------------------------------------------------------------

API_ROUTES = [("POST", "answers"), ("POST", "events"), ("POST", "complete"), ("GET", "plan")]


def header_value(token: str) -> str:
    """``token`` as a client could send it in a header (latin-1, one line)."""
    try:
        token.encode("latin-1")
    except UnicodeEncodeError:  # send its UTF-8 bytes
        token = token.encode("utf-8", "surrogatepass").decode("latin-1")
    return token.replace("\n", " ").replace("\r", " ")


def api_call(app, client, method, name, slug, token, body):
    """One API request; returns (response, the rows it changed)."""
    data, ctype = body
    hdrs = {"Content-Type": ctype} if ctype else {}
    if token is not None:
        hdrs["X-Participant-Token"] = header_value(token)
    before = snapshot(app)
    r = client.open(f"/api/s/{path_part(slug)}/{name}", method=method, data=data, headers=hdrs)
    changed = changes(before, snapshot(app))
    assert r.status_code < 500, (r.status_code, r.get_data()[:300])
    if r.status_code >= 400:
        assert not changed, (r.status_code, r.get_data()[:300])
        assert r.is_json and "error" in r.get_json()
    return r, changed


def test_api_bodies_fuzz(app, db_url, world):
    """Every API route with a genuine token and a hostile body: never a 5xx, a refusal
    writes nothing, and what is accepted touches the token's own participant only (and a
    plan read is that participant's plan)."""
    people = world["people"]
    client = app.test_client()

    @fuzz(db_url, 200)
    @given(
        route=st.sampled_from(API_ROUTES + [("POST", "answers")] * 2),
        who=st.sampled_from(["A", "A", "B", "C"]),
        body=bodies(st.sampled_from(options_of(world))),
    )
    def check(route, who, body):
        method, name = route
        owner = people[who]
        r, changed = api_call(app, client, method, name, owner["slug"], owner["token"], body)
        if r.status_code < 400:
            assert r.status_code < 300 and owners(changed) <= {owner["pid"]}
        if name == "plan" and r.status_code < 400:  # (a body over the size limit is refused, 413)
            got = r.get_json()
            assert got["trials"] == owner["plan"]["trials"] and got["study"] == owner["slug"]

    check()


def test_api_tokens_fuzz(app, db_url, world):
    """Every API route with a token that is not for this study (another study's, a forged
    one, random text, none) or a slug that is no study: refused, and nothing written."""
    people, forged = world["people"], world["forged"]
    slugs = {p["slug"] for p in people.values()}
    token = st.one_of(st.sampled_from(["A", "C", "none", *forged]), TEXT.map(lambda t: ("text", t)))
    slug = st.one_of(st.sampled_from([world["cd"], world["trust"], "nope", "x" * 65, "cd' OR '1'='1"]), TEXT)
    client = app.test_client()

    @fuzz(db_url, 150)
    @given(
        route=st.sampled_from(API_ROUTES + [("PUT", "answers"), ("DELETE", "plan"), ("PATCH", "events")]),
        who=token,
        slug=slug,
        body=bodies(st.sampled_from(options_of(world))),
    )
    def check(route, who, slug, body):
        method, name = route
        owner = people.get(who) if isinstance(who, str) else None
        if owner is not None and owner["slug"] == slug and method in ("GET", "POST"):
            slug = world["trust"] if slug == world["cd"] else world["cd"]  # the other study
        tok = who[1] if isinstance(who, tuple) else (owner["token"] if owner else forged.get(who))
        r, changed = api_call(app, client, method, name, slug, tok, body)
        assert r.status_code >= 300 and not changed, (r.status_code, r.get_data()[:300])  # 3xx: "//" merged
        if slug in slugs and method in ("GET", "POST"):
            assert r.status_code in (403, 413)  # 413: a body over the limit is refused unread

    check()


def test_tokens_never_cross_participants_or_studies(app, db_url, world):
    """The forged and foreign tokens of the fixture, on every route, as header and cookie."""
    people, forged, ids = world["people"], world["forged"], world["ids"]
    cd, trust = world["cd"], world["trust"]
    a, c = people["A"], people["C"]
    cases = [(cd, tok) for tok in forged.values()] + [(trust, a["token"]), (cd, c["token"])]
    for slug, token in cases:
        for method, name, body in (
            ("GET", "plan", None),
            ("POST", "answers", {"position": 1, "answer": 0, "rt_ms": 500}),
            ("POST", "events", {"kind": "blur"}),
            ("POST", "complete", {}),
        ):
            before = snapshot(app)
            sent = token.encode("utf-8").decode("latin-1")
            r = app.test_client().open(
                f"/api/s/{slug}/{name}", method=method, json=body, headers={"X-Participant-Token": sent}
            )
            assert r.status_code == 403 and not changes(before, snapshot(app)), (slug, token, name)
    # The same tokens in a session cookie, signed with the app's key or a wrong one: the
    # pages treat the visitor as a stranger and send them to the consent page.
    for slug, token in cases:
        for key in ("test-secret", "wrong-key"):
            browser = app.test_client()
            browser.set_cookie("camstudy", forged_cookie({f"p{ids[slug]}": token}, key))
            for stage in ("task", "questionnaire", "debrief"):
                r = browser.get(f"/s/{slug}/{stage}")
                assert r.status_code == 302 and r.headers["Location"] == f"/s/{slug}/", (slug, token, stage)
            assert browser.get(f"/api/s/{slug}/plan").status_code == 403
    # A's token, as header, while B's cookie is set: the header wins, and it is A's plan.
    b = people["B"]["client"]
    r = b.get(f"/api/s/{cd}/plan", headers={"X-Participant-Token": a["token"]})
    assert r.get_json()["trials"] == a["plan"]["trials"] != people["B"]["plan"]["trials"]


# --- the participant's pages -----------------------------------------------------------------


def test_pages_fuzz(app, db_url, world):
    """GET pages and images with random slugs, query strings and cookies: never a 5xx, and
    a GET writes nothing."""
    people, ids = world["people"], world["ids"]
    cookies = st.sampled_from(["none", "A", "C", "forged", "foreign"])

    @fuzz(db_url, 150)
    @given(
        slug=st.one_of(st.sampled_from([world["cd"], world["trust"]]), TEXT),
        page=st.one_of(
            st.sampled_from(
                [
                    "",
                    "task",
                    "questionnaire",
                    "debrief",
                    "consent",
                    "img/1",
                    "img/0",
                    "img/-1",
                    f"img/{2**31}",
                    f"img/{2**64}",
                    "img/99999999999999999999999999",
                    "img/1.5",
                    "static/../../etc/passwd",
                ]
            ),
            TEXT.map(path_part),
        ),
        params=PARAMS,
        cookie=cookies,
        method=st.sampled_from(["GET", "GET", "HEAD", "DELETE"]),
    )
    def check(slug, page, params, cookie, method):
        browser = app.test_client()
        if cookie in ("A", "C"):
            p = people[cookie]
            browser.set_cookie("camstudy", forged_cookie({f"p{ids[p['slug']]}": p["token"]}, "test-secret"))
        elif cookie == "forged":
            browser.set_cookie("camstudy", forged_cookie({f"p{ids[world['cd']]}": people["A"]["token"]}))
        elif cookie == "foreign":  # the app's own key, but a token of another study
            browser.set_cookie("camstudy", forged_cookie({f"p{ids[world['cd']]}": people["C"]["token"]}, "test-secret"))
        before = snapshot(app)
        query = encode_pairs(params)
        r = browser.open(f"/s/{path_part(slug)}/{page}" + (f"?{query}" if query else ""), method=method)
        assert r.status_code < 500, (r.status_code, r.get_data()[:300])
        assert not changes(before, snapshot(app))
        r.close()

    check()


@st.composite
def consent_forms(draw, token):
    pairs = []
    choice = draw(st.sampled_from(["valid", "valid", "valid", "missing", "forged", "empty"]))
    if choice == "valid":
        pairs.append(("csrf_token", token))
    elif choice == "forged":
        pairs.append(("csrf_token", draw(TEXT)))
    elif choice == "empty":
        pairs.append(("csrf_token", ""))
    agree = draw(st.one_of(st.just("yes"), st.just("yes"), TEXT, st.none()))
    if agree is not None:
        pairs.append(("agree", agree))
    pairs += draw(PARAMS)
    return pairs


def test_consent_fuzz(app, db_url, world):
    """The consent form with random recruitment ids: never a 5xx; a refusal writes nothing;
    an enrollment stores the ids exactly as sent (truncated to the column)."""
    browser = app.test_client()
    token = csrf(browser, f"/s/{world['cd']}/?PROLIFIC_PID=x")

    @fuzz(db_url, 120)
    @given(
        slug=st.one_of(st.sampled_from([world["cd"], world["trust"]]), TEXT),
        form=consent_forms(token),
        agent=st.one_of(st.none(), TEXT),
    )
    def check(slug, form, agent):
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        if agent is not None:
            hdrs["User-Agent"] = (
                agent.encode("utf-8", "surrogatepass").decode("latin-1").replace("\r", "").replace("\n", "")
            )
        before = snapshot(app)
        r = browser.post(f"/s/{path_part(slug)}/consent", data=encode_pairs(form), headers=hdrs)
        after = snapshot(app)
        changed = changes(before, after)
        assert r.status_code < 500, (r.status_code, r.get_data()[:300])
        if r.status_code != 302:
            assert not changed, (r.status_code, r.get_data()[:300])
            return
        # Accepted: a new participant (or the same worker resumed) and the study's counter.
        new = [new for (t, _), (old, new) in changed.items() if t == "participant"]
        assert {t for t, _ in changed} <= {"study", "participant", "plan_entry"}
        assert all(old is None for (t, _), (old, _new) in changed.items() if t in ("participant", "plan_entry"))
        values = received(form)
        if any("\x00" in k or "\x00" in v for k, vs in values.lists() for v in vs):
            raise AssertionError("a NUL was accepted")
        if new:
            (p,) = new
            # Each study reads its own platform's ids only (cd: Prolific, trust: MTurk).
            prolific = slug == world["cd"]
            worker = values.get("PROLIFIC_PID" if prolific else "workerId") or None
            assert p.worker_id == (worker[:MAX_ID] if worker else None)
            assert p.worker_key == worker_key(p.platform, p.worker_id)
            assert p.worker_key or values.get("mode")  # a live link needs the platform's worker id
            if prolific and p.worker_id:
                assert p.platform_study_id == (values["STUDY_ID"][:MAX_ID] if values.get("STUDY_ID") else None)

    check()


def test_questionnaire_fuzz(app, db_url, world):
    """The questionnaire form with random answers and tokens: never a 5xx, a refusal writes
    nothing, and the answers are stored as sent (to 2000 characters each)."""
    cd = world["cd"]
    q = world["people"]["B"]
    h = {"X-Participant-Token": q["token"]}
    for i, t in enumerate(q["plan"]["trials"]):
        r = q["client"].post(
            f"/api/s/{cd}/answers", headers=h, json={"position": i, "answer": t["options"][0], "rt_ms": 700}
        )
        assert r.status_code == 200
    assert q["client"].post(f"/api/s/{cd}/complete", headers=h, json={}).status_code == 200
    browser = q["client"]
    token = csrf(browser, f"/s/{cd}/debrief")
    sessions = app.extensions["camstudy.sessions"]
    fields = st.lists(
        st.tuples(st.one_of(st.sampled_from(["strategy", "difficulty", "comments", "csrf_token"]), TEXT), TEXT),
        max_size=6,
    )

    @fuzz(db_url, 90)
    @given(csrf_choice=st.sampled_from(["valid", "valid", "missing", "forged"]), pairs=fields)
    def check(csrf_choice, pairs):
        with transaction(sessions) as s:  # back to an unanswered questionnaire
            s.get(Participant, q["pid"]).questionnaire = sql_null()  # SQL NULL, not JSON null
        form = [("csrf_token", token)] if csrf_choice == "valid" else []
        if csrf_choice == "forged":
            form = [("csrf_token", token[:-1] + "!")]
        form += [(k, v) for k, v in pairs if k != "csrf_token"]
        before = snapshot(app)
        r = browser.post(
            f"/s/{cd}/questionnaire",
            data=encode_pairs(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        changed = changes(before, snapshot(app))
        assert r.status_code < 500, (r.status_code, r.get_data()[:300])
        if r.status_code >= 400:
            assert not changed
            return
        assert r.status_code == 302
        values = received(form)
        sent = {k: values.get(k, "")[:2000] for k in ("strategy", "difficulty", "comments")}
        with sessions() as s:
            stored = s.get(Participant, q["pid"]).questionnaire
        # An empty form stores nothing (the questionnaire is optional); any answer is stored as sent.
        assert stored == (sent if any(sent.values()) else None)
        assert owners(changed) == ({q["pid"]} if any(sent.values()) else set())

    check()


# --- the admin area --------------------------------------------------------------------------


def test_admin_fuzz(app, db_url, world, admin):
    """Login, logout, the pages and the exports with random input, logged in or not: never
    a 5xx, the database never changes, and without a login nothing is served."""
    app.config["ADMIN_LOGIN_MAX_FAILURES"] = 10**6  # exercise the password check, not only the 429
    anon, staff = app.test_client(), app.test_client()
    assert login(staff).status_code == 302
    tokens = {}
    for name, c in (("anon", anon), ("staff", staff)):
        html = c.get("/admin/login" if name == "anon" else "/admin/").get_data(as_text=True)
        tokens[name] = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    slugs = st.one_of(st.sampled_from([world["cd"], world["trust"], "nope"]), TEXT)
    requests = st.one_of(
        st.tuples(
            st.just("login"),
            st.lists(
                st.tuples(st.one_of(st.sampled_from(["csrf_token", "username", "password", "next"]), TEXT), TEXT),
                max_size=5,
            ),
            st.sampled_from(["valid", "missing", "forged"]),
        ),
        st.tuples(st.just("login-get"), TEXT),
        st.tuples(st.just("logout"), TEXT, st.sampled_from(["missing", "forged", "other"])),
        st.tuples(st.just("study"), slugs),
        st.tuples(
            st.just("export"),
            slugs,
            st.sampled_from(["csv", "parquet", "xlsx"]),
            st.one_of(st.sampled_from(["live", "all", "debug"]), TEXT),
        ),
        st.tuples(st.just("path"), TEXT, st.sampled_from(["GET", "POST", "PUT", "DELETE"])),
    )

    @fuzz(db_url, 150)
    @given(who=st.sampled_from(["anon", "staff"]), req=requests)
    def check(who, req):
        c = anon if who == "anon" else staff
        form_hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        before = snapshot(app)
        kind = req[0]
        if kind == "login":
            pairs = [(k, v) for k, v in req[1] if k != "csrf_token"]
            if req[2] == "valid":
                pairs.insert(0, ("csrf_token", tokens[who]))
            elif req[2] == "forged":
                pairs.insert(0, ("csrf_token", tokens["staff" if who == "anon" else "anon"]))
            r = c.post("/admin/login", data=encode_pairs(pairs), headers=form_hdrs)
            assert r.status_code in (400, 401, 413), (r.status_code, r.get_data()[:300])  # never a login
        elif kind == "login-get":
            r = c.get("/admin/login?" + encode_pairs([("next", req[1])]))
            if r.status_code in (301, 302, 303, 307, 308):
                assert r.headers["Location"].startswith("/admin/") and "\n" not in r.headers["Location"]
        elif kind == "logout":
            other = tokens["staff" if who == "anon" else "anon"]  # a real token, of another session
            pairs = [("csrf_token", {"missing": "", "forged": req[1], "other": other}[req[2]])]
            r = c.post("/admin/logout", data=encode_pairs(pairs), headers=form_hdrs)
            assert r.status_code == 400
        elif kind == "study":
            r = c.get(f"/admin/s/{path_part(req[1])}")
            if who == "anon":
                assert r.status_code in (302, 308, 400, 404)  # 308: "//" merged; 400: a NUL in the slug
                assert r.status_code != 302 or r.headers["Location"].startswith("/admin/login")
        elif kind == "export":
            r = c.get(f"/admin/s/{path_part(req[1])}/export.{req[2]}?" + encode_pairs([("mode", req[3])]))
            if who == "anon":
                assert r.status_code in (308, 400, 401, 404)
        else:
            r = c.open(f"/admin/{path_part(req[1])}", method=req[2])
        assert r.status_code < 500, (kind, r.status_code, r.get_data()[:300])
        assert not changes(before, snapshot(app))
        if who == "anon" and r.status_code == 200:  # a stranger sees the login form and nothing else
            assert r.request.path == "/admin/login", (kind, r.request.path)
        r.close()

    check()
    assert staff.get("/admin/").status_code == 200  # still logged in: no forged logout got through
    assert anon.get("/admin/").status_code == 302


# --- every route -----------------------------------------------------------------------------


def _fill(rule, draw):
    """A URL for ``rule`` with hostile values for its variables."""
    values = {}
    for name, conv in rule._converters.items():
        kind = type(conv).__name__
        if kind == "IntegerConverter":
            values[name] = str(draw(st.one_of(INTS.filter(lambda n: n >= 0), st.just(2**80))))
        elif kind == "AnyConverter":
            values[name] = draw(st.one_of(st.sampled_from(sorted(conv.items)), TEXT.map(path_part)))
        else:
            values[name] = path_part(draw(TEXT))
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: values[m.group(1)], rule.rule)


def test_every_route_fuzz(app, db_url, world, admin):
    """Every route of the app, any method, hostile path values and bodies, as a stranger, a
    participant or an admin: never a 5xx, and a refusal writes nothing."""
    rules = sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
    staff = app.test_client()
    assert login(staff).status_code == 302
    clients = {"anon": app.test_client(), "participant": world["people"]["A"]["client"], "staff": staff}

    @fuzz(db_url, 150)
    @given(
        data=st.data(),
        rule=st.sampled_from(rules),
        who=st.sampled_from(sorted(clients)),
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
        body=bodies(st.just("x")),
    )
    def check(data, rule, who, method, body):
        url = _fill(rule, data.draw)
        payload, ctype = body
        before = snapshot(app)
        r = clients[who].open(url, method=method, data=payload, headers={"Content-Type": ctype} if ctype else {})
        assert r.status_code < 500, (url, method, r.status_code, r.get_data()[:300])
        if r.status_code >= 400:
            assert not changes(before, snapshot(app))
        r.close()

    check()


# --- worker ids with markup ------------------------------------------------------------------

MARKUP = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg/onload=alert(1)>',
    "</td><script>alert(document.cookie)</script>",
    "<b>bold</b>",
]


def test_worker_ids_with_markup(app, db_url, world, admin):
    """Worker ids with markup, through Prolific or MTurk: escaped on the dashboard, never in
    the dashboard's (pseudonymous) download, and exported raw as the plain text they are."""
    cd, trust = world["cd"], world["trust"]
    staff = app.test_client()
    assert login(staff).status_code == 302
    plain = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=12)
    sent: list[str] = []

    @fuzz(db_url, 12)
    @given(prefix=plain, payload=st.sampled_from(MARKUP), suffix=plain, platform=st.sampled_from(["prolific", "mturk"]))
    def check(prefix, payload, suffix, platform):
        wid = f"{prefix}{payload}{suffix}{len(sent)}"  # unique: a repeat would resume, not enroll
        sent.append(wid)
        # Each study reads its own platform's ids: cd runs on Prolific, trust on MTurk.
        slug = cd if platform == "prolific" else trust
        params = (
            {"PROLIFIC_PID": wid, "STUDY_ID": payload, "SESSION_ID": "s"}
            if platform == "prolific"
            else {"workerId": wid, "assignmentId": payload, "hitId": "h"}
        )
        c = app.test_client()
        enroll(c, slug, params)
        h = {"X-Participant-Token": participant_token(c)}
        t = c.get(f"/api/s/{slug}/plan", headers=h).get_json()["trials"][0]
        answer = t["options"][0] if slug == cd else 0
        assert (
            c.post(
                f"/api/s/{slug}/answers", headers=h, json={"position": 0, "answer": answer, "rt_ms": 500}
            ).status_code
            == 200
        )
        html = staff.get(f"/admin/s/{slug}").get_data(as_text=True)
        assert str(markupsafe.escape(wid)) in html and wid not in html and payload not in html
        download = staff.get(f"/admin/s/{slug}/export.csv").get_data(as_text=True)
        assert payload not in download and wid not in download

    check()
    stored = set()
    for slug in (cd, trust):
        with app.extensions["camstudy.sessions"]() as s:
            raw = export_bytes(export_rows(s, slug, mode="live", raw_ids=True), "csv")
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
        stored |= {unneutralise(w) for w in df["worker_id"]}
        assert "&lt;" not in raw.decode().replace("&lt;script&gt;", "")
    assert set(sent) <= stored  # the plain text, byte for byte: no HTML escaping


# --- the inputs that broke the app once ------------------------------------------------------


def test_known_hostile_inputs(app, world, admin):
    """Each input a fuzz test above once turned into a 500 (or a database error), with the
    answer it gets now; a refusal writes nothing."""
    cd, trust = world["cd"], world["trust"]
    a = world["people"]["A"]
    api = {"X-Participant-Token": a["token"], "Content-Type": "application/json"}
    option = a["plan"]["trials"][1]["options"][0]
    staff = app.test_client()
    assert login(staff).status_code == 302
    stranger = app.test_client()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    browser = app.test_client()
    token = csrf(browser, f"/s/{cd}/?PROLIFIC_PID=x")

    def deep(opener: bytes, closer: bytes, depth: int, inner: bytes = b"1") -> bytes:
        return opener * depth + inner + closer * depth

    cases = [
        # JSON nested deeper than the parser's recursion limit, yet under the size limit (was: RecursionError)
        (stranger, "POST", f"/api/s/{cd}/answers", {"data": deep(b"[", b"]", 5000), "headers": api}, {400}),
        (
            stranger,
            "POST",
            f"/api/s/{cd}/events",
            {"data": b'{"kind": "blur", "detail": ' + deep(b'{"a":', b"}", 2000) + b"}", "headers": api},
            {400},
        ),
        # positions past the integer column (was: OverflowError on SQLite, "integer out of range" on PostgreSQL)
        *[
            (
                stranger,
                "POST",
                f"/api/s/{cd}/answers",
                {"json": {"position": n, "answer": option, "rt_ms": 500}, "headers": api},
                {422},
            )
            for n in (2**31, 2**63, 2**64, 10**30)
        ],
        *[
            (stranger, "POST", f"/api/s/{cd}/events", {"json": {"kind": "blur", "position": n}, "headers": api}, {400})
            for n in (2**31, 2**63, 2**64)
        ],
        # a time at the calendar's edge moved past it by its offset (was: OverflowError)
        *[
            (
                stranger,
                "POST",
                f"/api/s/{cd}/answers",
                {"json": {"position": 1, "answer": option, "rt_ms": 500, "shown_at": t}, "headers": api},
                {422},
            )
            for t in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")
        ],
        # NaN and Infinity in an event's detail (was: PostgreSQL's json refused them)
        *[
            (
                stranger,
                "POST",
                f"/api/s/{cd}/events",
                {"data": b'{"kind": "blur", "detail": {"x": ' + v + b"}}", "headers": api},
                {400},
            )
            for v in (b"NaN", b"Infinity", b"1e999")
        ],
        # a CSRF token with non-ASCII characters (was: TypeError in secrets.compare_digest)
        (browser, "POST", f"/s/{cd}/consent", {"data": "csrf_token=%C2%80&agree=yes", "headers": form}, {400}),
        (stranger, "POST", "/admin/logout", {"data": "csrf_token=%C3%A9", "headers": form}, {400}),
        (staff, "POST", "/admin/login", {"data": "csrf_token=%E2%98%83&username=ada", "headers": form}, {400}),
        # image ids past the integer column (was: OverflowError on SQLite)
        *[(stranger, "GET", f"/s/{cd}/img/{n}", {}, {404}) for n in (2**31, 2**64, 10**30)],
        # NUL, which PostgreSQL cannot take in text (was: psycopg's DataError on PostgreSQL)
        (stranger, "GET", "/api/s/c%00d/plan", {"headers": api}, {400}),
        (stranger, "GET", "/s/c%00d/", {}, {400}),
        (stranger, "GET", f"/s/{cd}/?PROLIFIC_PID=a%00b", {}, {400}),
        (
            browser,
            "POST",
            f"/s/{cd}/consent",
            {"data": f"csrf_token={token}&agree=yes&PROLIFIC_PID=a%00b", "headers": form},
            {400},
        ),
        (
            browser,
            "POST",
            f"/s/{cd}/consent",
            {"data": f"csrf_token={token}&agree=yes&workerId=w&hitId=%00", "headers": form},
            {400},
        ),
        (
            browser,
            "POST",
            f"/s/{cd}/consent",
            {"data": f"csrf_token={token}&agree=yes", "headers": {**form, "User-Agent": "bot\x00"}},
            {400},
        ),
        (staff, "GET", "/admin/s/c%00d", {}, {400}),
        (staff, "GET", f"/admin/s/{cd}/export.csv?mode=live%00", {}, {400}),
        (
            stranger,
            "POST",
            "/admin/login",
            {"data": f"csrf_token={csrf(stranger, '/admin/login')}&username=ada%00&password=x", "headers": form},
            {400},
        ),
        # the 413 for bodies over the limit, on every kind of route
        (stranger, "POST", f"/api/s/{trust}/answers", {"data": b"[" * 3_000_000, "headers": api}, {403, 413}),
        (stranger, "POST", f"/api/s/{cd}/answers", {"data": b"[" * 3_000_000, "headers": api}, {413}),
        (browser, "POST", f"/s/{cd}/consent", {"data": "agree=yes&x=" + "y" * 2_000_000, "headers": form}, {413}),
        (stranger, "POST", "/admin/login", {"data": "username=" + "y" * 2_000_000, "headers": form}, {413}),
    ]
    for client, method, url, kwargs, allowed in cases:
        before = snapshot(app)
        r = client.open(url, method=method, **kwargs)
        assert r.status_code in allowed, (method, url, r.status_code, r.get_data()[:200])
        assert not changes(before, snapshot(app)), (method, url)
    # A redirect target with a line break cannot split the Location header (was: a 500 from
    # werkzeug's header check, for a logged-in admin following ?next=).
    for target in ("/admin/%0d%0aSet-Cookie:%20x=1", "/admin/%0aX:y", "/admin/\\evil.example"):
        r = staff.get(f"/admin/login?next={target}")
        assert r.status_code == 302 and "\n" not in r.headers["Location"] and "\r" not in r.headers["Location"]
