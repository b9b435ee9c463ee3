"""stimuli at twice the display size: stimulus.file_2x and stimulus.served_size_2x

``camstudy study create`` fills them from the build's manifest (``file_2x``, checked
against ``sha256_2x``) and pads the 2x files per group as it pads the 1x files (see
study.blinding). Existing stimuli keep NULL: the builds they came from had no 2x files.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stimulus") as batch:
        batch.add_column(sa.Column("file_2x", sa.Text(), nullable=True))
        batch.add_column(sa.Column("served_size_2x", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stimulus") as batch:
        batch.drop_column("served_size_2x")
        batch.drop_column("file_2x")
