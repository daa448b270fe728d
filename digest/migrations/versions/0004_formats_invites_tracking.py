"""text-only format, double opt-in invitations, edition links and events per edition

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("format", sa.String(length=8), nullable=False, server_default="html")
        )
        batch_op.add_column(
            sa.Column("invited_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "edition_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["edition_id"], ["edition.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("edition_id", "url", name="uq_link_edition_url"),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edition_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_event_edition_id", ["edition_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_event_edition_id_edition", "edition", ["edition_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_constraint("fk_event_edition_id_edition", type_="foreignkey")
        batch_op.drop_index("ix_event_edition_id")
        batch_op.drop_column("edition_id")
    op.drop_table("edition_link")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("invited_at")
        batch_op.drop_column("format")
