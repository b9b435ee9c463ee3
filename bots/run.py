"""Many simulated participants: :func:`simulate` runs bots concurrently against a server
and returns a :class:`Report` (statuses, acknowledged answers, latency, retries, reloads)."""

from __future__ import annotations

import random
import secrets
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bots.bot import Bot, BotResult
from bots.database import StudyKey
from bots.profiles import PROFILES, Profile
from camstudy.errors import UserError


@dataclass
class Report:
    results: list[BotResult]
    seconds: float
    client_cpu_s: float = 0.0  # CPU time of the bots themselves (they share the machine)

    @property
    def answers(self) -> int:
        return sum(len(r.acknowledged) for r in self.results)

    def latency_ms(self, q: float) -> float:
        lat = sorted(x for r in self.results for x in r.latencies_ms)
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items()))
        lines = [
            f"{len(self.results)} simulated participants in {self.seconds:.1f} s "
            f"(the bots used {self.client_cpu_s:.1f} s of CPU): {counts}",
            f"{self.answers} answers acknowledged ({self.answers / self.seconds:.1f}/s), "
            f"answer latency p50 {self.latency_ms(0.5):.1f} ms, p99 {self.latency_ms(0.99):.1f} ms, "
            f"{sum(r.retries for r in self.results)} retries, {sum(r.reloads for r in self.results)} reloads "
            f"({sum(r.resume_errors for r in self.results)} resumed at the wrong trial)",
        ]
        lines += [f"  {r.worker_id}: {r.error}" for r in self.results if r.status == "failed"][:10]
        return "\n".join(lines)


def simulate(
    base_url: str,
    slug: str,
    participants: int,
    *,
    concurrency: int = 10,
    profile: str | Profile = "paper",
    seed: int = 0,
    db_url: str | None | bool = None,
    mode: str = "debug",
    run_id: str | None = None,
    pace_s: float = 0.0,
    ramp_s: float = 0.0,
    give_up_s: float = 120.0,
    backoff_s: float = 0.05,
    cafile: str | None = None,
) -> Report:
    """Run ``participants`` bots, ``concurrency`` at a time, against the server at ``base_url``.

    ``db_url``: the study's database, read for the platform, the signed link of ``mode`` and
    the answer key (``False``: none, for a server that is not camstudy's, such as the load
    benchmark's floor; then the bots send live Prolific-style links and answer at random); ``pace_s``: each bot waits this long before each answer (reading the
    trial); ``ramp_s``: bot ``i`` starts ``i / participants * ramp_s`` seconds after the
    first, as people arrive over time rather than in the same instant; ``cafile``: the CA
    certificate to trust for an https URL (e.g. a test proxy's self-signed one)."""
    prof = PROFILES.get(profile) if isinstance(profile, str) else profile
    if prof is None:
        raise UserError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    if participants < 1 or concurrency < 1:
        raise UserError("--participants and --concurrency must be at least 1")
    if db_url is False and (prof.needs_oracle or mode != "live"):
        raise UserError("without a database the bots can only take live links at chance (profile 'random' or 'load')")
    key = StudyKey(db_url, slug, mode)
    context = ssl.create_default_context(cafile=cafile) if base_url.startswith("https:") else None
    run_id = run_id or secrets.token_hex(3)
    start = time.perf_counter()
    cpu = time.process_time()

    def one(i: int) -> BotResult:
        delay = start + ramp_s * i / participants - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        # The behaviour depends on the seed and the bot's number only (the run id just keeps
        # worker ids unique), so the same seed gives the same participants again.
        return Bot(
            base_url,
            slug,
            f"sim-{run_id}-{i:05d}",
            prof,
            key,
            random.Random(f"{seed}:{i}"),
            pace_s,
            give_up_s,
            backoff_s,
            context,
        ).run()

    try:
        with ThreadPoolExecutor(max_workers=min(concurrency, participants)) as pool:
            results = list(pool.map(one, range(participants)))
    finally:
        key.close()
    return Report(results, time.perf_counter() - start, time.process_time() - cpu)
