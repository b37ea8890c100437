"""Tables of direct-debit collection runs (SEPA and ACH): the runs with their
file, one transaction per invoice collected, and the US account numbers an
ACH file needs (kept apart from payment_methods, never shown by the API).

An invoice is never in two unsettled collections: the partial unique index
`uq_collection_transactions_unsettled` allows one `pending` transaction per
invoice; settled and returned ones no longer count.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from billing.postgres.tables import _book_fk
from ledger.postgres.tables import TIMESTAMPTZ, metadata

collection_runs = Table(
    "collection_runs",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("scheme", Text, nullable=False),
    Column("file_format", Text, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("created_on", Date, nullable=False),
    Column("collection_date", Date, nullable=False),
    Column("currency", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("total", Numeric, nullable=False),
    Column("transaction_count", Integer, nullable=False),
    Column("file", LargeBinary, nullable=False),
    Column("status", Text, nullable=False, server_default="submitted"),
    Column("settlement_entry_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "message_id"),
    CheckConstraint("scheme in ('sepa', 'ach')", name="scheme"),
    CheckConstraint("status in ('submitted', 'settled')", name="status"),
    CheckConstraint("total > 0 and transaction_count > 0", name="not_empty"),
)

collection_transactions = Table(
    "collection_transactions",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("run_id", Uuid, nullable=False),
    Column("invoice_id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("payment_method_id", Uuid, nullable=False),
    Column("payment_id", Uuid, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("sequence", Text),
    Column("sec_code", Text),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("settled_on", Date),
    Column("returned_on", Date),
    Column("return_code", Text),
    Column("return_reason", Text),
    Column("return_entry_id", Uuid),
    Column("fee_invoice_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("collection_runs", "run_id"),
    _book_fk("invoices", "invoice_id"),
    _book_fk("payment_methods", "payment_method_id"),
    _book_fk("payments", "payment_id"),
    UniqueConstraint("book_id", "reference"),
    CheckConstraint("status in ('pending', 'settled', 'returned')", name="status"),
    CheckConstraint("amount > 0", name="positive"),
    Index(None, "book_id", "run_id"),
    Index(
        "uq_collection_transactions_unsettled",
        "book_id",
        "invoice_id",
        unique=True,
        postgresql_where=text("status = 'pending'"),
    ),
)

ach_account_numbers = Table(
    "ach_account_numbers",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("payment_method_id", Uuid, nullable=False),
    Column("account_number", Text, nullable=False),
    PrimaryKeyConstraint("book_id", "payment_method_id"),
    ForeignKeyConstraint(
        ["book_id", "payment_method_id"], ["payment_methods.book_id", "payment_methods.id"]
    ),
)
