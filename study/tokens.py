"""Participant tokens: a signed participant id, so each participant reads and answers
only their own trials. Sent by the browser module in the ``X-Participant-Token`` header
(and kept in the signed session cookie for the server-rendered pages)."""

from __future__ import annotations

from functools import lru_cache

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "camstudy.participant"


def signed_payload(secret: str, salt: str, token: str | None, limit: int = 500):
    """The payload of a genuine token signed with ``secret`` and ``salt``, else None."""
    if not token or len(token) > limit:
        return None
    try:
        return URLSafeSerializer(secret, salt=salt).loads(token)
    except BadSignature:
        return None


def issue(secret: str, participant_id: int, study_id: int) -> str:
    return URLSafeSerializer(secret, salt=SALT).dumps({"p": participant_id, "s": study_id})


@lru_cache(maxsize=8192)
def verify(secret: str, token: str | None, study_id: int) -> int | None:
    """The participant id if ``token`` is genuine and for this study, else None. Cached:
    every answer sends the token, and a token's meaning never changes."""
    data = signed_payload(secret, SALT, token)
    if not isinstance(data, dict) or data.get("s") != study_id or not isinstance(data.get("p"), int):
        return None
    return data["p"]


def participant_of(token: str) -> int | None:
    """The participant id a token names, read without checking its signature (for the
    simulated participants' own audit; the server always calls :func:`verify`)."""
    _ok, data = URLSafeSerializer("-", salt=SALT).loads_unsafe(token)
    return data.get("p") if isinstance(data, dict) and isinstance(data.get("p"), int) else None
