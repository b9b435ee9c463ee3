"""The stimulus manifest: one row per PNG, what ``camstudy study create`` reads.

Files in a build folder:

* ``stimuli/<stimulus_id>.png``: the stimuli, all ``display_size`` square, and
  ``stimuli/<stimulus_id>@2x.png`` the same at twice the size, for screens with more than
  one device pixel per CSS pixel (``how_2x`` says where its pixels came from; see
  docs/stimuli.md).
* ``manifest.json`` / ``manifest.csv``: the rows (CSV: ``top5`` and ``structure`` as JSON
  strings), sorted by ``stimulus_id``, written atomically at the end of a run.
  ``structure`` holds an explanation stimulus's structure scores (:mod:`stimuli.structure`;
  null for photos); the JSON's ``structure`` entry holds the thresholds and the summary
  per (model role, method), with the degenerate pairs.
* ``manifest.partial.jsonl``: rows appended as stimuli are written, so an interrupted run
  resumes; removed when the run completes.
* ``build.json``: the config's sha256, the shard, timings and counts, and the degenerate
  (model role, method) pairs.
* ``plan.json``: the items of both tasks; ``plan_report.csv``: why each image was kept or
  dropped, per task.
* ``predictions.json``: both models' top-5 and per-category best class for every candidate
  image (what planning used; a rerun reads it instead of recomputing).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

from camstudy.contracts import MANIFEST_FIELDS, MANIFEST_JSON_FIELDS, BuildFiles

# The manifest's fields and a build's file names are the stages' contract (camstudy.contracts).
FIELDS = MANIFEST_FIELDS
JSON_FIELDS = MANIFEST_JSON_FIELDS  # written into the CSV as JSON strings

MANIFEST_JSON = BuildFiles.MANIFEST_JSON
MANIFEST_CSV = BuildFiles.MANIFEST_CSV
PARTIAL = BuildFiles.PARTIAL
BUILD = BuildFiles.BUILD
PLAN = BuildFiles.PLAN
PLAN_REPORT = BuildFiles.PLAN_REPORT
STIMULI_DIR = BuildFiles.STIMULI_DIR


def grid_text(grid: tuple[int, int] | None) -> str:
    """The layer grid as the manifest writes it: ``"14x14"`` (h x w), or "" when unknown."""
    return f"{grid[0]}x{grid[1]}" if grid else ""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file.

    ``sync``: the data reaches the disk before the rename. Without it the caller must
    :func:`fsync_path` the file before anything durable names it.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_path(path: Path) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, obj) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def write_manifest(out: Path, rows: Iterable[dict], extra: dict | None = None) -> list[dict]:
    """Write ``manifest.json`` and ``manifest.csv`` (rows sorted by id); return the rows."""
    rows = sorted(rows, key=lambda r: r["stimulus_id"])
    write_json(out / MANIFEST_JSON, {**(extra or {}), "fields": list(FIELDS), "rows": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, **{k: json.dumps(r[k]) for k in JSON_FIELDS}})
    write_atomic(out / MANIFEST_CSV, buf.getvalue().encode())
    return rows


def read_manifest(out: Path) -> dict:
    """The ``manifest.json`` of a build folder (``rows`` and the run's metadata)."""
    return json.loads((out / MANIFEST_JSON).read_text())


def read_partial(out: Path) -> list[dict]:
    """Rows of an interrupted run; a torn last line (killed mid-write) is ignored."""
    path = out / PARTIAL
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def file_matches(out: Path, row: dict) -> bool:
    """True when the row has every field of this version and its PNGs (1x and 2x) exist
    with the recorded sha256s. A row of an older build (no 2x file, no structure scores)
    does not match, so a rerun renders it again."""
    if any(k not in row for k in FIELDS):
        return False
    try:
        return (
            sha256_bytes((out / row["file"]).read_bytes()) == row["sha256"]
            and sha256_bytes((out / row["file_2x"]).read_bytes()) == row["sha256_2x"]
        )
    except OSError:
        return False
