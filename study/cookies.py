"""Two session cookies: one for participants, one for the admin pages.

- ``camstudy`` (participants, path ``/``): behind https it is ``SameSite=None; Secure;
  Partitioned``, so it is kept inside the recruitment platform's frame (MTurk shows a HIT
  in a frame of another site, where a ``Lax`` cookie is withheld, and where a browser that
  blocks third-party cookies still keeps a partitioned one, for that top-level site only);
  over plain http, ``Lax``.
- ``camstudy_admin`` (path ``/admin``): ``SameSite=Lax``, ``Secure`` behind https, never
  sent with a participant's request. It holds only a server-side session's token
  (:class:`study.models.AdminSession`), so logout and a password change end it.

Whether a request came over https is werkzeug's ``request.is_secure``, which behind a
reverse proxy is right only with ``CAMSTUDY_PROXY_HOPS`` set (ProxyFix).
"""

from __future__ import annotations

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface

ADMIN_PATH = "/admin"


def _admin() -> bool:
    return request.path == ADMIN_PATH or request.path.startswith(ADMIN_PATH + "/")


class CookieSessions(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request):
        # The JSON API of a page that sends its participant token reads and writes no
        # session: skip checking the cookie's signature on every answer.
        if request.path.startswith("/api/") and "X-Participant-Token" in request.headers:
            return self.session_class()
        return super().open_session(app, request)

    def get_cookie_name(self, app: Flask) -> str:
        return "camstudy_admin" if _admin() else "camstudy"

    def get_cookie_path(self, app: Flask) -> str:
        return ADMIN_PATH if _admin() else "/"

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure

    def get_cookie_samesite(self, app: Flask) -> str:
        return "None" if request.is_secure and not _admin() else "Lax"

    def get_cookie_partitioned(self, app: Flask) -> bool:
        return request.is_secure and not _admin()
