"""the editors' desk: shaped drafts, edited subjects, a change log

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("edition", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shaped_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("custom_subject", sa.Text(), nullable=True))
    op.create_table(
        "edition_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("editor", sa.String(length=100), nullable=False),
        sa.Column("at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["edition_id"], ["edition.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("edition_change", schema=None) as batch_op:
        batch_op.create_index("ix_edition_change_edition_id", ["edition_id"], unique=False)


def downgrade() -> None:
    op.drop_table("edition_change")
    with op.batch_alter_table("edition", schema=None) as batch_op:
        batch_op.drop_column("custom_subject")
        batch_op.drop_column("shaped_at")
