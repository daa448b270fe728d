"""edition status `missed`

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 22:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("draft", "approved", "sending", "sent", "cancelled")
NEW = (*OLD, "missed")


def _status(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *values, name="edition_status", native_enum=False, create_constraint=True, length=16
    )


def _change(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    # SQLite cannot alter a CHECK constraint: batch mode rebuilds the table with
    # the new one. PostgreSQL drops and adds it.
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("edition", recreate="always") as batch_op:
            batch_op.alter_column(
                "status", existing_type=_status(old), type_=_status(new), existing_nullable=False
            )
        return
    op.drop_constraint("edition_status", "edition", type_="check")
    values = ", ".join(f"'{v}'" for v in new)
    op.create_check_constraint("edition_status", "edition", f"status IN ({values})")


def upgrade() -> None:
    _change(OLD, NEW)


def downgrade() -> None:
    op.execute("UPDATE edition SET status = 'cancelled' WHERE status = 'missed'")
    _change(NEW, OLD)
