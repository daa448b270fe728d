"""special editions (issue 28 §6): `edition.number` (0 for the schedule's edition
of the day, 1, 2 … for the special ones an editor makes) in the unique key, and
`edition.section` (a special edition for one section's readers)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "uq_edition_schedule_date"


def upgrade() -> None:
    # recreate: SQLite cannot change a unique key in place (env.py turns its
    # foreign keys off for the copy, so no delivery is touched).
    with op.batch_alter_table("edition", recreate="auto") as batch_op:
        batch_op.add_column(sa.Column("number", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("section", sa.String(length=100), nullable=True))
        batch_op.drop_constraint(KEY, type_="unique")
        batch_op.create_unique_constraint(KEY, ["schedule", "edition_date", "number"])


def downgrade() -> None:
    op.execute("DELETE FROM edition WHERE number > 0")
    with op.batch_alter_table("edition", recreate="auto") as batch_op:
        batch_op.drop_constraint(KEY, type_="unique")
        batch_op.create_unique_constraint(KEY, ["schedule", "edition_date"])
        batch_op.drop_column("section")
        batch_op.drop_column("number")
