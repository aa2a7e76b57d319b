"""replica of the operators' corrections of the dated CeR table

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cer_coverage",
        sa.Column("specialty", sa.String(length=40), nullable=False),
        sa.Column("covered_from", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=400), nullable=False),
        sa.Column("draft", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("specialty", name=op.f("pk_cer_coverage")),
    )


def downgrade() -> None:
    op.drop_table("cer_coverage")
