"""Simulated participants: bots that take a study through the server's real HTTP flow.

Each bot opens the participant link (Prolific-style, with its own worker id), reads the
consent page's CSRF token, consents, reads its participant token from the task page,
fetches its trial plan and answers trial after trial with ``POST /api/s/<slug>/answers``,
then completes (and fills in the questionnaire where the study has one). Like the browser
module it retries an answer that got no acknowledgement (connection error, 5xx, 408, 429)
with exponential backoff until it is acknowledged; answers are idempotent on (participant,
position), so a retry never writes twice.

What a bot answers comes from its profile (per-method accuracy, trust-score
distributions, reaction times, attention-check failures, dropouts, reloads). To answer
*correctly* with a given probability a bot has to know the right answer, which the
server never sends: the bots read the study's items and stimuli from the database
(``--db``, read-only). The ``random`` profile needs no database.

Simulated participants enroll with ``mode=debug`` by default, so they never mix with live
data (``camstudy analyze --mode debug`` analyses them).
"""

from bots.bot import Bot, BotResult
from bots.client import RETRY_STATUSES, Client, Response, ServerError, recruitment_params
from bots.database import Audit, StudyKey, Truth, audit
from bots.profiles import PROFILES, TRUST_SCALE, Profile, trust_distribution
from bots.run import Report, simulate

__all__ = [
    "PROFILES",
    "RETRY_STATUSES",
    "TRUST_SCALE",
    "Audit",
    "Bot",
    "BotResult",
    "Client",
    "Profile",
    "Report",
    "Response",
    "ServerError",
    "StudyKey",
    "Truth",
    "audit",
    "recruitment_params",
    "simulate",
    "trust_distribution",
]
