"""Bank statements, their lines, saved CSV mappings and reconciliation matches.

Statements and their lines are append-only records of what the bank sent.
A match links statement lines to ledger postings (by `(entry_id, line_no)`);
it never changes the ledger. Undoing a match stamps `undone_at` on it and
`released_at` on its links, so the history stays; partial unique indexes on
the live links keep a line or a posting in at most one live match. PostgreSQL
checks at commit that a match's lines and postings agree in sum (revision
0004's triggers).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
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

from ledger.postgres.tables import TIMESTAMPTZ, metadata

MATCH_RULES = (
    "bank_reference",
    "invoice_number",
    "amount_date_counterparty",
    "reversal_pair",
    "manual",
    "created_entry",
)

csv_mappings = Table(
    "csv_mappings",
    metadata,
    Column("book_id", Uuid, ForeignKey("books.id"), nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("mapping", JSONB, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "name"),
)

bank_statements = Table(
    "bank_statements",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("format", Text, nullable=False),
    Column("bank_statement_id", Text),
    Column("bank_account", Text),
    Column("currency", Text, ForeignKey("currencies.code"), nullable=False),
    Column("opening_balance", Numeric),
    Column("closing_balance", Numeric),
    Column("opening_date", Date),
    Column("closing_date", Date),
    Column("line_count", Integer, nullable=False),
    Column("new_line_count", Integer, nullable=False),
    # Content fingerprint: the same statement uploaded again finds this row.
    Column("fingerprint", Text, nullable=False),
    Column("file_sha256", Text, nullable=False),
    Column("filename", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "account_id", "fingerprint"),
    ForeignKeyConstraint(["book_id", "account_id"], ["accounts.book_id", "accounts.id"]),
    Index(None, "book_id", "account_id", "closing_date"),
    CheckConstraint("format in ('camt.053', 'ofx', 'csv')", name="format"),
)

bank_statement_lines = Table(
    "bank_statement_lines",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("statement_id", Uuid, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("bank_reference", Text, nullable=False),
    Column("booking_date", Date, nullable=False),
    Column("value_date", Date),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("end_to_end_id", Text),
    Column("counterparty_name", Text),
    Column("counterparty_account", Text),
    Column("remittance_info", Text),
    Column("bank_transaction_code", Text),
    PrimaryKeyConstraint("book_id", "id"),
    # De-duplication: the bank's own reference, once per book and account.
    UniqueConstraint("book_id", "account_id", "bank_reference"),
    UniqueConstraint("book_id", "statement_id", "line_no"),
    ForeignKeyConstraint(
        ["book_id", "statement_id"], ["bank_statements.book_id", "bank_statements.id"]
    ),
    ForeignKeyConstraint(["book_id", "account_id"], ["accounts.book_id", "accounts.id"]),
    Index(None, "book_id", "account_id", "booking_date"),
)

statement_matches = Table(
    "statement_matches",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("currency", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("entry_id", Uuid),  # the entry created from a statement line, if any
    Column("created_by", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("undone_at", TIMESTAMPTZ),
    Column("undone_by", Uuid),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # The creating transaction: links may be added only inside it.
    Column(
        "txid",
        BigInteger,
        nullable=False,
        server_default=text("(pg_current_xact_id())::text::bigint"),
    ),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "account_id"], ["accounts.book_id", "accounts.id"]),
    ForeignKeyConstraint(
        ["book_id", "entry_id"], ["journal_entries.book_id", "journal_entries.id"]
    ),
    Index(None, "book_id", "account_id", "created_at"),
    CheckConstraint(
        "rule in (" + ", ".join(f"'{r}'" for r in MATCH_RULES) + ")",
        name="rule",
    ),
)

statement_match_lines = Table(
    "statement_match_lines",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("match_id", Uuid, nullable=False),
    Column("line_id", Uuid, nullable=False),
    Column("released_at", TIMESTAMPTZ),
    PrimaryKeyConstraint("book_id", "match_id", "line_id"),
    ForeignKeyConstraint(
        ["book_id", "match_id"], ["statement_matches.book_id", "statement_matches.id"]
    ),
    ForeignKeyConstraint(
        ["book_id", "line_id"], ["bank_statement_lines.book_id", "bank_statement_lines.id"]
    ),
    Index(
        "uq_statement_match_lines_live",
        "book_id",
        "line_id",
        unique=True,
        postgresql_where=text("released_at is null"),
    ),
)

statement_match_postings = Table(
    "statement_match_postings",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("match_id", Uuid, nullable=False),
    Column("entry_id", Uuid, nullable=False),
    Column("line_no", SmallInteger, nullable=False),
    Column("released_at", TIMESTAMPTZ),
    PrimaryKeyConstraint("book_id", "match_id", "entry_id", "line_no"),
    ForeignKeyConstraint(
        ["book_id", "match_id"], ["statement_matches.book_id", "statement_matches.id"]
    ),
    ForeignKeyConstraint(
        ["book_id", "entry_id", "line_no"],
        ["postings.book_id", "postings.entry_id", "postings.line_no"],
    ),
    Index(
        "uq_statement_match_postings_live",
        "book_id",
        "entry_id",
        "line_no",
        unique=True,
        postgresql_where=text("released_at is null"),
    ),
)
