"""``camstudy stimuli merge``: the shard folders of one config into one build, the same rows
as a single run.
"""

from __future__ import annotations

import json
from pathlib import Path

from camstudy.errors import UserError
from camstudy.version import code_version
from stimuli import manifest as mf
from stimuli import structure
from stimuli.build import PREDICTIONS, degenerate_pairs, structure_meta, warn_lines
from stimuli.config import ROLES


def merge(dirs: list[Path], out: Path) -> dict:
    """Merge the shard folders of one config into ``out`` (which may be one of them).

    Checks that every shard ``0..N-1`` is there once, complete, of the same config and
    plan; the merged manifest holds the same rows as a single run would.
    """
    import shutil

    builds = []
    for d in dirs:
        try:
            b = json.loads((d / mf.BUILD).read_text())
            rows = mf.read_manifest(d)["rows"]
            plan = (d / mf.PLAN).read_text()
        except (OSError, KeyError, json.JSONDecodeError):
            raise UserError(f"{d}: not a finished stimuli build (no build.json, manifest.json or plan.json)") from None
        if not b.get("complete"):
            raise UserError(f"{d}: the build did not finish; rerun it (it resumes) before merging")
        builds.append((d, b, rows, plan))
    shas = {b["config_sha256"] for _, b, _, _ in builds}
    if len(shas) != 1:
        raise UserError("the folders hold stimuli of different configs; merge shards of one config only")
    n = {b["shard"][1] for _, b, _, _ in builds}
    shards = sorted(b["shard"][0] for _, b, _, _ in builds)
    if len(n) != 1 or shards != list(range(n.pop())):
        raise UserError(f"need each shard 0..N-1 exactly once, got shards {shards}")
    if len({p for *_, p in builds}) != 1:
        raise UserError(
            "the shards planned different trials (different images or predictions); rebuild on one kind of device"
        )
    rows, seen = [], set()
    out.mkdir(parents=True, exist_ok=True)
    for d, _, shard_rows, _ in builds:
        for r in shard_rows:
            if r["stimulus_id"] in seen:
                raise UserError(f"stimulus {r['stimulus_id']} appears in two shards")
            seen.add(r["stimulus_id"])
            if d.resolve() != out.resolve() and not mf.file_matches(out, r):
                for key in ("file", "file_2x"):
                    (out / r[key]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(d / r[key], out / r[key])
            rows.append(r)
    first = builds[0][0]
    if first.resolve() != out.resolve():
        for name in (mf.PLAN, mf.PLAN_REPORT, PREDICTIONS):
            if (first / name).exists():
                shutil.copy2(first / name, out / name)
    sha = shas.pop()
    pairs = structure.pair_summary(rows)  # over all shards' rows: a shard saw only its own
    guided, plain = _merged_guided([b for _, b, _, _ in builds])
    mf.write_manifest(
        out,
        rows,
        {
            "config_sha256": sha,
            "shard": [0, 1],
            **structure_meta(pairs),
            "guided_rectifiers": guided,
            "plain_gradient": plain,
        },
    )
    summary = {
        "config_sha256": sha,
        "shard": [0, 1],
        "merged": True,
        "merged_from": [str(d) for d in dirs],
        "complete": True,
        "stimuli": len(rows),
        "code_version": code_version(),
        "degenerate_pairs": degenerate_pairs(pairs),
        "guided_rectifiers": guided,
        "plain_gradient": plain,
    }
    mf.write_json(out / mf.BUILD, summary)
    warn_lines(pairs, plain)
    return summary


def _merged_guided(builds: list[dict]) -> tuple[dict, list[dict]]:
    """The shards' ``guided_rectifiers`` (the fewest per role) and ``plain_gradient`` entries."""
    guided: dict[str, int | None] = {}
    for b in builds:
        for role, n in (b.get("guided_rectifiers") or {}).items():
            guided[role] = n if guided.get(role) is None else (guided[role] if n is None else min(guided[role], n))
    plain = {p["model_role"]: p for b in builds for p in b.get("plain_gradient") or []}
    return guided, [plain[r] for r in ROLES if r in plain]
