"""Tables of payment collection: customers' payment methods, charge attempts,
and what the gateways did (charges, refunds, payouts, disputes).

The fake gateway keeps its whole state here, so it survives restarts and
moves only with the book's clock.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from billing.postgres.tables import _book_fk
from ledger.postgres.tables import TIMESTAMPTZ, metadata

payment_methods = Table(
    "payment_methods",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("type", Text, nullable=False),
    Column("gateway", Text),
    Column("token", Text),
    Column("brand", Text),
    Column("last4", Text, nullable=False),
    Column("exp_month", SmallInteger),
    Column("exp_year", SmallInteger),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("detached_at", TIMESTAMPTZ),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("customers", "customer_id"),
    CheckConstraint("type in ('card', 'sepa_debit', 'us_bank_account')", name="type"),
    CheckConstraint("type <> 'card' or (gateway is not null and token is not null)", name="card"),
    Index(None, "book_id", "customer_id"),
)

payment_attempts = Table(
    "payment_attempts",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("invoice_id", Uuid, nullable=False),
    Column("payment_method_id", Uuid, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("at", Date, nullable=False),
    Column("outcome", Text, nullable=False, server_default="pending"),
    Column("code", Text),
    Column("charge_id", Text),
    Column("payment_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("invoices", "invoice_id"),
    _book_fk("payment_methods", "payment_method_id"),
    CheckConstraint(
        "outcome in ('pending', 'succeeded', 'failed', 'requires_action')", name="outcome"
    ),
    CheckConstraint("amount > 0", name="positive"),
    Index(None, "book_id", "invoice_id"),
)

gateway_charges = Table(
    "gateway_charges",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Text, nullable=False),
    Column("gateway", Text, nullable=False),
    Column("attempt_id", Uuid, nullable=False),
    Column("token", Text, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("fee", Numeric, nullable=False),
    Column("status", Text, nullable=False),
    Column("code", Text),
    Column("captured_on", Date, nullable=False),
    Column("dispute_on", Date),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "attempt_id"),
    CheckConstraint("status in ('succeeded', 'failed', 'requires_action')", name="status"),
)

gateway_balance_transactions = Table(
    "gateway_balance_transactions",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Text, nullable=False),
    Column("gateway", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("charge_id", Text, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("available_on", Date, nullable=False),
    Column("payout_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("gateway_charges", "charge_id"),
    CheckConstraint("type in ('charge', 'refund', 'dispute', 'dispute_won')", name="type"),
    Index(None, "book_id", "payout_id", "available_on"),
)

payouts = Table(
    "payouts",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("gateway", Text, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("arrival_date", Date, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("entry_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    CheckConstraint("status in ('pending', 'paid')", name="status"),
    Index(None, "book_id", "gateway", "arrival_date"),
)

disputes = Table(
    "disputes",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("gateway", Text, nullable=False),
    Column("charge_id", Text, nullable=False),
    Column("payment_id", Uuid, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("fee", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("opened_on", Date, nullable=False),
    Column("evidence_due", Date, nullable=False),
    Column("status", Text, nullable=False, server_default="needs_response"),
    Column("closed_on", Date),
    Column("entry_id", Uuid),
    Column("closing_entry_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "charge_id"),
    _book_fk("gateway_charges", "charge_id"),
    CheckConstraint("status in ('needs_response', 'won', 'lost')", name="status"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("provider", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("received_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "provider", "event_id"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
)
