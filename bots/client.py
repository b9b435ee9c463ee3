"""HTTP as a participant's browser does it: the recruitment platform's link parameters,
a keep-alive connection with a cookie jar, redirects followed after a form POST, and the
statuses a bot retries (connection error, 5xx, 408, 429)."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from camstudy.errors import UserError

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


def recruitment_params(platform: str, worker_id: str) -> dict[str, str]:
    """The ids a recruitment platform adds to the participant link."""
    if platform == "prolific":
        return {"PROLIFIC_PID": worker_id, "STUDY_ID": "camstudy-simulate", "SESSION_ID": worker_id}
    if platform == "mturk":
        return {"workerId": worker_id, "assignmentId": f"A-{worker_id}", "hitId": "camstudy-simulate"}
    return {}


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

    def request(
        self, method: str, path: str, *, json_body=None, form: dict | None = None, headers: dict | None = None
    ) -> Response:
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
                self.conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.ssl_context
                )
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
            path = loc.path[len(self.prefix) :] if self.prefix and loc.path.startswith(self.prefix) else loc.path
            resp = self.request("GET", path + (f"?{loc.query}" if loc.query else ""))
        return resp
