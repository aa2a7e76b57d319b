"""initial audit tables: access_events (append-only), inbox, outbox, idempotency keys

Revision ID: 0001
Revises:
Create Date: 2026-12-08 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A row, once written, is never changed: not by the runtime role (it has no UPDATE grant, see
# shared.alembic_env), and not even by a superuser or the owner connecting as the service does today.
# DELETE stays a privilege question (only the maintenance role's retention purge has it).
PG_REFUSE_UPDATE = """
CREATE FUNCTION access_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_events is append-only: a row cannot be updated'
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
PG_TRIGGER = (
    "CREATE TRIGGER access_events_append_only BEFORE UPDATE ON access_events "
    "FOR EACH ROW EXECUTE FUNCTION access_events_refuse_update()"
)
SQLITE_TRIGGER = (
    "CREATE TRIGGER access_events_append_only BEFORE UPDATE ON access_events "
    "BEGIN SELECT RAISE(ABORT, 'access_events is append-only: a row cannot be updated'); END"
)


def upgrade() -> None:
    op.create_table(
        "access_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("resource", sa.String(length=200), nullable=False),
        sa.Column("patient_pesel", sa.String(length=11), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("recorded_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_events")),
        sa.UniqueConstraint("event_id", "position", name="uq_access_events_event_position"),
    )
    op.create_index("ix_access_events_patient_at", "access_events", ["patient_pesel", "at"])
    op.create_index("ix_access_events_tenant_at", "access_events", ["tenant", "at"])
    op.create_index("ix_access_events_at", "access_events", ["at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_REFUSE_UPDATE)
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)

    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_unsent",
            ["seq"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_unsent", postgresql_where=sa.text("published_at IS NULL"))
    op.drop_table("outbox")
    op.drop_table("inbox")
    op.drop_table("idempotency_keys")
    op.drop_table("access_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS access_events_refuse_update()")
