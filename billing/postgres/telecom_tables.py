"""Telecom tables: prepaid wallets and their reservations (issue 9, item 5),
rate plans and rated CDRs (item 4).

A wallet's balance is not stored here: it is its own ledger account
`Liabilities:Prepaid-Wallet:W<id>` with a minimum balance of 0, whose running
balance the ledger keeps in `guarded_balances` under a row lock, so the
database refuses any posting that would take that one wallet below zero.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
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

wallets = Table(
    "wallets",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("currency", Text, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("low_balance_threshold", Numeric),
    # Set when available fell below the threshold (one event per crossing),
    # cleared when a top-up lifts it back.
    Column("low_balance", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    # The last day its value can be used (top-ups with `valid_days` extend it);
    # null: it never lapses. Revision 0038.
    Column("valid_until", Date),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "customer_id"], ["customers.book_id", "customers.id"]),
    ForeignKeyConstraint(["book_id", "account_id"], ["accounts.book_id", "accounts.id"]),
    CheckConstraint("low_balance_threshold >= 0", name="threshold"),
    Index(
        "ix_wallets_valid_until_book_id",
        "valid_until",
        "book_id",
        postgresql_where=text("valid_until is not null"),
    ),
)

wallet_reservations = Table(
    "wallet_reservations",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("wallet_id", Uuid, nullable=False),
    Column("requested", Numeric, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("captured", Numeric),
    Column("status", Text, nullable=False, server_default="held"),
    # Real time (the database's clock), never the book's simulated date.
    Column("expires_at", TIMESTAMPTZ, nullable=False),
    Column("closed_at", TIMESTAMPTZ),
    Column("entry_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "wallet_id"], ["wallets.book_id", "wallets.id"]),
    CheckConstraint("amount > 0 and amount <= requested", name="amount"),
    CheckConstraint("captured is null or (captured >= 0 and captured <= amount)", name="captured"),
    CheckConstraint("status in ('held', 'captured', 'released', 'expired')", name="status"),
    CheckConstraint("(status = 'captured') = (captured is not null)", name="captured_status"),
    Index(
        "ix_wallet_reservations_held",
        "wallet_id",
        "book_id",
        postgresql_where=text("status = 'held'"),
    ),
)

wallet_events = Table(
    "wallet_events",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("wallet_id", Uuid, nullable=False),
    Column("kind", Text, nullable=False),
    Column("available", Numeric, nullable=False),
    Column("threshold", Numeric, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "wallet_id"], ["wallets.book_id", "wallets.id"]),
    CheckConstraint("kind in ('low_balance')", name="kind"),
    Index(None, "wallet_id", "book_id", "created_at"),
)

rate_plans = Table(
    "rate_plans",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("currency", Text, nullable=False),
    Column("time_zone", Text, nullable=False),
    # bands, zones, rates, allowances as posted (validated by billing.telecom).
    Column("definition", JSONB, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    UniqueConstraint("name", "book_id", "effective_from"),
)

# A subscriber (MSISDN or account) rated by a plan, billed to a customer: postpaid
# (rated usage accrues to Unbilled) or prepaid from a wallet.
telecom_subscribers = Table(
    "telecom_subscribers",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("subscriber", Text, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("rate_plan", Text, nullable=False),
    Column("wallet_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "subscriber"),
    ForeignKeyConstraint(["book_id", "customer_id"], ["customers.book_id", "customers.id"]),
    ForeignKeyConstraint(["book_id", "wallet_id"], ["wallets.book_id", "wallets.id"]),
)

cdr_rating_runs = Table(
    "cdr_rating_runs",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("through", Date, nullable=False),
    Column("rated", Integer, nullable=False),
    Column("unrateable", Integer, nullable=False),
    Column("entries", Integer, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
)

# The call detail records as imported. A CDR's rating is not stored here but in
# `cdr_ratings` (migration 0032): a run inserts its ratings and never updates a CDR.
cdrs = Table(
    "cdrs",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Text, nullable=False),  # the source's record id: re-sent records dedupe
    Column("subscriber", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("start", TIMESTAMPTZ, nullable=False),
    Column("quantity", Numeric, nullable=False),
    Column("destination", Text, nullable=False, server_default=""),
    Column("roaming", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    # Why the last run could not rate it (readers show it only while it is unrated):
    # the one update a run makes to `cdrs`, for the rare unrateable record.
    Column("rating_error", Text),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(
        ["book_id", "subscriber"],
        ["telecom_subscribers.book_id", "telecom_subscribers.subscriber"],
    ),
    CheckConstraint("event_type in ('voice', 'sms', 'data')", name="event_type"),
    CheckConstraint("quantity >= 0", name="quantity"),
    Index(None, "subscriber", "book_id", "start"),
)

# The invoice that billed a CDR, one row per billed CDR (migration 0048): inserted by
# invoicing, deleted only when the invoice is voided (its CDRs are unbilled again).
# Not a column of `cdrs`: setting it rewrote every CDR once more (never HOT).
cdr_invoices = Table(
    "cdr_invoices",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("cdr_id", Text, nullable=False),
    Column("invoice_id", Uuid, nullable=False),
    PrimaryKeyConstraint("book_id", "cdr_id"),
    Index(None, "book_id", "invoice_id"),
)

# The rating sub-ledger: one row per rated CDR, written once by the run that rated it
# (the application may insert and read, not update). The key is the CDR's: a CDR is
# rated once. No foreign keys to `cdrs` or `cdr_rating_runs`: a run writes a row per
# CDR it read in the same transaction, and a per-row key check would cost more than
# the row.
cdr_ratings = Table(
    "cdr_ratings",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("cdr_id", Text, nullable=False),
    Column("run_id", Uuid, nullable=False),
    Column("rate_plan", Text, nullable=False),
    Column("plan_version", Date, nullable=False),
    Column("zone", Text),
    Column("band", Text),
    Column("billed_quantity", Numeric, nullable=False),
    Column("included", Numeric, nullable=False),  # of billed_quantity, by an allowance
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    PrimaryKeyConstraint("book_id", "cdr_id"),
    # A later run continues the allowances from these few rows (telecom._prior_included).
    Index("ix_cdr_ratings_included", "book_id", postgresql_where=text("included > 0")),
)

# Imported CDRs not yet rated, with what rating reads (migration 0044): a trigger on
# `cdrs` queues every inserted CDR, a rating run takes out those it rates. A run's
# cost follows the queue, not the book's history of CDRs.
cdr_rating_queue = Table(
    "cdr_rating_queue",
    metadata,
    Column("book_id", Uuid, nullable=False),
    # Byte order: a run sorts by subscriber, start and id as Python compares them.
    Column("cdr_id", Text(collation="C"), nullable=False),
    Column("subscriber", Text(collation="C"), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("start", TIMESTAMPTZ, nullable=False),
    Column("quantity", Numeric, nullable=False),
    Column("destination", Text, nullable=False),
    Column("roaming", Boolean, nullable=False),
    PrimaryKeyConstraint("book_id", "cdr_id"),
)
