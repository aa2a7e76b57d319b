"""access-code attempts counted per pharmacy and per PESEL, reserved before the look-up

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 01:10:00.000000

``lookup_failures`` was written after P1 answered, so parallel guesses passed the check before any
was counted; its rows are a few minutes of history and are not carried over.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "code_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("pharmacy_id", sa.String(length=64), nullable=False),
        sa.Column("pesel_digest", sa.String(length=64), nullable=False),
        sa.Column("at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_attempts")),
    )
    with op.batch_alter_table("code_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_code_attempts_pharmacy_at", ["pharmacy_id", "at"], unique=False)
        batch_op.create_index("ix_code_attempts_pesel_at", ["pesel_digest", "at"], unique=False)
    with op.batch_alter_table("lookup_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_lookup_failures_pharmacy_at")
    op.drop_table("lookup_failures")


def downgrade() -> None:
    op.create_table(
        "lookup_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("pharmacy_id", sa.String(length=64), nullable=False),
        sa.Column("at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lookup_failures")),
    )
    with op.batch_alter_table("lookup_failures", schema=None) as batch_op:
        batch_op.create_index("ix_lookup_failures_pharmacy_at", ["pharmacy_id", "at"], unique=False)
    with op.batch_alter_table("code_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_code_attempts_pesel_at")
        batch_op.drop_index("ix_code_attempts_pharmacy_at")
    op.drop_table("code_attempts")
