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
    """One link per mode for the study's platform (MTurk appends its own ids; Prolific's
    are placeholders it fills in)."""
    platform = study.settings.get("platform", "plain")
    base = f"{base_url.rstrip('/')}/s/{study.slug}/"
    out = []
    for mode in MODES:
        query = urlencode(mode_link_params(study.secret, study.slug, mode))
        if platform == "prolific":
            query = "&".join(q for q in (PROLIFIC_IDS, query) if q)
            note = "the study URL on Prolific"
        elif platform == "mturk":
            note = "the ExternalQuestion URL (MTurk adds workerId, assignmentId, hitId, turkSubmitTo)"
        else:
            note = "the link to share"
        if mode != "live":
            note = f"test run, kept apart from the data; {note}"
        out.append(Link(mode, platform, base + (f"?{query}" if query else ""), note))
    return out
