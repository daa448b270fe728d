"""corrections after approval: article revisions, withdrawn articles, versioned variants

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("withdrawn_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "article_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["article_id"], ["article.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("article_revision", schema=None) as batch_op:
        batch_op.create_index("ix_article_revision_article_id", ["article_id"], unique=False)
    with op.batch_alter_table("edition", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("revision_mark", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("pause_reason", sa.String(length=32), nullable=True))
    with op.batch_alter_table("edition_variant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(
            sa.Column("retired_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.drop_constraint("uq_variant_edition_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_variant_edition_key_version", ["edition_id", "key", "version"]
        )


def downgrade() -> None:
    # One variant per key again: what was sent with a retired one forgets which.
    op.execute(
        "UPDATE delivery SET variant_id = NULL WHERE variant_id IN "
        "(SELECT id FROM edition_variant WHERE retired_at IS NOT NULL)"
    )
    op.execute("DELETE FROM edition_variant WHERE retired_at IS NOT NULL")
    with op.batch_alter_table("edition_variant", schema=None) as batch_op:
        batch_op.drop_constraint("uq_variant_edition_key_version", type_="unique")
        batch_op.create_unique_constraint("uq_variant_edition_key", ["edition_id", "key"])
        batch_op.drop_column("retired_at")
        batch_op.drop_column("version")
    with op.batch_alter_table("edition", schema=None) as batch_op:
        batch_op.drop_column("pause_reason")
        batch_op.drop_column("revision_mark")
    op.drop_table("article_revision")
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.drop_column("withdrawn_at")
