"""Bank statements, their lines, saved CSV mappings and reconciliation matches.

Statements and their lines are append-only records of what the bank sent.
A match links statement lines to ledger postings (by `(entry_id, line_no)`);
it never changes the ledger. Undoing a match stamps `undone_at` on it and
`released_at` on its links, so the history stays; partial unique indexes on
the live links keep a line or a posting in at most one live match. PostgreSQL
checks at commit that a match's lines and postings agree in sum (revision
0004's rules, checked set-based once per transaction since revision 0030).
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
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
    # The stored line of each of the statement's lines, in order (a line an
    # earlier statement already stored is listed, not stored twice); checked
    # at commit to add up from opening to closing (revision 0007).
    Column("line_ids", ARRAY(Uuid)),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "account_id", "fingerprint"),
    ForeignKeyConstraint(["book_id", "account_id"], ["accounts.book_id", "accounts.id"]),
    Index(None, "book_id", "account_id", "closing_date"),
    CheckConstraint("format in ('camt.053', 'ofx', 'csv', 'mt940')", name="format"),
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
    # The bank account the line came from, compacted ('' when the file names
    # none): references such as OFX FITIDs are unique per bank account only.
    Column("bank_account", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("book_id", "id"),
    # De-duplication: the bank's own reference, once per ledger and bank account.
    UniqueConstraint(
        "book_id",
        "account_id",
        "bank_account",
        "bank_reference",
        name="uq_bank_statement_lines_reference",
    ),
    UniqueConstraint("book_id", "statement_id", "line_no"),
    ForeignKeyConstraint(
        ["book_id", "statement_id"], ["bank_statements.book_id", "bank_statements.id"]
    ),
    ForeignKeyConstraint(["book_id", "account_id"], ["accounts.book_id", "accounts.id"]),
    # The account leads (see 0009_key_lookup_indexes.sql: no (book_id, id) lookup may use it).
    Index(None, "account_id", "book_id", "booking_date"),
)

# Referential integrity of matches and their links (account, entry, match,
# statement line, posting) is checked by set-based statement triggers since
# revision 0030, not per-row foreign keys: a foreign key costs a lookup and a
# KEY SHARE lock on the parent per row, three to six per match of an
# auto-match run. Parents cannot be deleted (append-only triggers, no grants).
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
    Index(None, "account_id", "book_id", "created_at"),
    Index(None, "txid"),  # the commit-time check finds the transaction's matches
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
    Index(
        "uq_statement_match_postings_live",
        "book_id",
        "entry_id",
        "line_no",
        unique=True,
        postgresql_where=text("released_at is null"),
    ),
)

# The commit-time check (revision 0030): one ticket per transaction that
# wrote matches or links; its deferred constraint trigger checks all the
# transaction's matches in one statement and removes the ticket before
# commit. The application role has no access.
statement_match_tickets = Table(
    "statement_match_tickets",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("txid", BigInteger, nullable=False),
    PrimaryKeyConstraint("book_id", "txid"),
)
