"""the pre-registration: study.prereg_sha256, study.prereg_json and study.prereg_frozen_at

``camstudy preregister`` fills them once, before data collection (analysis.preregistration):
the frozen analysis plan as canonical JSON, its sha256 and the time it was frozen. Existing
studies keep NULL: they were not pre-registered.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("prereg_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("prereg_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("prereg_frozen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.drop_column("prereg_frozen_at")
        batch.drop_column("prereg_json")
        batch.drop_column("prereg_sha256")
