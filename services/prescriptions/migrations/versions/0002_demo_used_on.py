"""demo mode used once per facility: facility_settings.demo_used_on

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("facility_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("demo_used_on", sa.Date(), nullable=True))
    # A facility in demo mode today has used it since its activation date (a row in demo mode has one).
    op.execute("UPDATE facility_settings SET demo_used_on = activated_on WHERE mode = 'demo'")
    with op.batch_alter_table("facility_settings", schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f("ck_facility_settings_demo_recorded"), "mode <> 'demo' OR demo_used_on IS NOT NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("facility_settings", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_facility_settings_demo_recorded"), type_="check")
        batch_op.drop_column("demo_used_on")
