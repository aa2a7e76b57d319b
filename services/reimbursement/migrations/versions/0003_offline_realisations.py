"""offline realisations: paper date with the patient's statement

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 01:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Realisations recorded before this revision were all taken as dated today: online, no statement.
    op.add_column("realisations", sa.Column("offline", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column(
        "realisations", sa.Column("patient_statement", sa.Boolean(), server_default=sa.false(), nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("realisations") as batch:
        batch.drop_column("patient_statement")
        batch.drop_column("offline")
