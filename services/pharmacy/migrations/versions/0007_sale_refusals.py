"""sales a pharmacist refused (suspected non-medical use), kept with the sale checks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 01:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sale_refusals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pharmacy_id", sa.String(length=64), nullable=False),
        sa.Column("pharmacist", sa.String(length=200), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("buyer_age", sa.Integer(), nullable=True),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("refused_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale_refusals")),
    )
    with op.batch_alter_table("sale_refusals", schema=None) as batch_op:
        batch_op.create_index("ix_sale_refusals_pharmacy_at", ["pharmacy_id", "refused_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sale_refusals", schema=None) as batch_op:
        batch_op.drop_index("ix_sale_refusals_pharmacy_at")
    op.drop_table("sale_refusals")
