"""Tables of the HTTP edge: API keys and stored idempotent responses."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ledger.postgres.tables import TIMESTAMPTZ, metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("book_id", Uuid, ForeignKey("books.id"), nullable=False),
    Column("id", Uuid, nullable=False),
    Column("key_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("revoked_at", TIMESTAMPTZ),
    Column("last_used_at", TIMESTAMPTZ),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "key_hash"),
    CheckConstraint(
        "role in ('admin', 'operator', 'accountant', 'auditor', 'erp', 'billing_staff')",
        name="role",
    ),
)

# Stored responses of POST requests that carried an Idempotency-Key.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("status_code", Integer),
    Column("response_body", LargeBinary),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "key"),
)

# Every mutation the API answered (issue 14): who, what, how it ended. Append-only
# (a trigger refuses UPDATE, DELETE and TRUNCATE, as for journal entries). Its book
# is checked by a statement trigger, not a foreign key (revision 0054: no row lock).
audit_log = Table(
    "audit_log",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("at", TIMESTAMPTZ, nullable=False),
    Column("key_id", Uuid),  # none for a command-line mutation: `principal` names who
    Column("role", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("idempotency_key", Text),
    Column("request_id", Text, nullable=False),
    Column("created", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("principal", Text),
    PrimaryKeyConstraint("book_id", "id"),
    CheckConstraint("key_id is not null or principal is not null", name="who"),
    Index("ix_audit_log_book_id_at", "book_id", "at"),
)
