"""since when P1 has been failing: the earliest date an outage realisation may carry

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "p1_status",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("down_since", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_p1_status_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_p1_status")),
    )


def downgrade() -> None:
    op.drop_table("p1_status")
