"""Tables of the HTTP edge: API keys and stored idempotent responses."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

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
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "key_hash"),
    CheckConstraint("role in ('admin', 'operator', 'accountant', 'auditor', 'erp')", name="role"),
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
