"""the CeR secret is stored sealed: a Fernet token is longer than the 200 characters the plain one had

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 02:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cer_settings") as batch:
        batch.alter_column("secret", existing_type=sa.String(length=200), type_=sa.Text(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("cer_settings") as batch:
        batch.alter_column("secret", existing_type=sa.Text(), type_=sa.String(length=200), existing_nullable=False)
