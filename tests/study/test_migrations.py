"""Migrations on data: a database made at revision 0001 keeps its rows through 0002 (and
back), with worker keys, one attempt count across modes and the blind stimulus sizes; 0003
adds the 2x stimulus columns (and drops them again)."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import text

from study.blinding import BUCKET
from study.db import alembic_config, database_url, make_engine


def test_0002_fills_in_worker_keys_attempts_and_padded_sizes(db_url, stimuli_dir):
    cfg = alembic_config(database_url(db_url))
    command.upgrade(cfg, "0001")
    manifest = json.loads((stimuli_dir / "manifest.json").read_text())["rows"]
    a, b = [r for r in manifest if r["model_role"] in ("stronger", "weaker")][:2]
    engine = make_engine(db_url)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO study (id, slug, title, kind, config_toml, config_sha256, settings, stimuli_dir, "
                "manifest_sha256, secret, enrollments, created_at) VALUES (1, 's', 't', 'trust', '', '', '{}', "
                ":dir, '', 'k', 0, CURRENT_TIMESTAMP)"
            ),
            {"dir": str(stimuli_dir)},
        )
        for i, row in enumerate((a, b), start=1):
            c.execute(
                text(
                    "INSERT INTO stimulus (id, study_id, stimulus_id, file, sha256, method, model, model_role, "
                    "provenance) VALUES (:i, 1, :sid, :file, '', 'm', 'x', :role, '{}')"
                ),
                {"i": i, "sid": row["stimulus_id"], "file": row["file"], "role": row["model_role"]},
            )
        c.execute(
            text(
                "INSERT INTO item (id, study_id, item_id, task, image_id, category, method, stimulus_ids, "
                "is_attention_check) VALUES (1, 1, 'i', 'trust', 'img', 'cat', 'm', :ids, false)"
            ),
            {"ids": json.dumps([a["stimulus_id"], b["stimulus_id"]])},
        )
        # The same worker (in two spellings) live and in debug: both attempt 1 under 0001's rules.
        for i, (mode, wid) in enumerate((("live", "W1"), ("debug", " w1 "), ("live", None)), start=1):
            c.execute(
                text(
                    "INSERT INTO participant (id, study_id, mode, platform, worker_id, attempt, pseudonym, "
                    "condition, seed, status, stage, created_at) VALUES (:i, 1, :mode, 'mturk', :w, 1, 'p', "
                    "'all', 1, 'completed', 'debrief', CURRENT_TIMESTAMP)"
                ),
                {"i": i, "mode": mode, "w": wid},
            )
    command.upgrade(cfg, "head")
    with engine.connect() as c:
        people = c.execute(text("SELECT id, worker_key, attempt FROM participant ORDER BY id")).all()
        sizes = dict(c.execute(text("SELECT id, served_size FROM stimulus")).all())
    assert [tuple(p) for p in people] == [(1, "w1", 1), (2, "w1", 2), (3, None, 1)]
    files = [(stimuli_dir / r["file"]).stat().st_size for r in (a, b)]
    assert sizes[1] == sizes[2] and sizes[1] % BUCKET == 0 and sizes[1] >= max(files) + 12  # one item: one size
    command.downgrade(cfg, "0001")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM participant")).scalar() == 3
    engine.dispose()


def test_0003_adds_the_2x_columns_and_drops_them_again(db_url, stimuli_dir):
    """Stimuli of a study made before 0003 keep their rows with NULL 2x columns; a study
    created at the head fills them; the downgrade drops the columns and keeps the rows."""
    from sqlalchemy import inspect

    cfg = alembic_config(database_url(db_url))
    command.upgrade(cfg, "0002")
    row = next(
        r for r in json.loads((stimuli_dir / "manifest.json").read_text())["rows"] if r["model_role"] == "weaker"
    )
    engine = make_engine(db_url)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO study (id, slug, title, kind, config_toml, config_sha256, settings, stimuli_dir, "
                "manifest_sha256, secret, enrollments, created_at) VALUES (1, 's', 't', 'trust', '', '', '{}', "
                ":dir, '', 'k', 0, CURRENT_TIMESTAMP)"
            ),
            {"dir": str(stimuli_dir)},
        )
        c.execute(
            text(
                "INSERT INTO stimulus (id, study_id, stimulus_id, file, sha256, method, model, model_role, "
                "provenance, served_size) VALUES (1, 1, :sid, :file, '', 'm', 'x', 'weaker', '{}', 4096)"
            ),
            {"sid": row["stimulus_id"], "file": row["file"]},
        )
    command.upgrade(cfg, "head")
    columns = {col["name"] for col in inspect(engine).get_columns("stimulus")}
    assert {"file_2x", "served_size_2x"} <= columns
    with engine.begin() as c:
        assert tuple(c.execute(text("SELECT served_size, file_2x, served_size_2x FROM stimulus")).one()) == (
            4096,
            None,
            None,
        )
        c.execute(text("UPDATE stimulus SET file_2x = :f, served_size_2x = 8192"), {"f": row["file_2x"]})
    command.downgrade(cfg, "0002")
    assert not {"file_2x", "served_size_2x"} & {col["name"] for col in inspect(engine).get_columns("stimulus")}
    with engine.connect() as c:
        assert c.execute(text("SELECT stimulus_id, served_size FROM stimulus")).one() == (row["stimulus_id"], 4096)
    engine.dispose()
