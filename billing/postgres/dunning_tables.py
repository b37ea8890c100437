"""Dunning's tables: the steps done per invoice, and the outbox of messages.

A step row is the once-only mark of a dunning step (its key, e.g.
`reminder:+7`, unique per invoice); a message row is written in the same
transaction and sent after commit by adapters/messages (status queued → sending,
under a lease → sent, or failed once its retries are used up).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from billing.postgres.tables import _book_fk
from ledger.postgres.tables import TIMESTAMPTZ, metadata

dunning_steps = Table(
    "dunning_steps",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("invoice_id", Uuid, nullable=False),
    Column("step", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("on_date", Date, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "invoice_id", "step"),
    _book_fk("invoices", "invoice_id"),
    CheckConstraint("outcome in ('done', 'skipped')", name="outcome"),
)

messages = Table(
    "messages",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("invoice_id", Uuid),
    Column("kind", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("last_error", Text),
    Column("sent_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    # The lease of a message being sent (migration 0047, adapters/leases.py).
    Column("lease_until", TIMESTAMPTZ),
    Column("leased_at", TIMESTAMPTZ),
    Column("lease_pid", Integer),
    Column("lease_token", Uuid),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("customers", "customer_id"),
    _book_fk("invoices", "invoice_id"),
    UniqueConstraint("book_id", "invoice_id", "kind"),
    CheckConstraint("status in ('queued', 'sending', 'sent', 'failed')", name="status"),
    Index(None, "status", "next_attempt_at"),
)
