"""source_state (issue 29): each site database source's watermark per query
(the latest time and id read) and its last sync's figures and error

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = digest.models.UTCDateTime(timezone=True)
    op.create_table(
        "source_state",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("query", sa.String(length=16), nullable=False),
        sa.Column("mark_at", when, nullable=True),
        sa.Column("mark_id", sa.String(length=200), nullable=True),
        sa.Column("synced_at", when, nullable=True),
        sa.Column("rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("seconds", sa.Double(), server_default="0", nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("error_at", when, nullable=True),
        sa.PrimaryKeyConstraint("source", "query"),
    )


def downgrade() -> None:
    op.drop_table("source_state")
