"""domain_pause.backoff, probe_at and opened_at: a held domain's back-off and its
one probe, kept for every sender (issue 25)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domain_pause") as batch_op:
        batch_op.add_column(sa.Column("backoff", sa.Double(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("probe_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("opened_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("domain_pause") as batch_op:
        batch_op.drop_column("opened_at")
        batch_op.drop_column("probe_at")
        batch_op.drop_column("backoff")
