"""The billing domain's tables (same metadata as the ledger's).

Documents (invoices, credit notes, payments, refunds) keep what they say;
what they are worth to the business now (amount paid, amount due, customer
credit, recognized revenue) is always read from the ledger's postings, which
carry the document in `postings.document` and the invoice line in
`postings.dimensions->>'line'`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ledger.postgres.tables import TIMESTAMPTZ, metadata


def _book_fk(table: str, *columns: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["book_id", *columns], [f"{table}.book_id", *(f"{table}.id" for _ in columns)]
    )


customers = Table(
    "customers",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("email", Text),
    Column("external_id", Text),
    Column("payment_terms", Text, nullable=False, server_default="net"),
    Column("payment_terms_days", Integer, nullable=False, server_default="30"),
    Column("tax_rate", Numeric, nullable=False, server_default="0"),
    Column("tax_treatment", Text, nullable=False, server_default="taxable"),
    Column("address", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("collection_method", Text, nullable=False, server_default="send_invoice"),
    Column("default_payment_method", Uuid),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("external_id", "book_id"),  # the id leads (revision 0032)
    CheckConstraint(
        "collection_method in ('charge_automatically', 'send_invoice')", name="collection_method"
    ),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    CheckConstraint("payment_terms in ('net', 'due_on_receipt', 'end_of_month')", name="terms"),
    CheckConstraint("payment_terms_days between 0 and 3650", name="terms_days"),
    CheckConstraint("tax_rate >= 0 and tax_rate < 1", name="tax_rate"),
    CheckConstraint(
        "tax_treatment in ('taxable', 'exempt', 'reverse_charge')", name="tax_treatment"
    ),
)

products = Table(
    "products",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("revenue_account", Text, nullable=False, server_default="Income:Subscriptions"),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
)

prices = Table(
    "prices",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("product_id", Uuid, nullable=False),
    Column("currency", Text, nullable=False),
    Column("charge_model", Text, nullable=False),
    Column("unit_amount", Numeric),
    Column("tiers", JSONB),
    Column("package_size", Integer),
    Column("interval", Text),
    Column("interval_count", Integer, nullable=False, server_default="1"),
    Column("metric", Text),
    Column("aggregation", Text),
    Column("tax_behavior", Text, nullable=False, server_default="exclusive"),
    # Usage prices: units given free each period, and the least a period bills.
    Column("free_units", Numeric),
    Column("minimum_amount", Numeric),
    # A per-customer override of another price.
    Column("customer_id", Uuid),
    Column("overrides_price_id", Uuid),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("products", "product_id"),
    _book_fk("customers", "customer_id"),
    CheckConstraint(
        "charge_model in ('flat', 'per_unit', 'graduated', 'volume', 'package', 'percentage')",
        name="charge_model",
    ),
    CheckConstraint("interval in ('day', 'week', 'month', 'year')", name="interval"),
    CheckConstraint("interval_count between 1 and 1000", name="interval_count"),
    CheckConstraint(
        "aggregation in ('sum', 'count', 'max', 'unique_count', 'last')", name="aggregation"
    ),
    CheckConstraint("tax_behavior in ('exclusive', 'inclusive')", name="tax_behavior"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", Text, nullable=False),
    Column("percent_off", Numeric),
    Column("amount_off", Numeric),
    Column("currency", Text),
    Column("duration", Text, nullable=False),
    Column("duration_in_periods", Integer),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    CheckConstraint("duration in ('once', 'repeating', 'forever')", name="duration"),
    CheckConstraint("(percent_off is null) <> (amount_off is null)", name="percent_or_amount"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("status", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("billing_anchor", Date, nullable=False),
    Column("interval", Text, nullable=False),
    Column("interval_count", Integer, nullable=False),
    Column("trial_end", Date),
    # The next period to invoice starts here; billing runs advance it.
    Column("next_period_start", Date, nullable=False),
    Column("periods_billed", Integer, nullable=False, server_default="0"),
    Column("cancel_at", Date),
    Column("canceled_on", Date),
    Column("paused_on", Date),
    # Set by dunning (billing/dunning.py): no period starting on or after it is billed.
    Column("suspended_on", Date),
    Column("coupon_id", Uuid),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("customers", "customer_id"),
    _book_fk("coupons", "coupon_id"),
    CheckConstraint(
        "status in ('trialing', 'active', 'past_due', 'paused', 'canceled')", name="status"
    ),
    # Claims of a billing run walk it in order (next_period_start, id), no sort.
    Index(None, "book_id", "next_period_start", "id"),
    Index(None, "book_id", "customer_id"),
)

# Items are versioned: a change ends the current version and starts another,
# so any past period can be re-rated exactly as it was.
subscription_items = Table(
    "subscription_items",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("subscription_id", Uuid, nullable=False),
    Column("price_id", Uuid, nullable=False),
    Column("quantity", Numeric, nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("effective_to", Date),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("subscriptions", "subscription_id"),
    _book_fk("prices", "price_id"),
    CheckConstraint("quantity >= 0", name="quantity"),
    CheckConstraint("effective_to is null or effective_to >= effective_from", name="range"),
    Index(None, "book_id", "subscription_id"),
)

number_series = Table(
    "number_series",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("series", Text, nullable=False),
    Column("last_value", BigInteger, nullable=False),
    PrimaryKeyConstraint("book_id", "series"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
)

invoices = Table(
    "invoices",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("subscription_id", Uuid),
    # Exactly-once billing: one invoice per subscription period.
    Column("subscription_period_start", Date),
    Column("status", Text, nullable=False),
    Column("number", Text),
    Column("currency", Text, nullable=False),
    Column("issue_date", Date),
    Column("due_date", Date),
    Column("supply_start", Date),
    Column("supply_end", Date),
    Column("subtotal", Numeric, nullable=False, server_default="0"),
    Column("discount_total", Numeric, nullable=False, server_default="0"),
    Column("tax_total", Numeric, nullable=False, server_default="0"),
    Column("total", Numeric, nullable=False, server_default="0"),
    Column("finalization_entry_id", Uuid),
    Column("void_entry_id", Uuid),
    Column("memo", Text, nullable=False, server_default=""),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    # Only the primary key leads with book_id alone, so the lines trigger's
    # (book_id, id) lookup cannot be planned as a scan of the book's invoices
    # (migrations/versions/0009_key_lookup_indexes.sql).
    Index(
        "uq_invoices_book_id_number",
        "book_id",
        "number",
        unique=True,
        postgresql_where=text("number is not null"),
    ),
    UniqueConstraint("subscription_id", "subscription_period_start", "book_id"),
    _book_fk("customers", "customer_id"),
    _book_fk("subscriptions", "subscription_id"),
    CheckConstraint("status in ('draft', 'open', 'void', 'uncollectible')", name="status"),
    CheckConstraint("(status = 'draft') = (number is null)", name="number_when_final"),
    Index(None, "customer_id", "book_id", "due_date"),
    Index(None, "status", "book_id"),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("invoice_id", Uuid, nullable=False),
    Column("line_no", SmallInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("quantity", Numeric, nullable=False),
    Column("unit_amount", Numeric, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("discount_amount", Numeric, nullable=False, server_default="0"),
    Column("tax_rate", Numeric, nullable=False, server_default="0"),
    Column("tax_amount", Numeric, nullable=False, server_default="0"),
    Column("service_start", Date),
    Column("service_end", Date),
    Column("price_id", Uuid),
    Column("revenue_account", Text, nullable=False),
    PrimaryKeyConstraint("book_id", "invoice_id", "line_no"),
    # Deferrable: a billing run writes the lines just before their (finalized) invoice.
    ForeignKeyConstraint(
        ["book_id", "invoice_id"],
        ["invoices.book_id", "invoices.id"],
        deferrable=True,
        initially="IMMEDIATE",
    ),
    CheckConstraint(
        "(service_start is null) = (service_end is null)"
        " and (service_end is null or service_end > service_start)",
        name="service_period",
    ),
)

payments = Table(
    "payments",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("received_on", Date, nullable=False),
    Column("reference", Text),
    Column("status", Text, nullable=False, server_default="succeeded"),
    Column("entry_id", Uuid),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    # The gateway charge a collected payment records (0017): one payment per charge,
    # whether the charge's answer or its webhook posts it first.
    Column("gateway_charge", Text),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("customers", "customer_id"),
    UniqueConstraint("book_id", "gateway_charge"),
    CheckConstraint("amount > 0", name="positive"),
    CheckConstraint("status in ('succeeded', 'failed', 'pending')", name="status"),
    Index(None, "book_id", "customer_id"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("payment_id", Uuid),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("refunded_on", Date, nullable=False),
    Column("entry_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    _book_fk("customers", "customer_id"),
    _book_fk("payments", "payment_id"),
    CheckConstraint("amount > 0", name="positive"),
)

credit_notes = Table(
    "credit_notes",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("invoice_id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("number", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("net_amount", Numeric, nullable=False),
    Column("tax_amount", Numeric, nullable=False),
    Column("total", Numeric, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("credit_to", Text, nullable=False),
    Column("lines", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("entry_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "number"),
    _book_fk("invoices", "invoice_id"),
    CheckConstraint("credit_to in ('receivable', 'customer_credit', 'refund')", name="credit_to"),
)

billing_runs = Table(
    "billing_runs",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("status", Text, nullable=False),
    Column("invoices_created", Integer, nullable=False, server_default="0"),
    Column("started_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("finished_at", TIMESTAMPTZ),
    # The worker renews its lease every batch; a running run whose lease ran out is
    # interrupted (its worker died) and the next run of the same date takes it over.
    Column("heartbeat_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column(
        "lease_until",
        TIMESTAMPTZ,
        nullable=False,
        server_default=text("now() + interval '5 minutes'"),
    ),
    # [{"subscription": id, "reason": text}]: what this run could not bill, and why.
    Column("failures", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    CheckConstraint("status in ('running', 'completed', 'failed')", name="status"),
)

# Exchange rates per book (billing.fx): units of `quote` per one `base`, in force from `date`.
fx_rates = Table(
    "fx_rates",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("date", Date, nullable=False),
    Column("base", Text, nullable=False),
    Column("quote", Text, nullable=False),
    Column("rate", Numeric, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "base", "quote", "date"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
    ForeignKeyConstraint(["base"], ["currencies.code"]),
    ForeignKeyConstraint(["quote"], ["currencies.code"]),
    CheckConstraint("rate > 0", name="positive"),
    CheckConstraint("base <> quote", name="two_currencies"),
)

# Month-end revaluations of foreign receivables: one per book and date.
fx_revaluations = Table(
    "fx_revaluations",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("functional_currency", Text, nullable=False),
    Column("entry_id", Uuid),
    Column("reversal_entry_id", Uuid),
    # [{"invoice", "number", "currency", "open_amount", "carried_rate", "rate", "amount"}]
    Column("lines", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "as_of"),
    ForeignKeyConstraint(["book_id"], ["books.id"]),
)
