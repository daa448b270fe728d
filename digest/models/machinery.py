"""The tables of the machinery rather than of the newsletter: processes'
heartbeats, the limits every sender shares, and which database this is."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from digest.models.tables import Base


class Heartbeat(Base):
    """A long-running process says it is alive (the scheduler, every 30 s):
    `/healthz` and `digest doctor` call one that stopped beating stale."""

    __tablename__ = "heartbeat"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # kind:host:pid
    kind: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[datetime]


class RateBucket(Base):
    """A limit shared by every sender on every machine (issue 16): a token bucket,
    refilled at the limit's rate and taken from in small grants. ``global`` is
    DIGEST_SMTP_RATE; ``cap:DOMAIN`` a domain's DIGEST_DOMAIN_CAPS."""

    __tablename__ = "rate_bucket"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    tokens: Mapped[float]
    at: Mapped[datetime]  # when ``tokens`` was counted


class DomainPause(Base):
    """A recipient domain held for every sender (issue 25, Postfix's dead
    destination): paused until ``until``, then one probe delivery (``probe_at``:
    when a sender took it); a probe that succeeds reopens it (``opened_at``), one
    that fails pauses it again for twice ``backoff``."""

    __tablename__ = "domain_pause"

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    until: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(300), default="")  # the reply that decided it
    since: Mapped[datetime | None]  # when the hold began (kept while it is extended)
    backoff: Mapped[float] = mapped_column(default=0.0, server_default="0")  # this pause, in s
    probe_at: Mapped[datetime | None]  # a sender took the probe then (a lease)
    opened_at: Mapped[datetime | None]  # the probe succeeded then: open again


class DeliveryCount(Base):
    """An edition's deliveries counted by status, kept by the database itself
    (issue 31): triggers on ``delivery`` add each row a statement writes and take
    away each row it changes or removes, whatever path the statement came by, so
    `digest status` reads a handful of rows where it read a million. The count of
    (edition, status) is the sum over ``shard``: on PostgreSQL the writing
    backend's pid, so two senders never wait on one row; 0 on SQLite (one writer).
    No foreign key: a tally, not a relation (`digest db prune` removes an
    edition's counts with its rows)."""

    __tablename__ = "delivery_count"

    edition_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)


class DatabaseIdentity(Base):
    """Which database this is (issue 32): made with the schema, one row. What a
    process writes outside the database about it (the outcomes journal) names
    it, so it is never applied to another database."""

    __tablename__ = "database_identity"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1: one row
    identity: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]


class SourceState(Base):
    """One query of a site database source (issue 29): its watermark (the largest
    time and id read, kept only when the whole sync succeeded) and its last sync."""

    __tablename__ = "source_state"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    query: Mapped[str] = mapped_column(String(16), primary_key=True)
    mark_at: Mapped[datetime | None]  # the watermark: the latest updated_at/posted_at read
    mark_id: Mapped[str | None] = mapped_column(String(200))  # the id of that row
    synced_at: Mapped[datetime | None]  # the last sync that finished
    rows: Mapped[int] = mapped_column(default=0, server_default="0")  # rows it read
    seconds: Mapped[float] = mapped_column(default=0.0, server_default="0")
    error: Mapped[str | None] = mapped_column(String(500))  # the last sync's failure
    error_at: Mapped[datetime | None]
