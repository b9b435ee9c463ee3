"""Locust: participants taking a study through the real HTTP flow, as a browser does.

Each simulated user is one participant after another: the link (with the platform's ids
and, for a test mode, the signed mode parameters), the consent form with its CSRF token,
the task page's participant token, the plan, each trial's images, one POST per answer,
completion and the questionnaire. Locust (not written here) measures every request.

Settings come from the environment:

- ``CAMSTUDY_LOCUST_STUDY``: the study's slug (required);
- ``CAMSTUDY_LOCUST_PLATFORM``: ``prolific`` (default), ``mturk`` or ``plain``;
- ``CAMSTUDY_LOCUST_QUERY``: extra query parameters, e.g. the signed debug link's
  ``mode=debug&mode_key=...`` (``camstudy study links SLUG``);
- ``CAMSTUDY_LOCUST_THINK_S``: seconds before each answer (default 0: saturation);
- ``REQUESTS_CA_BUNDLE``: the CA certificate of an https proxy with a self-signed one.

Run: ``locust -f bench/locustfile.py --headless -u 50 -r 10 -t 60s --host https://HOST``.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from urllib.parse import parse_qsl, urlencode

from locust import HttpUser, constant, task

SLUG = os.environ.get("CAMSTUDY_LOCUST_STUDY", "")
PLATFORM = os.environ.get("CAMSTUDY_LOCUST_PLATFORM", "prolific")
EXTRA = dict(parse_qsl(os.environ.get("CAMSTUDY_LOCUST_QUERY", "")))
THINK_S = float(os.environ.get("CAMSTUDY_LOCUST_THINK_S", "0"))


def platform_ids(worker: str) -> dict[str, str]:
    if PLATFORM == "prolific":
        return {"PROLIFIC_PID": worker, "STUDY_ID": "locust", "SESSION_ID": worker}
    if PLATFORM == "mturk":
        return {"workerId": worker, "assignmentId": f"A-{worker}", "hitId": "locust"}
    return {}


def field(html: str, pattern: str) -> str:
    m = re.search(pattern, html)
    if m is None:
        raise RuntimeError(f"the page has no {pattern!r}")
    return m.group(1)


class Participant(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        if not SLUG:
            raise RuntimeError("set CAMSTUDY_LOCUST_STUDY to the study's slug")
        if os.environ.get("REQUESTS_CA_BUNDLE"):  # Locust's session does not read it by itself
            self.client.verify = os.environ["REQUESTS_CA_BUNDLE"]

    @task
    def take_the_study(self) -> None:
        worker = f"locust-{uuid.uuid4().hex[:16]}"
        params = {**platform_ids(worker), **EXTRA}
        page = self.client.get(f"/s/{SLUG}/?{urlencode(params)}", name="GET /s/[slug]/ (consent)")
        page.raise_for_status()
        csrf = field(page.text, r'name="csrf_token" value="([^"]+)"')
        with self.client.post(
            f"/s/{SLUG}/consent",
            data={"csrf_token": csrf, "agree": "yes", **params},
            name="POST /s/[slug]/consent (enroll, then the task page)",
            catch_response=True,
        ) as r:
            if r.status_code != 200 or 'data-token="' not in r.text:
                r.failure(f"enrollment: HTTP {r.status_code}")
                return
            token = field(r.text, r'data-token="([^"]+)"')
        headers = {"X-Participant-Token": token}
        plan = self.client.get(f"/api/s/{SLUG}/plan", headers=headers, name="GET /api/s/[slug]/plan").json()
        for trial in plan["trials"]:
            for url in trial["images"]:
                self.client.get(url, name="GET /s/[slug]/img/[token]")
            if THINK_S:
                time.sleep(THINK_S)
            answer = trial["options"][0] if "options" in trial else 0
            body = {"position": trial["position"], "answer": answer, "rt_ms": 1200.0}
            with self.client.post(
                f"/api/s/{SLUG}/answers",
                json=body,
                headers=headers,
                name="POST /api/s/[slug]/answers",
                catch_response=True,
            ) as r:
                if r.status_code != 200 or r.json().get("position") != trial["position"]:
                    r.failure(f"answer not acknowledged: HTTP {r.status_code}")
                    return
        done = self.client.post(
            f"/api/s/{SLUG}/complete", headers=headers, json={}, name="POST /api/s/[slug]/complete"
        ).json()
        if done.get("stage") == "questionnaire":
            q = self.client.get(f"/s/{SLUG}/questionnaire", name="GET /s/[slug]/questionnaire")
            self.client.post(
                f"/s/{SLUG}/questionnaire",
                name="POST /s/[slug]/questionnaire (then the debrief)",
                data={
                    "csrf_token": field(q.text, r'name="csrf_token" value="([^"]+)"'),
                    "strategy": "locust",
                    "difficulty": "",
                    "comments": "",
                },
            )
        # The next participant: a fresh browser (no cookies of this one).
        self.client.cookies.clear()
