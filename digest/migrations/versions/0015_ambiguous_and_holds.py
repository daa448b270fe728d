"""delivery.ambiguous (the line dropped after the end of data) and
domain_pause.since (when a hold began), issue 25

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.add_column(
            sa.Column("ambiguous", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("domain_pause") as batch_op:
        batch_op.add_column(
            sa.Column("since", digest.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("domain_pause") as batch_op:
        batch_op.drop_column("since")
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.drop_column("ambiguous")
