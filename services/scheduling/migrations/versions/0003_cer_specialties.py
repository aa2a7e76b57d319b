"""cer specialties of locations and schedules

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("locations", sa.Column("cer_specialty", sa.String(length=40), nullable=True))
    op.add_column("schedules", sa.Column("cer_specialty", sa.String(length=40), nullable=True))
    # Schedules published before this revision take their work type's specialty.
    op.execute(
        "UPDATE schedules SET cer_specialty = "
        "(SELECT w.cer_specialty FROM work_types w WHERE w.id = schedules.work_type_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("cer_specialty")
    with op.batch_alter_table("locations") as batch:
        batch.drop_column("cer_specialty")
