"""A study's participant links, as the researcher pastes them into a recruitment platform.

The live link carries no mode. The sandbox and debug links carry the mode and its signature
(:func:`study.recruitment.mode_link_params`), so only links from the admin pages or
``camstudy study links`` start a test participation.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from study.models import Study
from study.recruitment import MODES, mode_link_params

# The placeholders Prolific fills in when "record Prolific IDs via URL parameters" is on.
PROLIFIC_IDS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


@dataclass(frozen=True)
class Link:
    mode: str
    platform: str
    url: str
    note: str


def participant_links(study: Study, base_url: str = "") -> list[Link]:
    """One link per mode: live and sandbox for the platform to open (MTurk appends its own
    ids; Prolific's are placeholders it fills in), debug to open by hand (without
    placeholders, which would become a worker id)."""
    platform = study.settings.get("platform", "plain")
    base = f"{base_url.rstrip('/')}/s/{study.slug}/"
    notes = {
        ("live", "prolific"): "the study URL on Prolific (it fills in the ids)",
        ("live", "mturk"): "the HIT's ExternalQuestion URL (MTurk adds workerId, assignmentId, hitId, turkSubmitTo)",
        ("live", "plain"): "the link to share",
        ("sandbox", "mturk"): "the sandbox HIT's ExternalQuestion URL; kept apart from the data",
    }
    out = []
    for mode in MODES:
        params = urlencode(mode_link_params(study.secret, study.slug, mode))
        query = "&".join(q for q in (PROLIFIC_IDS if platform == "prolific" and mode != "debug" else "", params) if q)
        note = notes.get((mode, platform)) or (
            "open it yourself; kept apart from the data" if mode == "debug" else "a pilot run, kept apart from the data"
        )
        out.append(Link(mode, platform, base + (f"?{query}" if query else ""), note))
    return out
