"""study integrity: blind stimuli, normalised worker ids, shared sessions and limits

- stimulus.served_size (the padded size of its group, see study.blinding);
- study.tally (assignments per mode, condition and item, kept by enrollment);
- participant.worker_key (the normalised worker id), events_n and events_bytes;
- admin_session (server-side admin sessions), throttle (shared rate limits), app_secret
  (the signing key every host shares).

Existing stimuli get, where their files are still readable, the padded sizes a new study
would get; existing participants get their worker keys.

Revision ID: 0002
Revises: 0001
"""

import json
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stimulus") as batch:
        batch.add_column(sa.Column("served_size", sa.Integer(), nullable=True))
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("tally", sa.JSON(), nullable=True))
    with op.batch_alter_table("participant") as batch:
        batch.add_column(sa.Column("worker_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("events_n", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("events_bytes", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_event_participant", "event", ["participant_id"])
    op.create_table(
        "admin_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["admin_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_index("ix_admin_session_user_id", "admin_session", ["user_id"])
    op.create_table(
        "throttle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_throttle_key_at", "throttle", ["key", "at"])
    op.create_table(
        "app_secret",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    _backfill()
    with op.batch_alter_table("participant") as batch:
        batch.create_unique_constraint("uq_participant_worker_key_attempt", ["study_id", "worker_key", "attempt"])


def _backfill() -> None:
    from study.blinding import served_sizes
    from study.recruitment import worker_key

    conn = op.get_bind()
    # Worker keys, and attempts numbered per study and key across modes in enrollment order:
    # before this revision attempts were counted per mode (a worker's debug run and live run
    # were both attempt 1); the unique (study, worker key, attempt) needs one count.
    seen: dict[tuple[int, str], int] = {}
    rows = conn.execute(sa.text("SELECT id, study_id, platform, worker_id FROM participant ORDER BY id")).all()
    for pid, study_id, platform, raw in rows:
        key = worker_key(platform, raw)
        attempt = None
        if key is not None:
            attempt = seen[(study_id, key)] = seen.get((study_id, key), 0) + 1
        conn.execute(
            sa.text("UPDATE participant SET worker_key = :k, attempt = COALESCE(:a, attempt) WHERE id = :id"),
            {"k": key, "a": attempt, "id": pid},
        )
    for (study_id,) in conn.execute(sa.text("SELECT id FROM study")).all():
        tally: dict = {}
        for mode, cond, n in conn.execute(
            sa.text("SELECT mode, condition, count(*) FROM participant WHERE study_id = :s GROUP BY mode, condition"),
            {"s": study_id},
        ):
            tally.setdefault(mode, {"c": {}, "i": {}})["c"][cond] = n
        for mode, item_pk, n in conn.execute(
            sa.text(
                "SELECT p.mode, e.item_pk, count(*) FROM plan_entry e JOIN participant p ON p.id = e.participant_id "
                "WHERE p.study_id = :s GROUP BY p.mode, e.item_pk"
            ),
            {"s": study_id},
        ):
            tally.setdefault(mode, {"c": {}, "i": {}})["i"][str(item_pk)] = n
        conn.execute(sa.text("UPDATE study SET tally = :t WHERE id = :s"), {"t": json.dumps(tally), "s": study_id})
    for study_id, folder in conn.execute(sa.text("SELECT id, stimuli_dir FROM study")).all():
        stimuli = conn.execute(
            sa.text("SELECT id, stimulus_id, file FROM stimulus WHERE study_id = :s"), {"s": study_id}
        ).all()
        sizes = {}
        for _pk, stimulus_id, file in stimuli:
            path = Path(folder) / file
            if path.is_file():
                sizes[stimulus_id] = path.stat().st_size
        groups = [
            _json_list(v)
            for (v,) in conn.execute(sa.text("SELECT stimulus_ids FROM item WHERE study_id = :s"), {"s": study_id})
        ]
        padded = served_sizes(sizes, groups)
        for pk, stimulus_id, _file in stimuli:
            conn.execute(
                sa.text("UPDATE stimulus SET served_size = :n WHERE id = :id"), {"n": padded.get(stimulus_id), "id": pk}
            )


def _json_list(value) -> list:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def downgrade() -> None:
    with op.batch_alter_table("stimulus") as batch:
        batch.drop_column("served_size")
    with op.batch_alter_table("study") as batch:
        batch.drop_column("tally")
    with op.batch_alter_table("participant") as batch:
        batch.drop_constraint("uq_participant_worker_key_attempt", type_="unique")
        batch.drop_column("events_bytes")
        batch.drop_column("events_n")
        batch.drop_column("worker_key")
    op.drop_index("ix_event_participant", table_name="event")
    op.drop_table("app_secret")
    op.drop_index("ix_throttle_key_at", table_name="throttle")
    op.drop_table("throttle")
    op.drop_index("ix_admin_session_user_id", table_name="admin_session")
    op.drop_table("admin_session")
