"""the subscription box's requests wait in a queue drained in the background

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signup_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("sections", sa.Text(), nullable=True),
        sa.Column("page", sa.String(length=500), nullable=True),
        sa.Column("list_key", sa.String(length=64), nullable=False),
        sa.Column("asked_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("signup_request")
