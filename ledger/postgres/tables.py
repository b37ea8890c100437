"""The ledger's tables, as SQLAlchemy Core metadata.

Alembic revisions create them (with hand-written SQL for the triggers that
enforce the invariants); a test checks that this metadata and the migrated
database agree. `book_id` leads every primary key and unique constraint so
the schema can be distributed by book (Citus needs the distribution column in
every unique constraint). `currencies` is reference data shared by all books.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TIMESTAMPTZ = TIMESTAMP(timezone=True)

currencies = Table(
    "currencies",
    metadata,
    Column("code", Text, primary_key=True),
    Column("minor_unit", SmallInteger, nullable=False),
    CheckConstraint("code ~ '^[A-Z]{3}$'", name="code_format"),
    CheckConstraint("minor_unit between 0 and 4", name="minor_unit_range"),
)

books = Table(
    "books",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("base_currency", Text, ForeignKey("currencies.code"), nullable=False),
    Column("clock_mode", Text, nullable=False, server_default="real"),
    Column("clock_date", Date),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    CheckConstraint("clock_mode in ('real', 'simulated')", name="clock_mode"),
    CheckConstraint("(clock_mode = 'simulated') = (clock_date is not null)", name="clock_date"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("book_id", Uuid, ForeignKey("books.id"), nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("code", Text),
    # Empty means any currency; otherwise the only currencies it may hold.
    Column("currencies", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    # Read in the account's normal direction (credits for a liability).
    Column("min_balance", Numeric),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("opened_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("closed_at", TIMESTAMPTZ),
    PrimaryKeyConstraint("book_id", "id"),
    # Name and code lead their indexes (or the index is partial), so a lookup
    # by (book_id, id) can only be planned on the primary key (revision 0009).
    UniqueConstraint("name", "book_id"),
    Index(
        "uq_accounts_book_id_code",
        "book_id",
        "code",
        unique=True,
        postgresql_where=text("code is not null"),
    ),
    CheckConstraint(
        "name ~ '^(Assets|Liabilities|Equity|Income|Expenses)(:[A-Z0-9][A-Za-z0-9-]*)+$'",
        name="name_format",
    ),
    CheckConstraint(
        "type = case split_part(name, ':', 1) when 'Assets' then 'asset' "
        "when 'Liabilities' then 'liability' when 'Equity' then 'equity' "
        "when 'Income' then 'income' when 'Expenses' then 'expense' end",
        name="type_matches_root",
    ),
)

periods = Table(
    "periods",
    metadata,
    Column("book_id", Uuid, ForeignKey("books.id"), nullable=False),
    Column("period", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("changed_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "period"),
    CheckConstraint("period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'", name="period_format"),
    CheckConstraint("status in ('open', 'closed')", name="status"),
)

# Referential integrity of entries and postings (book, entry, account,
# currency) is checked by set-based statement triggers, not per-row foreign
# keys: a foreign key costs a row lookup and a KEY SHARE lock on the parent
# per posting, and every writer would lock the same book, currency and hot
# account rows. Parents cannot be deleted (append-only triggers, no grants).
journal_entries = Table(
    "journal_entries",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("effective_date", Date, nullable=False),
    Column("recorded_at", TIMESTAMPTZ, nullable=False, server_default=text("clock_timestamp()")),
    Column("memo", Text, nullable=False, server_default=""),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("idempotency_key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("reverses_entry_id", Uuid),
    # The writing transaction; postings may join an entry only inside it.
    Column(
        "txid",
        BigInteger,
        nullable=False,
        server_default=text("(pg_current_xact_id())::text::bigint"),
    ),
    PrimaryKeyConstraint("book_id", "id"),
    # Only the primary key leads with book_id alone: planned on empty tables,
    # any other such index looked as cheap as the key for the triggers'
    # (book_id, id) lookups, and a session that cached it scanned every entry
    # of the book per posting (see 0009_key_lookup_indexes.sql). No (book_id,
    # effective_date) index for that reason: date queries use postings'.
    UniqueConstraint("idempotency_key", "book_id"),
    Index(
        "uq_journal_entries_book_id_reverses_entry_id",
        "book_id",
        "reverses_entry_id",
        unique=True,
        postgresql_where=text("reverses_entry_id is not null"),
    ),
    # The reversed entry must exist: checked once per statement by the entries
    # trigger (revision 0029_batch), not by a foreign key's per-row trigger.
    # recorded_at is never null: only a query that says so (list_entries) can use it.
    Index(
        "ix_journal_entries_book_id_recorded_at",
        "book_id",
        "recorded_at",
        postgresql_where=text("recorded_at is not null"),
    ),
)

postings = Table(
    "postings",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("entry_id", Uuid, nullable=False),
    Column("line_no", SmallInteger, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    # Copied from the entry (a trigger checks it) so balances need no join.
    Column("effective_date", Date, nullable=False),
    Column("customer_id", Text),
    Column("document", Text),
    Column("dimensions", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    PrimaryKeyConstraint("book_id", "entry_id", "line_no"),
    # The account leads (its id is unique on its own): see journal_entries.
    Index(None, "account_id", "book_id", "effective_date"),
    Index(
        "ix_postings_book_id_customer_id",
        "book_id",
        "customer_id",
        postgresql_where=text("customer_id is not null"),
    ),
    Index(
        "ix_postings_book_id_document",
        "book_id",
        "document",
        postgresql_where=text("document is not null"),
    ),
)

# Materialized balances, maintained by the postings trigger: one row per
# account, currency, day and slot. Concurrent writers land on different slots
# (chosen by backend), so a hot revenue account does not serialize them.
account_balances = Table(
    "account_balances",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("currency", Text, nullable=False),
    Column("balance_date", Date, nullable=False),
    Column("slot", SmallInteger, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("postings_count", BigInteger, nullable=False),
    PrimaryKeyConstraint("book_id", "account_id", "currency", "balance_date", "slot"),
)

# Running balances of accounts with a minimum: one row per account and
# currency, updated under its row lock so concurrent debits cannot overdraw.
guarded_balances = Table(
    "guarded_balances",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("currency", Text, nullable=False),
    Column("balance", Numeric, nullable=False),
    PrimaryKeyConstraint("book_id", "account_id", "currency"),
)

seals = Table(
    "seals",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_id", Uuid, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("sealed_at", TIMESTAMPTZ, nullable=False, server_default=text("clock_timestamp()")),
    # How `hash` was computed (ledger.sealing: 1, or 2 written by today's sealer).
    Column("format", SmallInteger, nullable=False, server_default=text("1")),
    PrimaryKeyConstraint("book_id", "seq"),
    UniqueConstraint("book_id", "entry_id"),
    # The entry exists: checked once per statement by a trigger (0046), not per row.
    CheckConstraint("seq > 0", name="seq_positive"),
    # a sha256 hexdigest, as the sealer writes it (0055): the feed quotes it as it is
    CheckConstraint("hash ~ '^[0-9a-f]{64}$'", name="hash_hex"),
)

# Committed entries waiting for the sealer: one row per statement that posted
# them (the view `unsealed_entries` has a row per entry).
seal_queue = Table(
    "seal_queue",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("entry_ids", ARRAY(Uuid), nullable=False),
    Column("queued_at", TIMESTAMPTZ, nullable=False, server_default=text("clock_timestamp()")),
    PrimaryKeyConstraint("book_id", "id"),
)
