"""delivery_count (issue 31): each edition's deliveries counted by status, kept
by triggers on ``delivery``; partial indexes of the sent rows by time and of the
queued rows held for a later hour. `digest status` reads these instead of the
edition's million rows.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 12:00:00

The SQL is written out here, not borrowed from ``digest.store``: a migration is
history and must do tomorrow what it does today. A later migration that makes
``delivery`` again on SQLite (``batch_alter_table``) drops these triggers with
the old table and must make them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENT = "status = 'sent'"
HELD = "status = 'queued' AND next_attempt_at IS NOT NULL"
UPSERT = (
    "INSERT INTO delivery_count (edition_id, status, shard, n) {rows} "
    "ON CONFLICT (edition_id, status, shard) DO UPDATE SET n = delivery_count.n + excluded.n"
)

# PostgreSQL: one trigger a statement, with its rows as transition tables, so a
# sender's batch of outcomes costs one upsert per status it touched, not one per
# row. The shard is the backend's pid: no two live backends share one, so two
# senders never wait on each other's counter row (nor deadlock through it); the
# rows are taken in one order (ORDER BY) all the same. A statement that changes
# no status (a heartbeat renewing claims) nets to nothing and writes nothing.
PG_FUNCTION = (
    """
CREATE FUNCTION delivery_count_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    """
    + UPSERT.format(
        rows="SELECT edition_id, status, pg_backend_pid(), count(*) FROM new_rows "
        "GROUP BY edition_id, status ORDER BY edition_id, status"
    )
    + """;
  ELSIF TG_OP = 'DELETE' THEN
    """
    + UPSERT.format(
        rows="SELECT edition_id, status, pg_backend_pid(), -count(*) FROM old_rows "
        "GROUP BY edition_id, status ORDER BY edition_id, status"
    )
    + """;
  ELSE
    """
    + UPSERT.format(
        rows="SELECT edition_id, status, pg_backend_pid(), sum(k) FROM ("
        "SELECT edition_id, status, -1 AS k FROM old_rows "
        "UNION ALL SELECT edition_id, status, 1 FROM new_rows) AS moved "
        "GROUP BY edition_id, status HAVING sum(k) <> 0 ORDER BY edition_id, status"
    )
    + """;
  END IF;
  RETURN NULL;
END $$
"""
)
PG_TRIGGERS = (
    "CREATE TRIGGER delivery_count_insert AFTER INSERT ON delivery "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION delivery_count_keep()",
    "CREATE TRIGGER delivery_count_update AFTER UPDATE ON delivery "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION delivery_count_keep()",
    "CREATE TRIGGER delivery_count_delete AFTER DELETE ON delivery "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION delivery_count_keep()",
)

# SQLite has row triggers only: a row counted in, and out, only when its status
# or edition changes (a heartbeat's renewal fires nothing).
_ADD = UPSERT.format(rows="VALUES (NEW.edition_id, NEW.status, 0, 1)")
_TAKE = UPSERT.format(rows="VALUES (OLD.edition_id, OLD.status, 0, -1)")
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER delivery_count_insert AFTER INSERT ON delivery BEGIN {_ADD}; END",
    "CREATE TRIGGER delivery_count_update AFTER UPDATE OF status, edition_id ON delivery "
    "WHEN OLD.status IS NOT NEW.status OR OLD.edition_id IS NOT NEW.edition_id "
    f"BEGIN {_TAKE}; {_ADD}; END",
    f"CREATE TRIGGER delivery_count_delete AFTER DELETE ON delivery BEGIN {_TAKE}; END",
)
TRIGGERS = ("delivery_count_insert", "delivery_count_update", "delivery_count_delete")


def upgrade() -> None:
    op.create_table(
        "delivery_count",
        sa.Column("edition_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("edition_id", "status", "shard"),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(PG_FUNCTION)
    # The triggers first: making one locks out every writer of ``delivery`` until
    # this commits, so the counts below are of rows no one changes meanwhile.
    for statement in PG_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(
        "INSERT INTO delivery_count (edition_id, status, shard, n) "
        "SELECT edition_id, status, 0, count(*) FROM delivery GROUP BY edition_id, status"
    )
    for name, columns, where in (
        ("ix_delivery_sent", ["edition_id", "sent_at"], SENT),
        ("ix_delivery_held", ["edition_id", "next_attempt_at"], HELD),
    ):
        # On PostgreSQL made on the partitioned table: every partition, now and to come.
        op.create_index(
            name,
            "delivery",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    op.drop_index("ix_delivery_held", "delivery")
    op.drop_index("ix_delivery_sent", "delivery")
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}{' ON delivery' if postgresql else ''}")
    if postgresql:
        op.execute("DROP FUNCTION delivery_count_keep()")
    op.drop_table("delivery_count")
