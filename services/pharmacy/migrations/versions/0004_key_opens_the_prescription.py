"""the scanned key opens its prescription: no per-pharmacy visibility list any more

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 01:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("visible_prescriptions")


def downgrade() -> None:
    op.create_table(
        "visible_prescriptions",
        sa.Column("pharmacy_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=44), nullable=False),
        sa.Column("since", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pharmacy_id", "key", name=op.f("pk_visible_prescriptions")),
    )
