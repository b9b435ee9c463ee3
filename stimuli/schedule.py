"""The build's scheduler: engine calls on the main thread, rendering and writing on worker
threads (beside the engine on a GPU, between its calls on the CPU), the batches of a shard.

See :mod:`stimuli.build` for the whole run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from stimuli import manifest as mf
from stimuli.config import ROLES
from stimuli.plan import Plan, explanation_id, photo_id, plan_trials
from stimuli.writer import batch_jobs, forward_only, load_inputs, write_photos

if TYPE_CHECKING:  # annotations only: stimuli.build imports this module
    from stimuli.build import Stage

# Rendering, PNG encoding and writing run on this many threads, each with one torch
# thread (zlib, ISA-L, hashing and file writes release the GIL); on a GPU, finished engine
# calls waiting for them are bounded to keep memory flat.
WORKERS = max(2, min(8, os.cpu_count() or 2))


MAX_IN_FLIGHT = 2 * WORKERS


def _one_torch_thread() -> None:
    """Run this worker's torch ops on its own thread only (the setting is per thread), so
    that the workers together use the cores once rather than each starting a full team."""
    torch.set_num_threads(1)


def render_all(
    stage: Stage, out: Path, shard: tuple[int, int], valid: dict, known: dict, progress: bool, overlap: bool
):
    """Engine calls (or, for other shards' batches, forward passes) on the main thread,
    rendering, writing and the next batch's decoding on workers (beside the engine on a
    GPU, between its calls on the CPU: see the module doc); then the plan, the photos, and
    the rows the plan uses."""
    from tqdm import tqdm

    cfg = stage.cfg
    preds = {role: dict(known[role]) for role in ROLES}
    records = list(stage.records.values())
    plan = stage.plan
    if plan is None and all(i in preds[role] for role in ROLES for i in stage.candidates):
        plan = plan_trials(cfg, records, preds, stage.maps)  # a resumed run: all predictions known
    wanted = None if plan is None else set(plan.stimulus_ids(cfg.methods))
    expl = batches(stage.candidates, cfg.batch_size)
    mine_ids: set[str] = set()
    todo: list[tuple[list[str], set[str] | None]] = []
    rows: list[dict] = []
    for j, batch in enumerate(expl):
        have = all(i in preds[role] for role in ROLES for i in batch)
        if j % shard[1] == shard[0]:
            ids = explanation_ids(stage, batch)
            mine_ids.update(ids)
            need = {s for s in ids if wanted is None or s in wanted}
            if have and need <= valid.keys():
                rows += [valid[s] for s in sorted(need)]
            else:
                todo.append((batch, need))
        elif not have:
            todo.append((batch, None))

    stats = {
        "rendered": 0,
        "engine_seconds": 0.0,
        "forward_seconds": 0.0,
        "render_seconds": 0.0,
        "unused": 0,
        "guided_rectifiers": {},
    }
    t0 = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=WORKERS, initializer=_one_torch_thread) as pool,
        ThreadPoolExecutor(max_workers=1, initializer=_one_torch_thread) as loader,  # not queued behind renders
        ThreadPoolExecutor(max_workers=1) as syncer,
        open(out / mf.PARTIAL, "a") as partial,
    ):
        # The PNGs are fsynced here, one by one, while the engine computes: the thread
        # waits on the disk, not the CPU, where 481 fsyncs inside the workers held them
        # 0.2-0.5 s per demo build.
        synced: list[Future] = []

        def sync(file: str) -> None:
            synced.append(syncer.submit(mf.fsync_path, out / file))

        pending: list[Future] = []
        ahead = loader.submit(load_inputs, stage, *todo[0]) if todo else None
        for k, (batch, need) in enumerate(tqdm(todo, desc="stimuli", unit="batch", disable=not progress)):
            inputs = ahead.result()
            nxt = todo[k + 1] if k + 1 < len(todo) else None
            ahead = loader.submit(load_inputs, stage, *nxt) if overlap and nxt else None
            if need is None:
                forward_only(stage, batch, inputs, preds, stats)
            elif overlap:
                for job in batch_jobs(stage, out, batch, inputs, need, preds, stats):
                    pending.append(pool.submit(job))
                    pending = _drain(pending, rows, partial, MAX_IN_FLIGHT, sync)
            else:
                jobs = list(batch_jobs(stage, out, batch, inputs, need, preds, stats))  # both engine calls
                pending += [pool.submit(job) for job in jobs]
            if not overlap:
                ahead = loader.submit(load_inputs, stage, *nxt) if nxt else None
                pending = _drain(pending, rows, partial, 0, sync)
        if stage.plan is None:
            plan = plan_trials(cfg, records, preds, stage.maps)
        for j, chunk in enumerate(photo_batches(plan, cfg.batch_size), start=len(expl)):
            if j % shard[1] != shard[0]:
                continue
            ids = [photo_id(i) for i in chunk]
            mine_ids.update(ids)
            if all(s in valid for s in ids):
                rows += [valid[s] for s in ids]
            else:
                pending.append(pool.submit(write_photos, stage, out, chunk))
        _drain(pending, rows, partial, 0, sync)
        for fut in synced:
            fut.result()  # every file is on the disk before the manifest names it
    stats["render_seconds"] = time.perf_counter() - t0

    needed = set(plan.stimulus_ids(cfg.methods)) & mine_ids
    kept = {r["stimulus_id"]: r for r in rows if r["stimulus_id"] in needed}
    for r in rows:
        if r["stimulus_id"] not in needed:  # explained before the plan dropped it
            (out / r["file"]).unlink(missing_ok=True)
            (out / r["file_2x"]).unlink(missing_ok=True)
            stats["unused"] += 1
    missing = needed - kept.keys()
    if missing:
        raise RuntimeError(
            f"{len(missing)} planned stimuli were not rendered (e.g. {min(missing)}): the predictions "
            f"changed between runs into {out}; delete the folder and build again"
        )
    stats["rendered"] = sum(1 for s in kept if s not in valid)
    return list(kept.values()), stats, plan, preds


def _drain(pending: list[Future], rows: list[dict], partial, keep: int, sync: Callable[[str], None]) -> list[Future]:
    """Collect finished jobs (oldest first, waiting while more than ``keep`` are left);
    append their rows to the partial manifest, so an interrupted run can resume, and hand
    each row's files (1x and 2x) to ``sync``."""
    left = []
    for i, fut in enumerate(pending):
        if fut.done() or len(pending) - i > keep:
            for row in fut.result():  # re-raises a rendering or write error here
                rows.append(row)
                partial.write(json.dumps(row) + "\n")
                sync(row["file"])
                sync(row["file_2x"])
        else:
            left.append(fut)
    partial.flush()
    return left


def explanation_ids(stage: Stage, batch: list[str]) -> list[str]:
    return [
        explanation_id(i, role, m, c)
        for i in batch
        for role in ROLES
        for m in stage.cfg.methods
        for c in stage.candidates[i]
    ]


def batches(explanations: dict[str, list[str]], size: int) -> list[list[str]]:
    """Image ids to explain, grouped by how many categories each needs, in id order."""
    by_k: dict[int, list[str]] = {}
    for image_id, cats in explanations.items():
        by_k.setdefault(len(cats), []).append(image_id)
    out = []
    for k in sorted(by_k):
        ids = sorted(by_k[k])
        out += [ids[i : i + size] for i in range(0, len(ids), size)]
    return out


def photo_batches(plan: Plan, size: int) -> list[list[str]]:
    photos = sorted(plan.photos)
    return [photos[j : j + size] for j in range(0, len(photos), size)]
