"""cer queue, published schedules and drifts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:10:00
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
    op.create_table(
        "cer_outgoing",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=400), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("specialty", sa.String(length=40), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'rejected')", name=op.f("ck_cer_outgoing_status_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cer_outgoing")),
        sa.UniqueConstraint("kind", "reference", name="uq_cer_outgoing_kind_reference"),
    )
    with op.batch_alter_table("cer_outgoing", schema=None) as batch_op:
        batch_op.create_index("ix_cer_outgoing_pending", ["status", "id"], unique=False)
    op.create_table(
        "cer_schedules",
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("specialty", sa.String(length=40), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("schedule_id", name=op.f("pk_cer_schedules")),
    )
    with op.batch_alter_table("cer_schedules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cer_schedules_facility_id"), ["facility_id"], unique=False)
    op.create_table(
        "cer_visits",
        sa.Column("reference", sa.Uuid(), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("booked", sa.Boolean(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_cer_visits")),
    )
    op.create_table(
        "cer_drifts",
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("slot_id", sa.Uuid(), nullable=False),
        sa.Column("detail", sa.String(length=400), nullable=False),
        sa.Column("repaired", sa.Boolean(), nullable=False),
        sa.Column("found_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("facility_id", "kind", "reference", name=op.f("pk_cer_drifts")),
    )


def downgrade() -> None:
    op.drop_table("cer_drifts")
    op.drop_table("cer_visits")
    with op.batch_alter_table("cer_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cer_schedules_facility_id"))
    op.drop_table("cer_schedules")
    with op.batch_alter_table("cer_outgoing", schema=None) as batch_op:
        batch_op.drop_index("ix_cer_outgoing_pending")
    op.drop_table("cer_outgoing")
