"""Services (MSP) tables: rate cards, contracts, device counts, milestones,
contract periods (what each period billed, drew, carried and expired) and
time entries (raw and rounded minutes, rate, state)."""

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
    SmallInteger,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ledger.postgres.tables import TIMESTAMPTZ, metadata

rate_cards = Table(
    "rate_cards",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("currency", Text, nullable=False),
    # Set: this client's override card; null: the book's card.
    Column("customer_id", Uuid),
    Column("rates", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("default_rate", Numeric),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "customer_id"], ["customers.book_id", "customers.id"]),
)

contracts = Table(
    "contracts",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("type", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date),
    Column("interval", Text, nullable=False, server_default="month"),
    Column("status", Text, nullable=False, server_default="active"),
    Column("terms", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "customer_id"], ["customers.book_id", "customers.id"]),
    CheckConstraint(
        "type in ('time_and_materials', 'retainer', 'fixed_fee', 'managed_services')",
        name="type",
    ),
    CheckConstraint("status in ('active', 'closed')", name="status"),
    CheckConstraint("end_date is null or end_date > start_date", name="dates"),
    Index(None, "customer_id", "book_id"),
)

contract_counts = Table(
    "contract_counts",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("contract_id", Uuid, nullable=False),
    Column("date", Date, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    # What is counted, priced by the contract's unit price of that kind (0032).
    Column("kind", Text, nullable=False, server_default="device"),
    PrimaryKeyConstraint("book_id", "contract_id", "kind", "date"),
    ForeignKeyConstraint(["book_id", "contract_id"], ["contracts.book_id", "contracts.id"]),
    CheckConstraint("quantity >= 0", name="quantity"),
    CheckConstraint("kind in ('device', 'user')", name="kind"),
)

contract_milestones = Table(
    "contract_milestones",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("contract_id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("completed_on", Date),
    Column("invoice_id", Uuid),
    PrimaryKeyConstraint("book_id", "contract_id", "name"),
    ForeignKeyConstraint(["book_id", "contract_id"], ["contracts.book_id", "contracts.id"]),
)

contract_periods = Table(
    "contract_periods",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("contract_id", Uuid, nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    # Exactly once: a period is invoiced by one invoice.
    Column("invoice_id", Uuid),
    Column("carried_in_minutes", Integer, nullable=False, server_default="0"),
    Column("drawn_minutes", Integer, nullable=False, server_default="0"),
    Column("closed", Boolean, nullable=False, server_default="false"),
    Column("carried_out_minutes", Integer, nullable=False, server_default="0"),
    Column("expired_minutes", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("book_id", "contract_id", "period_start"),
    ForeignKeyConstraint(["book_id", "contract_id"], ["contracts.book_id", "contracts.id"]),
)

time_entries = Table(
    "time_entries",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("contract_id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("person", Text, nullable=False),
    Column("date", Date, nullable=False),
    Column("start_minute", SmallInteger),
    Column("end_minute", SmallInteger),
    Column("minutes", Integer, nullable=False),
    Column("rounded_minutes", Integer, nullable=False),
    Column("role", Text, nullable=False),
    Column("billable", Text, nullable=False),
    Column("after_hours", Boolean, nullable=False, server_default="false"),
    Column("notes", Text, nullable=False, server_default=""),
    Column("ticket", Text),
    Column("project", Text),  # optional, beside the ticket (0032)
    Column("rate", Numeric, nullable=False),
    Column("rate_source", Text, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("status", Text, nullable=False, server_default="draft"),
    Column("drawn_minutes", Integer, nullable=False, server_default="0"),
    Column("overage_minutes", Integer, nullable=False, server_default="0"),
    Column("written_down", Numeric, nullable=False, server_default="0"),
    # What a month-end WIP accrual put in Unbilled for this entry (its invoice relieves it).
    Column("accrued_amount", Numeric, nullable=False, server_default="0"),
    Column("invoice_id", Uuid),
    Column("invoice_line", SmallInteger),
    Column("external_id", Text),
    # An adjusting entry: the approved entry it corrects; its minutes are a signed change.
    Column("adjusts", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "contract_id"], ["contracts.book_id", "contracts.id"]),
    ForeignKeyConstraint(["book_id", "adjusts"], ["time_entries.book_id", "time_entries.id"]),
    CheckConstraint(
        "(minutes >= 0 and rounded_minutes >= 0) or adjusts is not null", name="minutes"
    ),
    CheckConstraint("status in ('draft', 'approved', 'invoiced')", name="status"),
    CheckConstraint("billable in ('billable', 'no_charge', 'do_not_bill')", name="billable"),
    Index(None, "contract_id", "book_id", "status"),
    Index(None, "person", "book_id", "date"),
)

# Revision 0017: people (cost rates), expenses, percent-complete progress.

people = Table(
    "people",
    metadata,
    Column("book_id", Uuid, nullable=False),
    # The name as time entries carry it (as the PSA exports it).
    Column("name", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("cost_rate", Numeric, nullable=False),
    Column("role", Text),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "name"),
    CheckConstraint("cost_rate >= 0", name="cost_rate"),
)

expenses = Table(
    "expenses",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("contract_id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("person", Text, nullable=False),
    Column("date", Date, nullable=False),
    Column("description", Text, nullable=False),
    Column("currency", Text, nullable=False),
    # What it cost us, and what it bills (cost × (1 + markup), or as given).
    Column("cost", Numeric, nullable=False),
    Column("markup_percent", Numeric),
    Column("billable_amount", Numeric, nullable=False),
    Column("billable", Boolean, nullable=False, server_default="true"),
    # Receipt metadata only: the file itself is kept elsewhere.
    Column("receipt", JSONB),
    Column("status", Text, nullable=False, server_default="draft"),
    Column("invoice_id", Uuid),
    Column("invoice_line", SmallInteger),
    Column("external_id", Text),
    # An adjusting expense: the approved one it corrects; its amounts are signed changes.
    Column("adjusts", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "contract_id"], ["contracts.book_id", "contracts.id"]),
    ForeignKeyConstraint(["book_id", "adjusts"], ["expenses.book_id", "expenses.id"]),
    CheckConstraint("(cost >= 0 and billable_amount >= 0) or adjusts is not null", name="amounts"),
    CheckConstraint("status in ('draft', 'approved', 'invoiced')", name="status"),
    Index(None, "contract_id", "book_id", "status"),
)

contract_progress = Table(
    "contract_progress",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("contract_id", Uuid, nullable=False),
    # Gapless per contract: each row is the contract's state after one event.
    Column("seq", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("date", Date, nullable=False),
    Column("percent_complete", Numeric, nullable=False),
    Column("earned", Numeric, nullable=False),
    Column("billed", Numeric, nullable=False),
    Column("invoice_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "contract_id", "seq"),
    ForeignKeyConstraint(["book_id", "contract_id"], ["contracts.book_id", "contracts.id"]),
    CheckConstraint("kind in ('progress', 'adjustment', 'billed')", name="kind"),
    CheckConstraint("percent_complete between 0 and 100", name="percent"),
)
