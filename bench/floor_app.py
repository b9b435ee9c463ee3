"""The load benchmark's floor: the least a study server can do per request.

A minimal WSGI app that answers the simulated participants' requests (the same URLs and
response shapes the bots need) and does one INSERT and one commit per request, on the same
database and with the same connection settings as the real app (``study.db.make_engine``:
SQLite WAL with ``synchronous=FULL``, or PostgreSQL). No validation, no plan, no token.
Served by gunicorn like the app: ``gunicorn --chdir bench floor_app:app``, with the
database URL in ``CAMSTUDY_FLOOR_DB`` and the trials per participant in ``CAMSTUDY_FLOOR_TRIALS``.
"""

from __future__ import annotations

import itertools
import json
import os

from sqlalchemy import text

from study.db import make_engine

ENGINE = make_engine(os.environ["CAMSTUDY_FLOOR_DB"])
TRIALS = int(os.environ.get("CAMSTUDY_FLOOR_TRIALS", "14"))
PLAN = json.dumps(
    {
        "task": "class_discrimination",
        "status": "active",
        "next": 0,
        "total": TRIALS,
        "trials": [{"position": i, "images": [f"/img/{i}"], "options": ["a", "b"]} for i in range(TRIALS)],
    }
)
TOKENS = itertools.count()
INSERT = text("INSERT INTO floor_request (path, body) VALUES (:path, :body)")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size).decode() if size else ""
    with ENGINE.begin() as conn:  # the one INSERT and commit of every request
        conn.execute(INSERT, {"path": path, "body": body})
    if path.endswith("/plan"):
        out, kind = PLAN, "application/json"
    elif path.endswith("/answers"):
        position = json.loads(body)["position"]
        out, kind = (
            json.dumps({"position": position, "answer": "a", "stored": True, "next": position + 1}),
            "application/json",
        )
    elif path.endswith("/complete"):
        out, kind = json.dumps({"status": "completed", "stage": "debrief"}), "application/json"
    else:  # the entry and debrief pages: the task page's token, so the bots go straight on
        out, kind = f'<div id="app" data-token="floor-{os.getpid()}-{next(TOKENS)}"></div>', "text/html"
    data = out.encode()
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(data)))])
    return [data]
