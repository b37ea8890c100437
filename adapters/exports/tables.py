"""Tables of the exports: per-book ERP settings and account mappings."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ledger.postgres.tables import TIMESTAMPTZ, metadata

ERP_FORMATS_SQL = "erp_format in ('netsuite', 'quickbooks', 'xero', 'sap')"

# Per book and ERP: settings of the file layout (subsidiary, company code, date format…).
erp_settings = Table(
    "erp_settings",
    metadata,
    Column("book_id", Uuid, ForeignKey("books.id"), nullable=False),
    Column("erp_format", Text, nullable=False),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "erp_format"),
    CheckConstraint(ERP_FORMATS_SQL, name="erp_format"),
)

# Our account → the ERP's account code (or name, for QuickBooks).
erp_account_mappings = Table(
    "erp_account_mappings",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("erp_format", Text, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("erp_code", Text, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "erp_format", "account_id"),
    ForeignKeyConstraint(["book_id", "account_id"], ["accounts.book_id", "accounts.id"]),
    CheckConstraint(ERP_FORMATS_SQL, name="erp_format"),
    CheckConstraint("erp_code <> ''", name="erp_code_not_empty"),
)
