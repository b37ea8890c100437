"""The outbox's tables: events, and the webhook endpoints and deliveries fed from it.

An event row is written in the transaction of its change; a trigger
(migration 0010's SQL) queues one delivery per enabled endpoint wanting its
type; each attempt to send a delivery is logged in webhook_attempts.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ledger.postgres.tables import TIMESTAMPTZ, metadata

events = Table(
    "events",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Text, nullable=False),
    # The order events were written in: a consumer's cursor, and the order of delivery.
    Column("sequence", BigInteger, Identity(always=True), nullable=False),
    Column("type", Text, nullable=False),
    Column("object_id", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("data", JSONB, nullable=False),
    PrimaryKeyConstraint("book_id", "id"),
    # Unique per book, not across books: distributed by book_id (docs/SCALING.md).
    UniqueConstraint("book_id", "sequence"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    CheckConstraint("id like 'evt\\_%'", name="id"),
    Index("ix_events_book_id_type_sequence", "book_id", "type", "sequence"),
    Index("ix_events_book_id_object_id_sequence", "book_id", "object_id", "sequence"),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("url", Text, nullable=False),
    # Empty: every type; otherwise types, or `kind.*` for all of a kind.
    Column("enabled_events", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("secret", Text, nullable=False),
    Column("allow_private_network", Boolean, nullable=False, server_default=text("false")),
    Column("status", Text, nullable=False, server_default="enabled"),
    Column("disabled_reason", Text),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    CheckConstraint("status in ('enabled', 'disabled', 'deleted')", name="status"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("endpoint_id", Uuid, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("event_sequence", BigInteger, nullable=False),
    Column("object_id", Text),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("finished_at", TIMESTAMPTZ),
    Column("lease_until", TIMESTAMPTZ),
    Column("leased_at", TIMESTAMPTZ),
    Column("lease_pid", Integer),
    Column("lease_token", Uuid),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(
        ["book_id", "endpoint_id"], ["webhook_endpoints.book_id", "webhook_endpoints.id"]
    ),
    ForeignKeyConstraint(["book_id", "event_id"], ["events.book_id", "events.id"]),
    CheckConstraint("status in ('pending', 'sending', 'succeeded', 'failed')", name="status"),
    Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "ix_webhook_deliveries_open_object",
        "book_id",
        "endpoint_id",
        "object_id",
        "event_sequence",
        postgresql_where=text("status in ('pending', 'sending')"),
    ),
    Index(
        "ix_webhook_deliveries_open_endpoint",
        "book_id",
        "endpoint_id",
        "event_sequence",
        postgresql_where=text("status in ('pending', 'sending')"),
    ),
    Index(
        "ix_webhook_deliveries_sending",
        "lease_until",
        postgresql_where=text("status = 'sending'"),
    ),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("delivery_id", Uuid, nullable=False),
    Column("endpoint_id", Uuid, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("attempted_at", TIMESTAMPTZ, nullable=False),
    Column("status", Text, nullable=False),
    Column("response_code", Integer),
    Column("error", Text),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(
        ["book_id", "delivery_id"], ["webhook_deliveries.book_id", "webhook_deliveries.id"]
    ),
    CheckConstraint("status in ('succeeded', 'failed')", name="status"),
    Index("ix_webhook_attempts_book_id_endpoint_id_id", "book_id", "endpoint_id", "id"),
)
