"""The Flask app factory: settings, database and blueprints, set up in one place."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from flask import Flask, Response, g, jsonify, render_template, request, url_for
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix

from study.answers import PlanCache
from study.cookies import ADMIN_PATH, CookieSessions
from study.db import check_current, database_url, make_engine, session_factory, shared_secret
from study.recruitment import MTURK_SITES

MAX_BODY = 16 * 1024
# Every page of the app satisfies this policy: its own scripts and styles only, images from
# itself (stimuli) and data: URLs. Framing: ``g.frame_ancestors`` (participant pages of an
# MTurk study), else none.
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors {ancestors}; form-action 'self' https:"
)
HSTS = "max-age=15552000"  # 180 days
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "::1")


@lru_cache(maxsize=16)
def _csp(ancestors: str) -> str:
    return CSP.format(ancestors=ancestors)


def _env_list(name: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, "").split(",") if x.strip()]


def create_app(config: dict | None = None) -> Flask:
    """Build the app.

    ``config`` may set ``DATABASE_URL``, ``SECRET_KEY``, ``TESTING``, ``CHECK_SCHEMA``
    (default True: refuse a database that is not at the Alembic head), ``TRUSTED_HOSTS``,
    ``PROXY_HOPS`` and ``EXTRA_FRAME_ANCESTORS``. The environment sets them for a server:
    ``CAMSTUDY_DATABASE_URL``; ``CAMSTUDY_SECRET_KEY`` (default: a key created once in the
    database, so every host shares it); ``CAMSTUDY_ALLOWED_HOSTS`` (comma-separated host
    names the server answers to; default localhost and the loopback addresses);
    ``CAMSTUDY_PROXY_HOPS`` (how many reverse proxies in front of the app set
    X-Forwarded-For and X-Forwarded-Proto; default 0, trust none);
    ``CAMSTUDY_FRAME_ANCESTORS`` (origins besides MTurk's that may frame an MTurk study's
    pages). See docs/deployment.md.
    """
    app = Flask(__name__, instance_path=str(Path(os.environ.get("CAMSTUDY_INSTANCE", "instance")).resolve()))
    # No trailing-slash redirects: werkzeug would build their Location from the Host header.
    app.url_map.strict_slashes = False
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY,
        SESSION_COOKIE_HTTPONLY=True,
        CHECK_SCHEMA=True,
        ENROLL_RATE_PER_MINUTE=120,
        TRUSTED_HOSTS=_env_list("CAMSTUDY_ALLOWED_HOSTS") or list(DEFAULT_ALLOWED_HOSTS),
        PROXY_HOPS=int(os.environ.get("CAMSTUDY_PROXY_HOPS") or 0),
        EXTRA_FRAME_ANCESTORS=tuple(_env_list("CAMSTUDY_FRAME_ANCESTORS")),
        # Where an MTurk debrief may post the assignment: nowhere else, so a
        # crafted link cannot send completion codes to another site. (A test's
        # stand-in for MTurk: CAMSTUDY_MTURK_SUBMIT_HOSTS replaces the list.)
        MTURK_SUBMIT_HOSTS=tuple(_env_list("CAMSTUDY_MTURK_SUBMIT_HOSTS")) or MTURK_SITES,
    )
    if os.environ.get("CAMSTUDY_ENROLL_RATE_PER_MINUTE"):
        # A load test's bots all come from one address; a real deployment keeps the default.
        app.config["ENROLL_RATE_PER_MINUTE"] = int(os.environ["CAMSTUDY_ENROLL_RATE_PER_MINUTE"])
    app.config.update(config or {})
    app.config.setdefault("DATABASE_URL", database_url(None))
    engine = make_engine(app.config["DATABASE_URL"])
    if app.config["CHECK_SCHEMA"]:
        check_current(engine)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ.get("CAMSTUDY_SECRET_KEY") or shared_secret(engine)
    app.extensions["camstudy.engine"] = engine
    app.extensions["camstudy.sessions"] = session_factory(engine)
    # Read-only requests read in autocommit: on PostgreSQL a BEGIN and a ROLLBACK around
    # their SELECTs would be two more round trips each.
    app.extensions["camstudy.autocommit"] = engine.execution_options(isolation_level="AUTOCOMMIT")
    app.extensions["camstudy.reads"] = session_factory(app.extensions["camstudy.autocommit"])
    app.extensions["camstudy.plans"] = PlanCache()
    app.session_interface = CookieSessions()
    if app.config["PROXY_HOPS"] > 0:
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)

    from study import admin, api, participant

    app.register_blueprint(participant.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)

    @app.before_request
    def refuse_nul():
        # NUL is in no slug, id, name or answer, and PostgreSQL cannot store or even compare
        # it in text (psycopg raises): refuse it wherever a request can carry text to a query.
        texts = [request.path, request.headers.get("User-Agent", "")]
        fields = [request.args]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            fields.append(request.form)  # only forms have fields (a JSON body is parsed by its view)
        texts += [t for multi in fields for key, values in multi.lists() for t in (key, *values)]
        if any("\x00" in t for t in texts):
            if request.path.startswith("/api/"):
                return jsonify(error="NUL characters are not allowed"), 400
            return render_template(
                "error.html",
                title="Bad Request",
                message="This address or form holds a NUL character, which no page here takes.",
            ), 400

    @app.after_request
    def security_headers(resp):
        ancestors = " ".join(g.get("frame_ancestors", ())) or "'none'"
        resp.headers.setdefault("Content-Security-Policy", _csp(ancestors))
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if ancestors == "'none'":
            # A page that may be framed relies on frame-ancestors alone: X-Frame-Options
            # cannot name an allowed site in any browser still in use.
            resp.headers.setdefault("X-Frame-Options", "DENY")
        if request.is_secure:
            resp.headers.setdefault("Strict-Transport-Security", HSTS)
        return resp

    @app.get("/")
    def landing():
        # What a stray visitor needs, and nothing about the studies (no slugs: a study's
        # link is for its recruitment platform to hand out).
        return render_template("landing.html")

    # Errors: the JSON API (/api/...) answers JSON, which the browser module and the bots
    # read; every other path answers an HTML page in the study's style (error.html).
    def _api() -> bool:
        return request.path.startswith("/api/")

    def _page(status: int, title: str, message: str, back: tuple[str, str] | None = None, headers: dict | None = None):
        """error.html; ``back``: (link, its text), by default the studies' list on admin pages."""
        if back is None and (request.path == ADMIN_PATH or request.path.startswith(ADMIN_PATH + "/")):
            back = (url_for("admin.index"), "Back to the studies")
        return render_template("error.html", title=title, message=message, back=back), status, headers or {}

    @app.errorhandler(413)
    def too_large(_e):
        if _api():
            return jsonify(error=f"request body over {MAX_BODY} bytes"), 413
        return _page(
            413,
            "Too much data",
            f"The form sent more than {MAX_BODY // 1024} KiB, which this site does "
            "not accept. Shorten what you typed and send it again.",
        )

    @app.errorhandler(OperationalError)
    def database_unavailable(e):
        # The database is restarting or unreachable: nothing was acknowledged, so the
        # browser (or a bot) retries later; say so rather than answer 500.
        app.logger.warning("database unavailable: %s", str(e).splitlines()[0])
        if _api():
            resp = jsonify(error="the database is unavailable; retry in a moment")
            resp.status_code, resp.headers["Retry-After"] = 503, "1"
            return resp
        return _page(
            503,
            "Busy for a moment",
            "The site cannot reach its database just now. Nothing was lost: reload the page in a few seconds.",
            headers={"Retry-After": "1"},
        )

    @app.errorhandler(404)
    def not_found(_e):
        if _api():
            return jsonify(error="not found"), 404
        return _page(404, "Not found", "There is no page at this address. Check the link you were given.")

    @app.errorhandler(405)
    def not_allowed(e: HTTPException):
        allow = {"Allow": ", ".join(e.valid_methods)} if getattr(e, "valid_methods", None) else {}
        if _api():
            return jsonify(error="method not allowed"), 405, allow
        return _page(
            405,
            "Not here",
            "This address does not take that kind of request: open it as a link, "
            "or send its form from the page it is on.",
            headers=allow,
        )

    @app.errorhandler(SecurityError)
    def untrusted_host(e: SecurityError):
        # Before routing: no page of ours can be built for a host we do not serve.
        return Response(f"{e.description}\n", 400, mimetype="text/plain")

    @app.errorhandler(400)
    @app.errorhandler(409)
    @app.errorhandler(429)
    @app.errorhandler(503)
    def refused(e: HTTPException):
        retry = {"Retry-After": "1"} if e.code == 503 else {}
        if _api():
            return jsonify(error=e.description), e.code, retry
        return _page(e.code, e.name, e.description, back=getattr(e, "back", None), headers=retry)

    @app.errorhandler(500)
    def failed(e: HTTPException):
        # Only outside TESTING / debug (where Flask re-raises); the traceback is in the log.
        if _api():
            return jsonify(error="internal error; retry later"), 500
        return _page(
            500,
            "Something went wrong",
            "The site failed to handle this request; the error is logged. Reload the page to try again.",
        )

    return app
