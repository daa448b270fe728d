"""delivery by edition day (issue 31 §4): on PostgreSQL a partitioned table, a
partition a day, every existing row moved across; on both backends the edition's
date on each delivery, the claim index partial (only work left), a partial index
of the rows a report lists (failures, retries, ambiguous), and no foreign
key from event to delivery (PostgreSQL cannot point one at a partitioned id)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04 01:00:00

The SQL is written out here, not borrowed from ``digest.store``: a migration is
history and must do tomorrow what it does today.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORK_LEFT = "status IN ('queued', 'deferred', 'sending')"
TROUBLE = "status IN ('failed', 'deferred', 'bounced') OR ambiguous > 0"
AUTOVACUUM = "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02"
SEQUENCE = "SELECT pg_get_serial_sequence('{table}', 'id')"
# Named as PostgreSQL names them on a table made from scratch (the old table
# still holds those names while the new one is made).
FOREIGN_KEYS = (
    "CONSTRAINT delivery_edition_id_fkey FOREIGN KEY (edition_id) "
    "REFERENCES edition (id) ON DELETE CASCADE, "
    "CONSTRAINT delivery_subscriber_id_fkey FOREIGN KEY (subscriber_id) "
    "REFERENCES subscriber (id) ON DELETE CASCADE, "
    "CONSTRAINT delivery_variant_id_fkey FOREIGN KEY (variant_id) REFERENCES edition_variant (id)"
)
FK_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _partition()
    else:
        _sqlite_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _unpartition()
    else:
        _sqlite_downgrade()


def _partition() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE event DROP CONSTRAINT IF EXISTS event_delivery_id_fkey")
    sequence = bind.execute(sa.text(SEQUENCE.format(table="delivery"))).scalar_one()
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")  # kept: ids go on from it
    op.execute("ALTER TABLE delivery RENAME TO delivery_unpartitioned")
    op.execute("ALTER TABLE delivery_unpartitioned DROP CONSTRAINT uq_delivery_edition_subscriber")
    op.execute("ALTER INDEX delivery_pkey RENAME TO delivery_unpartitioned_pkey")
    op.execute("DROP INDEX ix_delivery_edition_status")
    op.execute("DROP INDEX ix_delivery_message_id")
    op.execute(
        "CREATE TABLE delivery (LIKE delivery_unpartitioned INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS, edition_date DATE NOT NULL, "
        "CONSTRAINT delivery_pkey PRIMARY KEY (id, edition_date), "
        "CONSTRAINT uq_delivery_edition_subscriber "
        "UNIQUE (edition_id, subscriber_id, edition_date), "
        f"{FOREIGN_KEYS}) PARTITION BY RANGE (edition_date)"
    )
    days = set(
        bind.execute(
            sa.text(
                "SELECT DISTINCT e.edition_date FROM edition e "
                "WHERE EXISTS (SELECT 1 FROM delivery_unpartitioned d WHERE d.edition_id = e.id)"
            )
        ).scalars()
    )
    today = datetime.now(UTC).date()
    days |= {today + timedelta(days=n) for n in range(-1, 8)}
    for day in sorted(days):
        _make_partition(day)
    columns = ", ".join(
        c["name"] for c in sa.inspect(bind).get_columns("delivery_unpartitioned")
    )  # the table's own names
    op.execute(
        f"INSERT INTO delivery ({columns}, edition_date) "  # nosec B608  # catalogue names
        f"SELECT {', '.join('d.' + c for c in columns.split(', '))}, e.edition_date "
        "FROM delivery_unpartitioned d JOIN edition e ON e.id = d.edition_id"
    )
    op.execute("DROP TABLE delivery_unpartitioned")
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY delivery.id")
    # Built once over the moved rows, not kept up row by row while they moved.
    op.execute(f"CREATE INDEX ix_delivery_work ON delivery (edition_id, id) WHERE {WORK_LEFT}")
    op.execute(f"CREATE INDEX ix_delivery_trouble ON delivery (edition_id, status) WHERE {TROUBLE}")
    op.execute("CREATE INDEX ix_delivery_message_id ON delivery (message_id)")
    op.execute("ANALYZE delivery")


def _make_partition(day: date) -> None:
    start, end = day.isoformat(), (day + timedelta(days=1)).isoformat()
    op.execute(
        f"CREATE TABLE delivery_{day:%Y%m%d} PARTITION OF delivery "  # a date
        f"FOR VALUES FROM ('{start}') TO ('{end}') WITH ({AUTOVACUUM})"
    )


def _unpartition() -> None:
    bind = op.get_bind()
    sequence = bind.execute(sa.text(SEQUENCE.format(table="delivery"))).scalar_one()
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
    op.execute("ALTER TABLE delivery RENAME TO delivery_partitioned")
    op.execute("ALTER TABLE delivery_partitioned DROP CONSTRAINT uq_delivery_edition_subscriber")
    op.execute("ALTER TABLE delivery_partitioned DROP CONSTRAINT delivery_pkey")
    op.execute("DROP INDEX ix_delivery_work")
    op.execute("DROP INDEX ix_delivery_trouble")
    op.execute("DROP INDEX ix_delivery_message_id")
    op.execute(
        "CREATE TABLE delivery (LIKE delivery_partitioned INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS, "
        f"{FOREIGN_KEYS})"
    )
    op.execute("ALTER TABLE delivery DROP COLUMN edition_date")
    columns = ", ".join(c["name"] for c in sa.inspect(bind).get_columns("delivery"))
    copy = f"INSERT INTO delivery ({columns}) SELECT {columns} FROM delivery_partitioned"  # nosec B608  # catalogue names
    op.execute(copy)
    op.execute("DROP TABLE delivery_partitioned")  # and every partition with it
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY delivery.id")
    op.execute("ALTER TABLE delivery ADD CONSTRAINT delivery_pkey PRIMARY KEY (id)")
    op.execute(
        "ALTER TABLE delivery ADD CONSTRAINT uq_delivery_edition_subscriber "
        "UNIQUE (edition_id, subscriber_id)"
    )
    op.execute("CREATE INDEX ix_delivery_edition_status ON delivery (edition_id, status, id)")
    op.execute("CREATE INDEX ix_delivery_message_id ON delivery (message_id)")
    op.execute(
        "UPDATE event SET delivery_id = NULL WHERE delivery_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM delivery WHERE delivery.id = event.delivery_id)"
    )
    op.execute(
        "ALTER TABLE event ADD CONSTRAINT event_delivery_id_fkey FOREIGN KEY (delivery_id) "
        "REFERENCES delivery (id) ON DELETE SET NULL"
    )


def _sqlite_upgrade() -> None:
    op.add_column("delivery", sa.Column("edition_date", sa.Date(), nullable=True))
    op.execute(
        "UPDATE delivery SET edition_date = "
        "(SELECT edition_date FROM edition WHERE edition.id = delivery.edition_id)"
    )
    with op.batch_alter_table("delivery") as batch:
        batch.alter_column("edition_date", existing_type=sa.Date(), nullable=False)
        batch.drop_constraint("uq_delivery_edition_subscriber", type_="unique")
        batch.create_unique_constraint(
            "uq_delivery_edition_subscriber", ["edition_id", "subscriber_id", "edition_date"]
        )
        batch.drop_index("ix_delivery_edition_status")
    op.create_index(
        "ix_delivery_work", "delivery", ["edition_id", "id"], sqlite_where=sa.text(WORK_LEFT)
    )
    op.create_index(
        "ix_delivery_trouble", "delivery", ["edition_id", "status"], sqlite_where=sa.text(TROUBLE)
    )
    with op.batch_alter_table("event", naming_convention=FK_NAMES) as batch:
        batch.drop_constraint("fk_event_delivery_id_delivery", type_="foreignkey")


def _sqlite_downgrade() -> None:
    op.drop_index("ix_delivery_work", "delivery")
    op.drop_index("ix_delivery_trouble", "delivery")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_constraint("uq_delivery_edition_subscriber", type_="unique")
        batch.create_unique_constraint(
            "uq_delivery_edition_subscriber", ["edition_id", "subscriber_id"]
        )
        batch.create_index("ix_delivery_edition_status", ["edition_id", "status", "id"])
        batch.drop_column("edition_date")
    with op.batch_alter_table("event", naming_convention=FK_NAMES) as batch:
        batch.create_foreign_key(
            "fk_event_delivery_id_delivery",
            "delivery",
            ["delivery_id"],
            ["id"],
            ondelete="SET NULL",
        )
