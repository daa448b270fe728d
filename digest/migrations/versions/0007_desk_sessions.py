"""desk sessions kept server-side, and failed logins for the throttle

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "desk_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("editor", sa.String(length=100), nullable=False),
        sa.Column("password_tag", sa.String(length=64), nullable=False),
        sa.Column("created_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", digest.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("editor", sa.String(length=100), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_failure", schema=None) as batch_op:
        batch_op.create_index("ix_login_failure_at", ["at"], unique=False)
        batch_op.create_index("ix_login_failure_editor", ["editor"], unique=False)
        batch_op.create_index("ix_login_failure_ip", ["ip"], unique=False)


def downgrade() -> None:
    op.drop_table("login_failure")
    op.drop_table("desk_session")
