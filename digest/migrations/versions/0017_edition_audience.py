"""edition.audience_at: when an edition's send first started, so a reader who
joined later never gets it on a resume or a retry (issue 28 §1)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("edition") as batch_op:
        batch_op.add_column(
            sa.Column("audience_at", digest.models.UTCDateTime(timezone=True), nullable=True)
        )
    # Editions already started: their readers are those who have a delivery now.
    op.execute(
        "UPDATE edition SET audience_at = (SELECT MIN(d.updated_at) FROM delivery d "
        "WHERE d.edition_id = edition.id) "
        "WHERE status NOT IN ('draft', 'approved', 'missed')"
    )
    op.execute(
        "UPDATE edition SET audience_at = created_at "
        "WHERE audience_at IS NULL AND status NOT IN ('draft', 'approved', 'missed')"
    )


def downgrade() -> None:
    with op.batch_alter_table("edition") as batch_op:
        batch_op.drop_column("audience_at")
