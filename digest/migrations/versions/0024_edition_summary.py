"""edition_summary (issue 31 §4): an edition's counts, failures and minutes,
kept when `digest db prune` removes its delivery rows

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "edition_summary",
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        sa.Column("minutes", sa.JSON(), nullable=False),
        sa.Column("ambiguous", sa.Integer(), nullable=False),
        sa.Column("pruned_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["edition_id"], ["edition.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("edition_id"),
    )


def downgrade() -> None:
    op.drop_table("edition_summary")
