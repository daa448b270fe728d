"""the site's subscription box: consent evidence (text version, page) and signup attempts

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_version", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("consent_page", sa.String(length=500), nullable=True))
    op.create_table(
        "signup_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("signup_attempt", schema=None) as batch_op:
        batch_op.create_index("ix_signup_attempt_ip_at", ["ip", "at"], unique=False)


def downgrade() -> None:
    op.drop_table("signup_attempt")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("consent_page")
        batch_op.drop_column("consent_version")
