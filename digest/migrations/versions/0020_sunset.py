"""reader status `paused` and event kinds `reengage`, `keep`, `sunset`: the
sunset rule (issue 28 §5): no click for DIGEST_SUNSET_AFTER months, one
re-engagement letter, then paused until the reader answers it

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_OLD = ("pending", "active", "unsubscribed", "bounced", "complained")
STATUS_NEW = (*STATUS_OLD, "paused")
KIND_OLD = (
    "open", "click", "unsubscribe", "bounce", "complaint", "confirm", "resubscribe", "asked_again",
)  # fmt: skip
KIND_NEW = (*KIND_OLD, "reengage", "keep", "sunset")


def _enum(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def _change(table: str, column: str, name: str, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    # As 0005 and 0018: SQLite rebuilds the table with the new CHECK; PostgreSQL swaps it.
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(table, recreate="always") as batch_op:
            batch_op.alter_column(
                column,
                existing_type=_enum(name, old),
                type_=_enum(name, new),
                existing_nullable=False,
            )
        return
    op.drop_constraint(name, table, type_="check")
    values = ", ".join(f"'{v}'" for v in new)
    op.create_check_constraint(name, table, f"{column} IN ({values})")


def upgrade() -> None:
    _change("subscriber", "status", "subscriber_status", STATUS_OLD, STATUS_NEW)
    _change("event", "kind", "event_kind", KIND_OLD, KIND_NEW)


def downgrade() -> None:
    op.execute("DELETE FROM event WHERE kind IN ('reengage', 'keep', 'sunset')")
    op.execute("UPDATE subscriber SET status = 'active' WHERE status = 'paused'")
    _change("event", "kind", "event_kind", KIND_NEW, KIND_OLD)
    _change("subscriber", "status", "subscriber_status", STATUS_NEW, STATUS_OLD)
