"""Simulated participants: bots that take a study through the server's real HTTP flow.

Each bot opens the participant link (Prolific-style, with its own worker id), reads the
consent page's CSRF token, consents, reads its participant token from the task page,
fetches its trial plan and answers trial after trial with ``POST /api/s/<slug>/answers``,
then completes (and fills in the questionnaire where the study has one). Like the browser
module it retries an answer that got no acknowledgement (connection error, 5xx, 408, 429)
with exponential backoff until it is acknowledged; answers are idempotent on (participant,
position), so a retry never writes twice.

What a bot answers comes from its profile (per-method accuracy, trust-score
distributions, reaction times, attention-check failures, dropouts, reloads). To answer
*correctly* with a given probability a bot has to know the right answer, which the
server never sends: the bots read the study's items and stimuli from the database
(``--db``, read-only). The ``random`` profile needs no database.

Simulated participants enroll with ``mode=debug`` by default, so they never mix with live
data (``camstudy analyze --mode debug`` analyses them).
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import secrets
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from camstudy.contracts import TRUST_VALUES, TaskKind
from camstudy.errors import UserError
from study.tokens import participant_of

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
TRUST_SCALE = TRUST_VALUES


# ---------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """How a simulated participant behaves.

    ``accuracy``: probability of the correct option per method (class discrimination);
    ``trust_mean``: mean score in favour of the stronger model per method (-2..2);
    reaction times are log-normal around ``rt_median_ms``; each attention check is failed
    with ``attention_failure``; ``dropout`` of the participants stop before the end and
    ``reload`` of them reload the task page once on the way; with ``reload_after_error`` a
    participant also reloads whenever an answer needed retries (as people do after an
    error page), which checks that the server resumes them at the right trial.
    """

    name: str
    accuracy: dict[str, float] = field(default_factory=dict)
    default_accuracy: float = 0.5
    trust_mean: dict[str, float] = field(default_factory=dict)
    default_trust_mean: float = 0.0
    rt_median_ms: float = 2500.0
    rt_sigma: float = 0.5
    attention_failure: float = 0.0
    dropout: float = 0.0
    reload: float = 0.0
    reload_after_error: bool = False  # reload the page after an answer needed retries
    needs_oracle: bool = True  # False: answers at chance, without reading the answer key


PROFILES = {
    # The paper's class-discrimination accuracies and trust means (Selvaraju et al.);
    # Grad-CAM and the photo baseline were not reported, so they get plausible values.
    "paper": Profile(
        "paper",
        accuracy={"guided_gradcam": 0.6123, "guided_backprop": 0.4444, "deconvnet": 0.5333,
                  "deconv_gradcam": 0.6037, "gradcam": 0.60, "photo": 0.97},
        trust_mean={"guided_backprop": 1.00, "guided_gradcam": 1.27, "gradcam": 1.0, "deconvnet": 0.5,
                    "deconv_gradcam": 0.8, "photo": 0.0},
        attention_failure=0.02, dropout=0.05, reload=0.1,
    ),
    # Everything at chance: a null study.
    "random": Profile("random", rt_median_ms=2000.0, needs_oracle=False),
    # Careless workers: fast, at chance, failing attention checks half the time.
    "careless": Profile("careless", rt_median_ms=250.0, rt_sigma=0.3, attention_failure=0.5),
    # For load and fault tests: the paper's answers, everyone finishes; a participant
    # reloads only after an answer needed retries (a server restart, a lost connection).
    "steady": Profile(
        "steady",
        accuracy={"guided_gradcam": 0.6123, "guided_backprop": 0.4444, "deconvnet": 0.5333,
                  "deconv_gradcam": 0.6037, "gradcam": 0.60, "photo": 0.97},
        trust_mean={"guided_backprop": 1.00, "guided_gradcam": 1.27}, reload_after_error=True,
    ),
    # For load benchmarks: like steady, but at chance, so the client reads no answer key and
    # does the same work against the app as against a floor server.
    "load": Profile("load", rt_median_ms=2000.0, reload_after_error=True, needs_oracle=False),
}


def trust_distribution(mean: float) -> list[float]:
    """Probabilities over -2..2 with the given mean: the maximum-entropy (exponentially
    tilted) distribution, found by bisection on the tilt."""
    mean = min(max(mean, -1.99), 1.99)

    def probs(beta: float) -> list[float]:
        w = [math.exp(beta * s) for s in TRUST_SCALE]
        return [x / sum(w) for x in w]

    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if sum(p * s for p, s in zip(probs(mid), TRUST_SCALE, strict=True)) < mean:
            lo = mid
        else:
            hi = mid
    return probs((lo + hi) / 2)


# ---------------------------------------------------------------- the study as the bots know it


@dataclass(frozen=True)
class Truth:
    method: str
    attention_check: bool
    correct: str | None  # class discrimination
    stronger_first: bool | None  # trust: the stronger model's image is "Model 1"


class StudyKey:
    """What the bots read from the study's database (read-only): the platform (whose ids
    they send), the signed link parameters of their mode, and the answer key.

    The server never sends the answer, nor anything that identifies a stimulus: an image
    URL names a slot of the participant's plan. So a bot reads its own plan from the
    database, by the participant id in its participant token (:meth:`plan_truth`).
    """

    def __init__(self, db_url: str | None, slug: str, mode: str) -> None:
        from study.db import make_engine, session_factory
        from study.export import find_study
        from study.recruitment import mode_link_params

        if db_url is False:  # no database: live Prolific-style links, no answer key (a load test's floor)
            self.engine, self.study_id, self.platform, self.link_params = None, None, "prolific", {}
            return
        self.engine = make_engine(db_url, pre_ping=True)  # a test may restart the database mid-run
        self.factory = session_factory(self.engine)
        with self.factory() as s:
            study = find_study(s, slug)
            self.study_id = study.id
            self.platform = study.settings.get("platform", "plain")
            self.link_params = mode_link_params(study.secret, study.slug, mode)

    def plan_truth(self, participant_id: int) -> dict[int, Truth]:
        """What is true of each trial of this participant's plan, by position."""
        from sqlalchemy import select

        from study.models import Item, Participant, PlanEntry

        with self.factory() as s:
            rows = s.execute(
                select(PlanEntry.position, PlanEntry.layout, Item.method, Item.is_attention_check, Item.correct_answer)
                .join(Item, Item.id == PlanEntry.item_pk).join(Participant, Participant.id == PlanEntry.participant_id)
                .where(PlanEntry.participant_id == participant_id, Participant.study_id == self.study_id)
            ).all()
        return {pos: Truth(method, check, correct, layout.get("model_1") == "stronger" if "model_1" in layout else None)
                for pos, layout, method, check, correct in rows}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def recruitment_params(platform: str, worker_id: str) -> dict[str, str]:
    """The ids a recruitment platform adds to the participant link."""
    if platform == "prolific":
        return {"PROLIFIC_PID": worker_id, "STUDY_ID": "camstudy-simulate", "SESSION_ID": worker_id}
    if platform == "mturk":
        return {"workerId": worker_id, "assignmentId": f"A-{worker_id}", "hitId": "camstudy-simulate"}
    return {}


# ---------------------------------------------------------------- HTTP


class ServerError(Exception):
    """A request the bot could not get through (after its retries)."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    text: str

    def json(self):
        return json.loads(self.text)


class Client:
    """One participant's browser: a keep-alive connection and a cookie jar."""

    def __init__(self, base_url: str, timeout: float = 15.0, ssl_context: ssl.SSLContext | None = None) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise UserError(f"URL must be http(s)://HOST[:PORT], not {base_url!r}")
        self.https = u.scheme == "https"
        self.host, self.port, self.prefix = u.hostname, u.port or (443 if self.https else 80), u.path.rstrip("/")
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.conn: http.client.HTTPConnection | None = None
        self.cookies: dict[str, str] = {}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, *, json_body=None, form: dict | None = None,
                headers: dict | None = None) -> Response:
        """One request; raises ``OSError``/``HTTPException`` when the connection fails."""
        hdrs = dict(headers or {})
        body = None
        if json_body is not None:
            body, hdrs["Content-Type"] = json.dumps(json_body), "application/json"
        elif form is not None:
            body, hdrs["Content-Type"] = urlencode(form), "application/x-www-form-urlencoded"
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.conn is None:
            if self.https:
                self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                        context=self.ssl_context)
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, self.prefix + path, body=body, headers=hdrs)
            resp = self.conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            self.close()  # a fresh connection next time
            raise
        for raw in resp.headers.get_all("Set-Cookie") or []:
            # By hand: http.cookies drops a whole cookie with an attribute it does not know
            # (``Partitioned``, which the server sets behind https).
            first, _, attrs = raw.partition(";")
            name, _, value = first.strip().partition("=")
            attrs = attrs.lower()
            if not value or "max-age=0" in attrs or "1970" in attrs:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        if resp.will_close:
            self.close()
        return Response(resp.status, resp.headers, text)

    def follow(self, resp: Response, limit: int = 5) -> Response:
        """Follow redirects with GETs (as a browser does after a form POST)."""
        for _ in range(limit):
            if resp.status not in (301, 302, 303, 307, 308):
                return resp
            loc = urlsplit(resp.headers["Location"])
            path = loc.path[len(self.prefix):] if self.prefix and loc.path.startswith(self.prefix) else loc.path
            resp = self.request("GET", path + (f"?{loc.query}" if loc.query else ""))
        return resp


# ---------------------------------------------------------------- one participant


@dataclass
class BotResult:
    worker_id: str
    participant_id: int | None = None  # the server's, from the participant token
    status: str = "started"  # completed | screened_out | dropped | failed | already
    acknowledged: dict[int, str] = field(default_factory=dict)  # position -> stored answer
    latencies_ms: list[float] = field(default_factory=list)  # each acknowledged answer POST
    retries: int = 0
    reloads: int = 0
    resume_errors: int = 0  # a reload that did not resume at the first unanswered trial
    error: str = ""


class Bot:
    def __init__(self, base_url: str, slug: str, worker_id: str, profile: Profile, key: StudyKey,
                 rng: random.Random, pace_s: float, give_up_s: float, backoff_s: float,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.base_url, self.slug, self.profile, self.key, self.rng = base_url, slug, profile, key, rng
        self.pace_s, self.give_up_s, self.backoff_s = pace_s, give_up_s, backoff_s
        self.client = Client(base_url, ssl_context=ssl_context)
        self.result = BotResult(worker_id)
        self.token = ""
        self.truth: dict[int, Truth] = {}
        self.seed = rng.getrandbits(64)
        self.streams: dict[str, random.Random] = {}

    def stream(self, key: str) -> random.Random:
        """The participant's own random stream per method (and one for the checks), so what
        it answers to its k-th trial of a method does not depend on the trial order."""
        if key not in self.streams:
            self.streams[key] = random.Random(f"{self.seed}:{key}")
        return self.streams[key]

    # -- transport with the browser module's retry rule
    def call(self, send: Callable[[], Response], ok: Callable[[Response], bool]) -> Response:
        deadline = time.monotonic() + self.give_up_s
        failures = 0
        while True:
            try:
                resp = send()
                if ok(resp):
                    return resp
                if resp.status not in RETRY_STATUSES:
                    raise ServerError(f"HTTP {resp.status}: {resp.text[:200]}")
                why = f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as e:
                why = type(e).__name__
            failures += 1
            self.result.retries += 1
            if time.monotonic() > deadline:
                raise ServerError(f"gave up after {failures} tries ({why})")
            time.sleep(min(self.backoff_s * 2 ** min(failures - 1, 6), 2.0) * (0.5 + self.rng.random()))

    def api(self, method: str, path: str, body=None) -> Response:
        return self.client.request(method, f"/api/s/{self.slug}{path}", json_body=body,
                                   headers={"X-Participant-Token": self.token})

    # -- the flow
    def enter(self) -> None:
        """Open the participant link, consent (first time), and read the participant token."""
        params = {**recruitment_params(self.key.platform, self.result.worker_id), **self.key.link_params}
        page = self.call(lambda: self.client.follow(self.client.request("GET", f"/s/{self.slug}/?{urlencode(params)}")),
                         lambda r: r.status == 200)
        if 'id="app"' not in page.text:  # the consent page
            csrf = _field(page.text, "csrf_token")
            form = {"csrf_token": csrf, "agree": "yes", **params}
            page = self.call(lambda: self.client.follow(self.client.request("POST", f"/s/{self.slug}/consent", form=form)),
                             lambda r: r.status in (200, 409))
            if page.status == 409:
                self.result.status = "already"
                raise ServerError("this worker took part already")
        m = re.search(r'data-token="([^"]+)"', page.text)
        if m is None:
            raise ServerError("the task page has no participant token")
        self.token = m.group(1)
        self.result.participant_id = participant_of(self.token)
        if self.profile.needs_oracle and not self.truth:
            self.truth = self.key.plan_truth(self.result.participant_id)

    def plan(self) -> dict:
        return self.call(lambda: self.api("GET", "/plan"), lambda r: r.status == 200).json()

    def decide(self, trial: dict, kind: str):
        p = self.profile
        truth = self.truth.get(trial["position"]) if self.profile.needs_oracle else None
        rt = math.exp(math.log(p.rt_median_ms) + p.rt_sigma * self.rng.gauss(0, 1))
        if truth is None:  # the random profile: chance
            answer = self.rng.choice(trial["options"]) if kind == TaskKind.CLASS_DISCRIMINATION else self.rng.choice(TRUST_SCALE)
            return answer, rt
        draw = self.stream("attention-check" if truth.attention_check else truth.method)
        if kind == "class_discrimination":
            acc = 1 - p.attention_failure if truth.attention_check else p.accuracy.get(truth.method, p.default_accuracy)
            wrong = [o for o in trial["options"] if o != truth.correct]
            return (truth.correct if draw.random() < acc or not wrong else draw.choice(wrong)), rt
        if truth.attention_check:  # the same explanation on both sides: the answer is 0
            return (0 if draw.random() >= p.attention_failure else draw.choice((-2, -1, 1, 2))), rt
        probs = trust_distribution(p.trust_mean.get(truth.method, p.default_trust_mean))
        score = draw.choices(TRUST_SCALE, weights=probs)[0]
        return (score if truth.stronger_first else -score), rt

    def answer(self, position: int, answer, rt: float) -> dict:
        body = {"position": position, "answer": answer, "rt_ms": round(rt, 1),
                "shown_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - rt / 1000))}

        def send() -> Response:
            t0 = time.perf_counter()
            r = self.api("POST", "/answers", body)
            if r.status == 200:
                self.result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            return r

        ack = self.call(send, lambda r: r.status == 200).json()
        self.result.acknowledged[position] = ack["answer"]
        return ack

    def reload(self, expected_next: int) -> dict:
        """Reload the task page: a new connection, the same cookies; the plan resumes."""
        self.result.reloads += 1
        self.client.close()
        self.enter()
        plan = self.plan()
        if plan["next"] != expected_next:
            self.result.resume_errors += 1
        return plan

    def finish(self) -> None:
        """Complete, open the debrief (which shows the code at once), and answer its optional
        questionnaire where there is one, as a participant can; the final status comes from
        the server's answer."""
        done = self.call(lambda: self.api("POST", "/complete"), lambda r: r.status == 200).json()
        self.result.status = done["status"]
        page = self.call(lambda: self.client.request("GET", f"/s/{self.slug}/debrief"), lambda r: r.status == 200)
        if 'name="strategy"' not in page.text:
            return
        form = {"csrf_token": _field(page.text, "csrf_token"), "strategy": "simulated participant",
                "difficulty": "medium", "comments": ""}
        self.call(lambda: self.client.follow(self.client.request("POST", f"/s/{self.slug}/questionnaire", form=form)),
                  lambda r: r.status == 200)  # back to the debrief

    def run(self) -> BotResult:
        try:
            self.enter()
            plan = self.plan()
            kind, total, pos = plan["task"], plan["total"], plan["next"]
            drop_at = self.rng.randrange(total) if self.rng.random() < self.profile.dropout else None
            reload_at = self.rng.randrange(total) if self.rng.random() < self.profile.reload else None
            while pos < total:
                if pos == drop_at:
                    self.result.status = "dropped"
                    return self.result
                if pos == reload_at:
                    reload_at = None
                    plan = self.reload(pos)
                    pos = plan["next"]
                    continue
                answer, rt = self.decide(plan["trials"][pos], kind)
                if self.pace_s:
                    time.sleep(self.pace_s)
                retries = self.result.retries
                pos = self.answer(pos, answer, rt)["next"]
                if self.profile.reload_after_error and self.result.retries > retries:
                    plan = self.reload(pos)
                    pos = plan["next"]
            self.finish()
        except ServerError as e:
            if self.result.status != "already":
                self.result.status = "failed"
            self.result.error = str(e)
        finally:
            self.client.close()
        return self.result


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    if m is None:
        raise ServerError(f"the page has no {name} field")
    return m.group(1)


# ---------------------------------------------------------------- many participants


@dataclass
class Report:
    results: list[BotResult]
    seconds: float
    client_cpu_s: float = 0.0  # CPU time of the bots themselves (they share the machine)

    @property
    def answers(self) -> int:
        return sum(len(r.acknowledged) for r in self.results)

    def latency_ms(self, q: float) -> float:
        lat = sorted(x for r in self.results for x in r.latencies_ms)
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items()))
        lines = [
            f"{len(self.results)} simulated participants in {self.seconds:.1f} s "
            f"(the bots used {self.client_cpu_s:.1f} s of CPU): {counts}",
            f"{self.answers} answers acknowledged ({self.answers / self.seconds:.1f}/s), "
            f"answer latency p50 {self.latency_ms(0.5):.1f} ms, p99 {self.latency_ms(0.99):.1f} ms, "
            f"{sum(r.retries for r in self.results)} retries, {sum(r.reloads for r in self.results)} reloads "
            f"({sum(r.resume_errors for r in self.results)} resumed at the wrong trial)",
        ]
        lines += [f"  {r.worker_id}: {r.error}" for r in self.results if r.status == "failed"][:10]
        return "\n".join(lines)


def simulate(base_url: str, slug: str, participants: int, *, concurrency: int = 10, profile: str | Profile = "paper",
             seed: int = 0, db_url: str | None | bool = None, mode: str = "debug", run_id: str | None = None,
             pace_s: float = 0.0, ramp_s: float = 0.0, give_up_s: float = 120.0, backoff_s: float = 0.05,
             cafile: str | None = None) -> Report:
    """Run ``participants`` bots, ``concurrency`` at a time, against the server at ``base_url``.

    ``db_url``: the study's database, read for the platform, the signed link of ``mode`` and
    the answer key (``False``: none, for a server that is not camstudy's, such as the load
    benchmark's floor; then the bots send live Prolific-style links and answer at random); ``pace_s``: each bot waits this long before each answer (reading the
    trial); ``ramp_s``: bot ``i`` starts ``i / participants * ramp_s`` seconds after the
    first, as people arrive over time rather than in the same instant; ``cafile``: the CA
    certificate to trust for an https URL (e.g. a test proxy's self-signed one)."""
    prof = PROFILES.get(profile) if isinstance(profile, str) else profile
    if prof is None:
        raise UserError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    if participants < 1 or concurrency < 1:
        raise UserError("--participants and --concurrency must be at least 1")
    if db_url is False and (prof.needs_oracle or mode != "live"):
        raise UserError("without a database the bots can only take live links at chance (profile 'random' or 'load')")
    key = StudyKey(db_url, slug, mode)
    context = ssl.create_default_context(cafile=cafile) if base_url.startswith("https:") else None
    run_id = run_id or secrets.token_hex(3)
    start = time.perf_counter()
    cpu = time.process_time()

    def one(i: int) -> BotResult:
        delay = start + ramp_s * i / participants - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        # The behaviour depends on the seed and the bot's number only (the run id just keeps
        # worker ids unique), so the same seed gives the same participants again.
        return Bot(base_url, slug, f"sim-{run_id}-{i:05d}", prof, key, random.Random(f"{seed}:{i}"),
                   pace_s, give_up_s, backoff_s, context).run()

    try:
        with ThreadPoolExecutor(max_workers=min(concurrency, participants)) as pool:
            results = list(pool.map(one, range(participants)))
    finally:
        key.close()
    return Report(results, time.perf_counter() - start, time.process_time() - cpu)


@dataclass
class Audit:
    """What the database holds against what the bots were told: ``lost`` acknowledged
    answers missing, ``duplicated`` extra rows for one position, ``changed`` stored answers
    that differ from their acknowledgement, ``unacknowledged`` stored answers no bot saw
    acknowledged (a bot that gave up after the server committed)."""

    answers: int = 0
    lost: int = 0
    duplicated: int = 0
    changed: int = 0
    unacknowledged: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.changed)

    def line(self) -> str:
        return (f"database: {self.answers} answers stored; {self.lost} lost, {self.duplicated} duplicated, "
                f"{self.changed} changed, {self.unacknowledged} stored without acknowledgement")


def audit(db_url: str | None, slug: str, results: list[BotResult]) -> Audit:
    """Check every acknowledged answer of these bots against the database."""
    from sqlalchemy import select

    from study.db import make_engine, session_factory
    from study.export import find_study
    from study.models import Answer, Participant

    engine = make_engine(db_url)
    out = Audit()
    try:
        with session_factory(engine)() as s:
            study_id = find_study(s, slug).id
            for r in results:
                rows = s.execute(
                    select(Answer.position, Answer.answer).join(Participant, Participant.id == Answer.participant_id)
                    .where(Participant.study_id == study_id,
                           (Participant.worker_id == r.worker_id) | (Participant.id == r.participant_id))
                ).all()
                stored: dict[int, str] = {}
                for position, answer in rows:
                    out.duplicated += position in stored
                    stored[position] = answer
                out.answers += len(rows)
                out.lost += sum(1 for pos in r.acknowledged if pos not in stored)
                out.changed += sum(1 for pos, a in r.acknowledged.items() if pos in stored and stored[pos] != a)
                out.unacknowledged += sum(1 for pos in stored if pos not in r.acknowledged)
    finally:
        engine.dispose()
    return out
