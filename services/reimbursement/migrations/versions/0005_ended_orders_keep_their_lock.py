"""ended or shortened orders keep their pharmacy's lock

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 02:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Ending used to clear the lock, which let another pharmacy realise the rest of the old order.
    # An ended full-form order still unlocked is given back to the pharmacy that realised it last
    # (the one that held the lock: nobody can have taken it since, or locked_by would be set); the
    # lock is known to have held at that realisation, so its time stands for when it was taken.
    op.execute(
        """
        UPDATE orders SET
            locked_by = (
                SELECT r.pharmacy_id FROM realisations r
                WHERE r.order_number = orders.number ORDER BY r.created_at DESC LIMIT 1
            ),
            locked_at = (
                SELECT max(r.created_at) FROM realisations r WHERE r.order_number = orders.number
            )
        WHERE end_month IS NOT NULL AND locked_by IS NULL AND NOT short_form
            AND EXISTS (SELECT 1 FROM realisations r WHERE r.order_number = orders.number)
        """
    )


def downgrade() -> None:
    pass  # the restored locks are right under the old code too: it only released them on ending
