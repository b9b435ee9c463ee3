"""Sample sizes for the two studies (statsmodels' power classes underneath), and the
``camstudy power`` command.

- Class discrimination: two accuracies ``p1`` vs ``p2`` (two independent groups of answers,
  e.g. two methods in a between design), Cohen's ``h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p2))``
  (statsmodels ``proportion_effectsize``) and the normal-approximation power of the two-sided
  z-test (``NormalIndPower``): ``n`` answers per group solves
  ``Phi(|h| sqrt(n/2) - z_{1-a/2}) + Phi(-|h| sqrt(n/2) - z_{1-a/2}) = power``, i.e. close to
  ``n = 2 ((z_{1-a/2} + z_{power}) / h)^2``. Answers of one worker are correlated (intraclass
  correlation ``icc``); with ``m`` answers per worker and group the design effect is
  ``deff = 1 + (m - 1) icc``, so the clustered study needs ``n * deff`` answers per group,
  i.e. ``workers = ceil(n * deff / m)`` workers per group. This treats the groups as
  independent samples of workers (a between design); in a within design each worker
  contributes to both groups and the figure is conservative. Image effects are not modelled.
- Trust: the per-worker mean score against 0 (one-sample t-test, ``TTestPower``) with effect
  size ``d = mean / sd``, where ``sd`` is the SD of the per-worker mean scores (not of single
  answers); the result is a number of workers.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from camstudy.errors import UserError


@dataclass(frozen=True)
class ProportionsPower:
    """Sample size for p1 vs p2: ``answers_per_group`` (unclustered, rounded up; the exact
    solution is ``n_exact``), ``design_effect``, ``answers_per_group_clustered`` = ceil(n_exact
    * deff), ``workers_per_group`` = ceil(n_exact * deff / m)."""

    p1: float
    p2: float
    alpha: float
    power: float
    h: float
    n_exact: float
    answers_per_group: int
    answers_per_worker: int
    icc: float
    design_effect: float
    answers_per_group_clustered: int
    workers_per_group: int


@dataclass(frozen=True)
class OneSamplePower:
    """Workers for a one-sample t-test of the per-worker mean against 0: ``d = mean / sd``,
    ``n_exact`` (the solution) and ``workers`` = ceil(n_exact)."""

    mean: float
    sd: float
    alpha: float
    power: float
    d: float
    n_exact: float
    workers: int


def _check_level(name: str, value: float) -> None:
    if not 0 < value < 1:  # NaN fails too
        raise UserError(f"{name} must be in (0, 1), not {value}")


def n_per_group_two_proportions(
    p1: float, p2: float, alpha: float = 0.05, power: float = 0.8, answers_per_worker: int = 1, icc: float = 0.0
) -> ProportionsPower:
    """Answers and workers per group to detect accuracy ``p1`` vs ``p2`` (see the module doc:
    n answers per group from Cohen's h and ``NormalIndPower``, two-sided; then workers =
    ceil(n * (1 + (m - 1) icc) / m) with m = ``answers_per_worker``)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    _check_level("p1", p1)
    _check_level("p2", p2)
    _check_level("alpha", alpha)
    _check_level("power", power)
    if p1 == p2:
        raise UserError("p1 and p2 must differ (no sample size detects a zero difference)")
    if isinstance(answers_per_worker, bool) or int(answers_per_worker) != answers_per_worker or answers_per_worker < 1:
        raise UserError(f"answers per worker must be a positive integer, not {answers_per_worker}")
    if not 0 <= icc <= 1:
        raise UserError(f"icc must be in [0, 1], not {icc}")
    m = int(answers_per_worker)
    h = float(proportion_effectsize(p1, p2))
    n = float(
        NormalIndPower().solve_power(effect_size=abs(h), alpha=alpha, power=power, ratio=1.0, alternative="two-sided")
    )
    deff = 1 + (m - 1) * icc
    return ProportionsPower(
        p1,
        p2,
        alpha,
        power,
        h,
        n,
        math.ceil(n),
        m,
        float(icc),
        deff,
        math.ceil(n * deff - 1e-9),
        math.ceil(n * deff / m - 1e-9),
    )


def n_trust_one_sample(mean: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> OneSamplePower:
    """Workers to detect a mean per-worker trust score ``mean`` (SD ``sd`` of the per-worker
    means) against 0 with a two-sided one-sample t-test (``TTestPower``, d = mean / sd)."""
    from statsmodels.stats.power import TTestPower

    _check_level("alpha", alpha)
    _check_level("power", power)
    if not sd > 0:
        raise UserError(f"sd must be positive, not {sd}")
    if mean == 0 or not math.isfinite(mean):
        raise UserError(f"mean must be a non-zero number, not {mean}")
    d = abs(mean) / sd
    n = float(TTestPower().solve_power(effect_size=d, alpha=alpha, power=power, alternative="two-sided"))
    return OneSamplePower(mean, sd, alpha, power, mean / sd, n, math.ceil(n - 1e-9))


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run_power(args: argparse.Namespace) -> int:
    """``camstudy power accuracy|trust``: print the sample size as a short table."""
    if args.action == "accuracy":
        r = n_per_group_two_proportions(args.p1, args.p2, args.alpha, args.power, args.answers_per_worker, args.icc)
        rows = [
            ("p1 vs p2", f"{r.p1:g} vs {r.p2:g}"),
            ("alpha, power", f"{r.alpha:g}, {r.power:g}"),
            ("Cohen's h", f"{r.h:.4f}"),
            ("answers per group", f"{r.answers_per_group} ({r.n_exact:.1f})"),
            ("answers per worker", str(r.answers_per_worker)),
            ("icc", f"{r.icc:g}"),
            ("design effect", f"{r.design_effect:.3f}"),
            ("answers per group (clustered)", str(r.answers_per_group_clustered)),
            ("workers per group", str(r.workers_per_group)),
        ]
    else:
        t = n_trust_one_sample(args.mean, args.sd, args.alpha, args.power)
        rows = [
            ("mean, sd", f"{t.mean:g}, {t.sd:g}"),
            ("alpha, power", f"{t.alpha:g}, {t.power:g}"),
            ("Cohen's d", f"{t.d:.4f}"),
            ("workers", f"{t.workers} ({t.n_exact:.1f})"),
        ]
    print(_table(rows))
    return 0


def add_power_parser(sub) -> None:
    """Register ``camstudy power accuracy`` and ``camstudy power trust`` on the subparsers."""
    p = sub.add_parser("power", help="sample sizes for the class-discrimination and trust studies")
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = act.add_parser("accuracy", help="answers and workers per group for accuracy p1 vs p2")
    a.add_argument("--p1", type=float, required=True, help="accuracy of one method, in (0, 1)")
    a.add_argument("--p2", type=float, required=True, help="accuracy of the other, in (0, 1)")
    a.add_argument(
        "--answers-per-worker", type=int, default=1, metavar="M", help="answers each worker gives per group (default 1)"
    )
    a.add_argument(
        "--icc", type=float, default=0.0, metavar="R", help="intraclass correlation of one worker's answers (default 0)"
    )
    t = act.add_parser("trust", help="workers for a mean trust score against 0")
    t.add_argument("--mean", type=float, required=True, help="expected mean score (-2..2)")
    t.add_argument("--sd", type=float, required=True, help="SD of the per-worker mean scores")
    for q in (a, t):
        q.add_argument("--alpha", type=float, default=0.05, help="two-sided level (default 0.05)")
        q.add_argument("--power", type=float, default=0.8, help="power (default 0.8)")
    p.set_defaults(func=run_power)
