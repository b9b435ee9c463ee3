"""The study's declared exclusion rules, applied per participant, and the participant flow.

A participant is one ``(mode, participant)`` pair of the answers (a pseudonym is per worker and
study, so the same worker in sandbox and live would otherwise be merged). Only participants
with at least one stored answer appear in an export, so "enrolled" counts those.

The rules (``study.settings.Exclusions`` or a dict with the same keys; a missing key takes the
dataclass's default, None switches a rule off):

- ``max_failed_attention_checks``: excluded when the participant failed more checks than
  this. A failed check is, for class discrimination, ``correct`` False; for trust, an
  ``answer`` other than 0 ("equally": the same visualization is on both sides). A check
  without a recorded ``correct`` / ``answer`` counts as failed.
- ``min_median_rt_ms``: excluded when the median ``rt_ms`` of the participant's non-check
  trials is below this (a participant without non-check trials is not judged by it).
- ``require_complete``: excluded when ``participant_status`` is neither ``completed`` nor
  ``screened_out`` (i.e. still ``active``: the participant stopped part-way). The status is
  what the app recorded, so this does not count answers against the plan.

A participant failing several rules is counted under each rule and once in ``excluded``.
Attention-check rows are dropped from the analysed data whatever the rules say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

import numpy as np
import pandas as pd

from analysis.kinds import is_scale
from camstudy.errors import UserError
from study.settings import Exclusions

FINISHED = ("completed", "screened_out")
RULES = ("attention", "too_fast", "incomplete")
KEY = ["mode", "participant"]


def as_rules(rules: Exclusions | Mapping[str, Any] | None) -> Exclusions:
    """``rules`` as an :class:`Exclusions` (a dict's missing keys take the defaults)."""
    if rules is None:
        return Exclusions()
    if isinstance(rules, Exclusions):
        return rules
    if isinstance(rules, Mapping):
        known = {f.name for f in fields(Exclusions)}
        unknown = sorted(set(rules) - known)
        if unknown:
            raise UserError(
                f"exclusions: unknown rule{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return Exclusions(**{**asdict(Exclusions()), **rules})
    raise UserError(f"exclusions must be an Exclusions or a dict, not {type(rules).__name__}")


def failed_checks(df: pd.DataFrame) -> pd.Series:
    """Per row: True where the row is a failed attention check (see the module doc)."""
    checks = df["is_attention_check"].astype(bool)
    if len(df) and is_scale(df["study_kind"].iloc[0]):  # a scale kind's check expects 0, the middle
        answer = pd.array(df["answer"], dtype="Int64")
        failed = (answer != 0).fillna(True)
    else:
        failed = (~pd.array(df["correct"], dtype="boolean")).fillna(True)
    return checks & pd.Series(failed.astype(bool), index=df.index)


def participant_table(df: pd.DataFrame, rules: Exclusions | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per participant: answers, checks, failed_checks, median_rt_ms (non-check
    trials), status, one boolean column per rule (attention, too_fast, incomplete) and
    ``excluded`` (any rule)."""
    return _participants(df, rules)[0]


def _participant_codes(df: pd.DataFrame) -> np.ndarray:
    """Per row, the participant's number: ``(mode, participant)`` pairs numbered in order of
    first appearance (the order of ``groupby(KEY, sort=False)``); -1 where either is missing
    (such rows belong to no participant, as groupby drops missing keys)."""
    mode = pd.factorize(df["mode"])[0].astype(np.int64)
    part = pd.factorize(df["participant"])[0].astype(np.int64)
    ok = (mode >= 0) & (part >= 0)
    codes = np.full(len(df), -1, dtype=np.int64)
    codes[ok] = pd.factorize(mode[ok] * (int(part.max(initial=0)) + 1) + part[ok])[0]
    return codes


def _participants(df: pd.DataFrame, rules: Exclusions | Mapping[str, Any] | None) -> tuple[pd.DataFrame, np.ndarray]:
    """(:func:`participant_table`, each row's participant number: its row in the table, or
    -1 for a row without a mode or participant)."""
    r = as_rules(rules)
    codes = _participant_codes(df)
    check = df["is_attention_check"].astype(bool).to_numpy()
    ok = codes >= 0
    work = pd.DataFrame(
        {
            "check": check,
            "failed": failed_checks(df),
            "trial_rt": df["rt_ms"].astype("float64").where(~df["is_attention_check"].astype(bool)),
            "status": df["participant_status"],
            "row": np.arange(len(df)),
        }
    ).reset_index(drop=True)
    if not ok.all():
        work = work[ok]
    g = work.groupby(codes[ok], sort=True)  # codes are numbered in order of first appearance
    first = g["row"].first().to_numpy()
    index = pd.MultiIndex.from_arrays([df["mode"].iloc[first], df["participant"].iloc[first]], names=KEY)
    table = pd.DataFrame(
        {
            "answers": g.size(),
            "checks": g["check"].sum().astype("int64"),
            "failed_checks": g["failed"].sum().astype("int64"),
            "median_rt_ms": g["trial_rt"].median(),
            "status": g["status"].last(),
        }
    )
    table.index = index
    flag_exclusions(table, r)
    return table.reset_index(), codes


def flag_exclusions(table: pd.DataFrame, r: Exclusions) -> None:
    """Add each rule's column and ``excluded`` to a per-participant table in place (columns
    ``failed_checks``, ``median_rt_ms``, ``status``)."""
    table["attention"] = (
        table["failed_checks"] > r.max_failed_attention_checks if r.max_failed_attention_checks is not None else False
    )
    table["too_fast"] = (
        (table["median_rt_ms"] < r.min_median_rt_ms).fillna(False) if r.min_median_rt_ms is not None else False
    )
    table["incomplete"] = ~table["status"].isin(FINISHED) if r.require_complete else False
    table[list(RULES)] = table[list(RULES)].astype(bool)
    table["excluded"] = table[list(RULES)].any(axis=1)


def apply_exclusions(
    df: pd.DataFrame, rules: Exclusions | Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """``(kept, flow)``: the non-check answers of the participants no rule excludes, and the
    participant flow as a dict of counts:

    ``enrolled`` (participants with answers), ``completed`` (status completed),
    ``screened_out``, ``active``, ``excluded_attention``, ``excluded_too_fast``,
    ``excluded_incomplete`` (each participant under every rule it fails), ``excluded`` (each
    excluded participant once), ``analysed_participants``, ``answers`` (all rows),
    ``analysed_answers`` (the rows of ``kept``). See :func:`flow_table` for a printable form.
    """
    table, codes = _participants(df, rules)
    kept_people = np.append(~table["excluded"].to_numpy(dtype=bool), False)  # code -1: nobody
    keep = kept_people[codes] & ~df["is_attention_check"].astype(bool).to_numpy()
    kept = df.loc[keep].reset_index(drop=True)
    status = table["status"]
    flow = {
        "enrolled": len(table),
        "completed": int((status == "completed").sum()),
        "screened_out": int((status == "screened_out").sum()),
        "active": int((~status.isin(FINISHED)).sum()),
        **{f"excluded_{rule}": int(table[rule].sum()) for rule in RULES},
        "excluded": int(table["excluded"].sum()),
        "analysed_participants": int((~table["excluded"]).sum()),
        "answers": len(df),
        "analysed_answers": len(kept),
    }
    return kept, flow


def flow_table(flow: Mapping[str, int]) -> pd.DataFrame:
    """The flow dict as a two-column frame (step, count), in the order it was built."""
    return pd.DataFrame({"step": list(flow), "count": list(flow.values())})
