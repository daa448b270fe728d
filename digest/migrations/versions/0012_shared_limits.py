"""limits shared by every sender: token buckets (rate, caps) and domain pauses

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_bucket",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "domain_pause",
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("until", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("domain"),
    )


def downgrade() -> None:
    op.drop_table("domain_pause")
    op.drop_table("rate_bucket")
