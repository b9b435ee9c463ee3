"""One simulated participant: the server's real HTTP flow (entry, consent, task page, plan,
answers, completion, questionnaire) with the browser module's retry rule, answering as
its profile says."""

from __future__ import annotations

import http.client
import math
import random
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from bots.client import RETRY_STATUSES, Client, Response, ServerError, recruitment_params
from bots.database import StudyKey, Truth
from bots.profiles import Profile
from camstudy.kinds import kind_of
from study.tokens import participant_of


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
    def __init__(
        self,
        base_url: str,
        slug: str,
        worker_id: str,
        profile: Profile,
        key: StudyKey,
        rng: random.Random,
        pace_s: float,
        give_up_s: float,
        backoff_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
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
        return self.client.request(
            method, f"/api/s/{self.slug}{path}", json_body=body, headers={"X-Participant-Token": self.token}
        )

    # -- the flow
    def enter(self) -> None:
        """Open the participant link, consent (first time), and read the participant token."""
        params = {**recruitment_params(self.key.platform, self.result.worker_id), **self.key.link_params}
        page = self.call(
            lambda: self.client.follow(self.client.request("GET", f"/s/{self.slug}/?{urlencode(params)}")),
            lambda r: r.status == 200,
        )
        if 'id="app"' not in page.text:  # the consent page
            csrf = _field(page.text, "csrf_token")
            form = {"csrf_token": csrf, "agree": "yes", **params}
            page = self.call(
                lambda: self.client.follow(self.client.request("POST", f"/s/{self.slug}/consent", form=form)),
                lambda r: r.status in (200, 409),
            )
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
        study_kind = kind_of(kind)  # how this kind's answers are drawn (camstudy.kinds)
        if truth is None:  # the random profile: chance
            return study_kind.random_answer(trial, self.rng), rt
        draw = self.stream("attention-check" if truth.attention_check else truth.method)
        return study_kind.bot_answer(trial, truth, p, draw), rt

    def answer(self, position: int, answer, rt: float) -> dict:
        body = {
            "position": position,
            "answer": answer,
            "rt_ms": round(rt, 1),
            "shown_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - rt / 1000)),
        }

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
        form = {
            "csrf_token": _field(page.text, "csrf_token"),
            "strategy": "simulated participant",
            "difficulty": "medium",
            "comments": "",
        }
        self.call(
            lambda: self.client.follow(self.client.request("POST", f"/s/{self.slug}/questionnaire", form=form)),
            lambda r: r.status == 200,
        )  # back to the debrief

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
