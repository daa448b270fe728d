"""event kinds `resubscribe` and `asked_again`: a reader's way back after an
unsubscribe (an undo, a confirmed request from the box, an admin's reactivation),
each kept as evidence (issue 28 §2)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("open", "click", "unsubscribe", "bounce", "complaint", "confirm")
NEW = (*OLD, "resubscribe", "asked_again")


def _kind(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="event_kind", native_enum=False, create_constraint=True, length=16)


def _change(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    # As 0005: SQLite rebuilds the table with the new CHECK; PostgreSQL swaps it.
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("event", recreate="always") as batch_op:
            batch_op.alter_column(
                "kind", existing_type=_kind(old), type_=_kind(new), existing_nullable=False
            )
        return
    op.drop_constraint("event_kind", "event", type_="check")
    values = ", ".join(f"'{v}'" for v in new)
    op.create_check_constraint("event_kind", "event", f"kind IN ({values})")


def upgrade() -> None:
    _change(OLD, NEW)


def downgrade() -> None:
    op.execute("DELETE FROM event WHERE kind IN ('resubscribe', 'asked_again')")
    _change(NEW, OLD)
