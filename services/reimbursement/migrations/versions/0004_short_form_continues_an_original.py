"""a short-form order names the original it continues, once

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Short-form orders issued before this revision name no original: they stay as they were.
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("continues_order", sa.String(length=40), nullable=True))
        batch.create_check_constraint(
            op.f("ck_orders_continuation_is_short_form"), "short_form OR continues_order IS NULL"
        )
    op.create_index("uq_orders_continues_order", "orders", ["continues_order"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_orders_continues_order", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("ck_orders_continuation_is_short_form"), type_="check")
        batch.drop_column("continues_order")
