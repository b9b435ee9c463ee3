"""How simulated participants behave: profiles (per-method accuracy, trust-score
distributions, reaction times, attention-check failures, dropouts, reloads) and the
trust-score distribution of a given mean."""

from __future__ import annotations

from dataclasses import dataclass, field

from camstudy.contracts import TRUST_VALUES
from camstudy.kinds import tilted_distribution

TRUST_SCALE = TRUST_VALUES


@dataclass(frozen=True)
class Profile:
    """How a simulated participant behaves.

    ``accuracy``: probability of the correct option per method (class discrimination);
    ``trust_mean``: mean score in favour of the stronger model per method (-2..2);
    ``kind_accuracy``: kind name -> method -> probability of the right option, for the kinds
    after the paper (a kind or method without an entry answers at chance);
    reaction times are log-normal around ``rt_median_ms``; each attention check is failed
    with ``attention_failure``; ``dropout`` of the participants stop before the end and
    ``reload`` of them reload the task page once on the way; with ``reload_after_error`` a
    participant also reloads whenever an answer needed retries (as people do after an
    error page), which checks that the server resumes them at the right trial.
    """

    name: str
    accuracy: dict[str, float] = field(default_factory=dict)
    default_accuracy: float = 0.5
    trust_mean: dict[str, float] = field(default_factory=dict)
    default_trust_mean: float = 0.0
    kind_accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    rt_median_ms: float = 2500.0
    rt_sigma: float = 0.5
    attention_failure: float = 0.0
    dropout: float = 0.0
    reload: float = 0.0
    reload_after_error: bool = False  # reload the page after an answer needed retries
    needs_oracle: bool = True  # False: answers at chance, without reading the answer key


PROFILES = {
    # The paper's class-discrimination accuracies and trust means (Selvaraju et al.);
    # Grad-CAM and the photo baseline were not reported, so they get plausible values.
    "paper": Profile(
        "paper",
        accuracy={
            "guided_gradcam": 0.6123,
            "guided_backprop": 0.4444,
            "deconvnet": 0.5333,
            "deconv_gradcam": 0.6037,
            "gradcam": 0.60,
            "photo": 0.97,
        },
        trust_mean={
            "guided_backprop": 1.00,
            "guided_gradcam": 1.27,
            "gradcam": 1.0,
            "deconvnet": 0.5,
            "deconv_gradcam": 0.8,
            "photo": 0.0,
        },
        # HIVE distinction (chance 25%): configured values, not published ones; a simulated
        # study checks that the report recovers them.
        kind_accuracy={"hive_distinction": {"gradcam": 0.55, "guided_gradcam": 0.45, "guided_backprop": 0.35}},
        attention_failure=0.02,
        dropout=0.05,
        reload=0.1,
    ),
    # Everything at chance: a null study.
    "random": Profile("random", rt_median_ms=2000.0, needs_oracle=False),
    # Careless workers: fast, at chance, failing attention checks half the time.
    "careless": Profile("careless", rt_median_ms=250.0, rt_sigma=0.3, attention_failure=0.5),
    # For load and fault tests: the paper's answers, everyone finishes; a participant
    # reloads only after an answer needed retries (a server restart, a lost connection).
    "steady": Profile(
        "steady",
        accuracy={
            "guided_gradcam": 0.6123,
            "guided_backprop": 0.4444,
            "deconvnet": 0.5333,
            "deconv_gradcam": 0.6037,
            "gradcam": 0.60,
            "photo": 0.97,
        },
        trust_mean={"guided_backprop": 1.00, "guided_gradcam": 1.27},
        reload_after_error=True,
    ),
    # For load benchmarks: like steady, but at chance, so the client reads no answer key and
    # does the same work against the app as against a floor server.
    "load": Profile("load", rt_median_ms=2000.0, reload_after_error=True, needs_oracle=False),
}


def trust_distribution(mean: float) -> list[float]:
    """Probabilities over -2..2 with the given mean: the maximum-entropy (exponentially
    tilted) distribution (:func:`camstudy.kinds.tilted_distribution` on the trust scale)."""
    return tilted_distribution(TRUST_SCALE, mean)
