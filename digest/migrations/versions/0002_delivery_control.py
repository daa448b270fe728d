"""delivery control: pause, first attempt, bounce lookup by Message-ID

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("edition", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("paused_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("first_attempt_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_delivery_message_id", ["message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_message_id")
        batch_op.drop_column("first_attempt_at")
    with op.batch_alter_table("edition", schema=None) as batch_op:
        batch_op.drop_column("paused_at")
