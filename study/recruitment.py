"""Who is enrolling: the platform's ids, normalised, and the mode of a signed test link.

Two rules keep a study to one paid participation per person:

- A worker id is compared in a normal form (:func:`worker_key`): Unicode NFKC, no
  whitespace at either end, no zero-width or other invisible format characters, and case
  folded on the platforms whose ids ignore case (MTurk's worker ids are upper-case letters
  and digits, Prolific's are hexadecimal). ``PID-1``, `` pid-1 `` and ``\\u200bpid-1`` are
  one person.
- The mode (``live``, or ``sandbox`` / ``debug`` for test runs that are kept apart from the
  data) comes only from a link that the admin pages sign (:func:`mode_link_params`), never
  from a plain query parameter: a worker who adds ``&mode=debug`` to a link gets an error
  page, not a fresh participation.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass

from camstudy.contracts import Mode

MODES = tuple(str(m) for m in Mode)
PLATFORMS = ("plain", "mturk", "prolific")
# Platforms whose worker ids ignore case.
CASELESS = ("mturk", "prolific")
# MTurk's worker and sandbox sites: they frame an external HIT, and the HIT posts back to them.
MTURK_SITES = ("https://www.mturk.com", "https://workersandbox.mturk.com")
MAX_ID = 200


@dataclass(frozen=True)
class Recruitment:
    """Who is enrolling, as the recruitment platform tells it."""

    mode: str = "live"
    platform: str = "plain"
    worker_id: str | None = None
    assignment_id: str | None = None
    hit_id: str | None = None
    platform_study_id: str | None = None
    session_id: str | None = None
    turk_submit_to: str | None = None
    user_agent: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.platform not in PLATFORMS:
            raise ValueError(f"unknown mode {self.mode!r} or platform {self.platform!r}")

    @property
    def worker_key(self) -> str | None:
        return worker_key(self.platform, self.worker_id)


def _invisible(ch: str) -> bool:
    # Cf: format characters (zero-width space/joiners, BOM, soft hyphen, bidi marks, word
    # joiner ...); Cc: control characters. Neither is visible in an id a person types.
    return unicodedata.category(ch) in ("Cf", "Cc")


def clean_id(raw: str | None) -> str | None:
    """``raw`` in NFKC without invisible characters or surrounding whitespace; None when
    nothing is left."""
    if raw is None:
        return None
    text = "".join(ch for ch in unicodedata.normalize("NFKC", raw) if not _invisible(ch)).strip()
    return text[:MAX_ID] or None


def worker_key(platform: str, raw: str | None) -> str | None:
    """The form a worker id is compared in for the one-participation rule."""
    text = clean_id(raw)
    if text is None:
        return None
    return text.casefold() if platform in CASELESS else text


def mode_signature(study_secret: str, slug: str, mode: str) -> str:
    """The key that makes ``mode`` valid on a link of study ``slug``."""
    msg = f"camstudy.mode:{slug}:{mode}".encode()
    return hmac.new(study_secret.encode(), msg, hashlib.sha256).hexdigest()[:32]


def mode_link_params(study_secret: str, slug: str, mode: str) -> dict[str, str]:
    """The query parameters of a participant link in ``mode`` (none for live)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if mode == "live":
        return {}
    return {"mode": mode, "mode_key": mode_signature(study_secret, slug, mode)}


def verify_mode(study_secret: str, slug: str, mode: str | None, key: str | None) -> str | None:
    """The link's mode: ``live`` without a mode, the mode where its key is genuine, else
    None (a mode the admin pages did not sign)."""
    if mode is None or mode == "live":
        return "live"
    if mode not in MODES or not key:
        return None
    expected = mode_signature(study_secret, slug, mode)
    return mode if hmac.compare_digest(key.encode(), expected.encode()) else None
