"""CRM sync tables (migration 0017_crm's SQL is the source; these mirror it for Alembic)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ledger.postgres.tables import TIMESTAMPTZ, metadata

_PROVIDER = "provider in ('salesforce', 'hubspot')"

crm_connections = Table(
    "crm_connections",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("provider", Text, nullable=False),
    Column("fields", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("outbound", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("products", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("cursor", Text),
    Column("synced_at", TIMESTAMPTZ),
    Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "provider"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    CheckConstraint(_PROVIDER, name="provider"),
)

crm_links = Table(
    "crm_links",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("provider", Text, nullable=False),
    Column("record_id", Text, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    # Each mapped field's value on both sides at the last sync: {field: {crm, billing}}.
    Column("last_values", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # The billing status last written to the record (an unchanged status is not re-sent).
    Column("pushed", JSONB),
    Column("pushed_on", Date),  # the book's day of the last write (a daily refresh after)
    Column("synced_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "provider", "record_id"),
    ForeignKeyConstraint(["book_id", "customer_id"], ["customers.book_id", "customers.id"]),
    CheckConstraint(_PROVIDER, name="provider"),
    Index("ix_crm_links_book_id_customer_id", "book_id", "customer_id"),
)

crm_deals = Table(
    "crm_deals",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("provider", Text, nullable=False),
    Column("deal_id", Text, nullable=False),
    Column("subscription_id", Uuid, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "provider", "deal_id"),
    ForeignKeyConstraint(
        ["book_id", "subscription_id"], ["subscriptions.book_id", "subscriptions.id"]
    ),
)

crm_deliveries = Table(
    "crm_deliveries",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("provider", Text, nullable=False),
    Column("record_id", Text, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("event_id", Text),  # null: the daily refresh
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("last_error", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("finished_at", TIMESTAMPTZ),
    # The lease of a delivery being written (migration 0047, adapters/leases.py).
    Column("lease_until", TIMESTAMPTZ),
    Column("leased_at", TIMESTAMPTZ),
    Column("lease_pid", Integer),
    Column("lease_token", Uuid),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "event_id"], ["events.book_id", "events.id"]),
    CheckConstraint(
        "status in ('pending', 'sending', 'succeeded', 'unchanged', 'failed')", name="status"
    ),
    Index("ix_crm_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index(
        "ix_crm_deliveries_pending_record",
        "book_id",
        "provider",
        "record_id",
        postgresql_where=text("status = 'pending'"),
    ),
    Index("ix_crm_deliveries_sending", "lease_until", postgresql_where=text("status = 'sending'")),
)

crm_sync_log = Table(
    "crm_sync_log",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("provider", Text, nullable=False),
    Column("record_id", Text),
    Column("customer_id", Uuid),
    Column("kind", Text, nullable=False),
    Column("field", Text),
    Column("crm_value", JSONB),
    Column("billing_value", JSONB),
    Column("resolution", Text),
    Column("message", Text),
    Column("at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    CheckConstraint(
        "kind in ('created', 'updated', 'unchanged', 'conflict', 'subscription', 'skipped',"
        " 'error', 'pushed')",
        name="kind",
    ),
)
