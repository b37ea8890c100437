"""Usage tables (migration 0010_usage): events, meters, and what was billed for them."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ledger.postgres.tables import TIMESTAMPTZ, metadata

usage_events = Table(
    "usage_events",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Text, nullable=False),  # the sender's id: ingestion is idempotent by it
    # No foreign key: ingestion resolves the customer from `customers` in the statement
    # that inserts, customers are never deleted, and a per-row key check took a third
    # of a 10,000-event batch.
    Column("customer_id", Uuid, nullable=False),
    Column("metric", Text, nullable=False),
    Column("quantity", Numeric, nullable=False),
    Column("occurred_at", TIMESTAMPTZ, nullable=False),
    Column("properties", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # When it arrived (real time): a billed period's later arrivals are late usage.
    Column("received_at", TIMESTAMPTZ, nullable=False, server_default=text("clock_timestamp()")),
    PrimaryKeyConstraint("book_id", "id"),
    CheckConstraint("quantity >= 0", name="quantity"),
    Index(None, "book_id", "customer_id", "metric", "occurred_at"),
)

meters = Table(
    "meters",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("metric", Text, nullable=False),
    Column("aggregation", Text, nullable=False),
    Column("property", Text),
    Column("filters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("group_by", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "metric"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    CheckConstraint(
        "aggregation in ('sum', 'count', 'max', 'unique_count', 'last')", name="aggregation"
    ),
    CheckConstraint(
        "aggregation <> 'unique_count' or property is not null", name="unique_count_property"
    ),
)

usage_billings = Table(
    "usage_billings",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("subscription_id", Uuid, nullable=False),
    Column("price_id", Uuid, nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("group_key", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("quantity", Numeric, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("invoice_id", Uuid),
    Column("billed_at", TIMESTAMPTZ, nullable=False, server_default=text("clock_timestamp()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(
        ["book_id", "subscription_id"], ["subscriptions.book_id", "subscriptions.id"]
    ),
    ForeignKeyConstraint(["book_id", "price_id"], ["prices.book_id", "prices.id"]),
    Index(None, "book_id", "subscription_id", "price_id", "period_start"),
)
