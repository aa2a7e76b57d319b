"""cer coverage table, its history and the facilities' NFZ contracts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 01:10:00
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
        "cer_coverage_rules",
        sa.Column("specialty", sa.String(length=40), nullable=False),
        sa.Column("covered_from", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=400), nullable=False),
        sa.Column("draft", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=True),
        sa.Column("changed_role", sa.String(length=40), nullable=True),
        sa.Column("changed_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("specialty", name=op.f("pk_cer_coverage_rules")),
    )
    op.create_table(
        "cer_coverage_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("specialty", sa.String(length=40), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("old_covered_from", sa.Date(), nullable=False),
        sa.Column("old_source", sa.String(length=400), nullable=False),
        sa.Column("old_draft", sa.Boolean(), nullable=False),
        sa.Column("old_origin", sa.String(length=10), nullable=False),
        sa.Column("new_covered_from", sa.Date(), nullable=False),
        sa.Column("new_source", sa.String(length=400), nullable=False),
        sa.Column("new_draft", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("changed_role", sa.String(length=40), nullable=False),
        sa.Column("changed_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cer_coverage_changes")),
        sa.UniqueConstraint("specialty", "revision", name="uq_cer_coverage_changes_specialty_revision"),
    )
    op.create_table(
        "cer_contracts",
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("specialties", sa.JSON(), nullable=False),
        sa.Column("declared_by", sa.String(length=200), nullable=False),
        sa.Column("declared_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("facility_id", name=op.f("pk_cer_contracts")),
    )


def downgrade() -> None:
    op.drop_table("cer_contracts")
    op.drop_table("cer_coverage_changes")
    op.drop_table("cer_coverage_rules")
