"""The Flask app factory: settings, database and blueprints, set up in one place."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, jsonify, request
from sqlalchemy.exc import OperationalError

from study.db import check_current, database_url, make_engine, session_factory

# Every page of the app satisfies this policy: its own scripts and styles only, images from
# itself (stimuli) and data: URLs, no framing.
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self' https:"
)
MAX_BODY = 16 * 1024


def instance_secret(instance: Path) -> str:
    """``CAMSTUDY_SECRET_KEY``, else a key generated once into the instance folder (0600)."""
    env = os.environ.get("CAMSTUDY_SECRET_KEY")
    if env:
        return env
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        tmp = instance / f".secret_key.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic: of racing workers, the first key wins
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def create_app(config: dict | None = None) -> Flask:
    """Build the app. ``config`` may set ``DATABASE_URL``, ``SECRET_KEY``, ``TESTING`` and
    ``CHECK_SCHEMA`` (default True: refuse a database that is not at the Alembic head)."""
    app = Flask(__name__, instance_path=str(Path(os.environ.get("CAMSTUDY_INSTANCE", "instance")).resolve()))
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      CHECK_SCHEMA=True, ENROLL_RATE_PER_MINUTE=120,
                      # Where an MTurk debrief may post the assignment: nowhere else, so a
                      # crafted link cannot send completion codes to another site.
                      MTURK_SUBMIT_HOSTS=("https://www.mturk.com", "https://workersandbox.mturk.com"))
    if os.environ.get("CAMSTUDY_ENROLL_RATE_PER_MINUTE"):
        # A load test's bots all come from one address; a real deployment keeps the default.
        app.config["ENROLL_RATE_PER_MINUTE"] = int(os.environ["CAMSTUDY_ENROLL_RATE_PER_MINUTE"])
    app.config.update(config or {})
    app.config.setdefault("DATABASE_URL", database_url(None))
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(Path(app.instance_path))
    engine = make_engine(app.config["DATABASE_URL"])
    if app.config["CHECK_SCHEMA"]:
        check_current(engine)
    app.extensions["camstudy.engine"] = engine
    app.extensions["camstudy.sessions"] = session_factory(engine)

    from study import api, participant

    app.register_blueprint(participant.bp)
    app.extensions["camstudy.enroll_limiter"] = participant.RateLimit()
    app.register_blueprint(api.bp)
    try:
        from study import admin
    except ImportError:  # pragma: no cover - the admin blueprint is optional while it is built
        admin = None
    if admin is not None:
        app.register_blueprint(admin.bp)

    @app.before_request
    def refuse_nul():
        # NUL is in no slug, id, name or answer, and PostgreSQL cannot store or even compare
        # it in text (psycopg raises): refuse it wherever a request can carry text to a query.
        texts = [request.path, request.user_agent.string or ""]
        texts += [t for key, values in request.values.lists() for t in (key, *values)]
        if any("\x00" in t for t in texts):
            if request.path.startswith("/api/"):
                return jsonify(error="NUL characters are not allowed"), 400
            return "NUL characters are not allowed", 400

    @app.after_request
    def security_headers(resp):
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    @app.errorhandler(413)
    def too_large(_e):
        return jsonify(error=f"request body over {MAX_BODY} bytes"), 413

    @app.errorhandler(OperationalError)
    def database_unavailable(e):
        # The database is restarting or unreachable: nothing was acknowledged, so the
        # browser (or a bot) retries later; say so rather than answer 500.
        app.logger.warning("database unavailable: %s", str(e).splitlines()[0])
        resp = jsonify(error="the database is unavailable; retry in a moment")
        resp.status_code, resp.headers["Retry-After"] = 503, "1"
        return resp

    @app.errorhandler(404)
    def not_found(_e):
        if request.path.startswith("/api/"):
            return jsonify(error="not found"), 404
        return "Not found", 404

    @app.errorhandler(405)
    def not_allowed(_e):
        return jsonify(error="method not allowed"), 405

    return app
