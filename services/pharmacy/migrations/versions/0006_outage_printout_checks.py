"""an outage realisation's basis: the patient a printout is checked against, the identity document shown

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("prescription_holds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("patient_digest", sa.String(length=64), nullable=True))
    with op.batch_alter_table("prescription_realisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_document", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prescription_realisations", schema=None) as batch_op:
        batch_op.drop_column("identity_document")
    with op.batch_alter_table("prescription_holds", schema=None) as batch_op:
        batch_op.drop_column("patient_digest")
