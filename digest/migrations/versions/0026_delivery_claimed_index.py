"""a partial index of the deliveries in a sender's hands (issue 31): each sender's
heartbeat finds its claims through it instead of reading the edition's queue

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_FLIGHT = "status = 'sending'"


def upgrade() -> None:
    # On PostgreSQL, made on the partitioned table: every partition, now and to come.
    op.create_index(
        "ix_delivery_claimed",
        "delivery",
        ["edition_id", "claimed_by"],
        postgresql_where=sa.text(IN_FLIGHT),
        sqlite_where=sa.text(IN_FLIGHT),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_claimed", "delivery")
