"""Tables of migration 0017_usage: rate plans as subscription items, usage accruals,
and which invoice billed each CDR.

- `subscription_rate_plans`: a subscription's rate-plan item — the postpaid
  subscriber (MSISDN or account) whose rated CDRs its invoices bill in arrears.
  A subscriber is on at most one subscription.
- `add_on_sales`: one-off add-ons (value-added services such as a roaming
  pack) sold from a prepaid wallet or put on a subscription's next invoice.
- `vouchers`: prepaid codes (stored hashed) that top a wallet up once.
- `usage_accruals`: what the month-end accrual run moved to
  Assets:Receivable:Unbilled for a (subscription, usage price, billing period),
  and (rows with `invoice_id`, negative) what the invoice relieved of it; the
  sum per key is what is still accrued.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from ledger.postgres.tables import TIMESTAMPTZ, metadata

subscription_rate_plans = Table(
    "subscription_rate_plans",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("subscription_id", Uuid, nullable=False),
    Column("subscriber", Text, nullable=False),
    Column("rate_plan", Text, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "subscription_id"),
    UniqueConstraint("book_id", "subscriber"),
    ForeignKeyConstraint(
        ["book_id", "subscription_id"], ["subscriptions.book_id", "subscriptions.id"]
    ),
    ForeignKeyConstraint(
        ["book_id", "subscriber"],
        ["telecom_subscribers.book_id", "telecom_subscribers.subscriber"],
    ),
)

usage_accruals = Table(
    "usage_accruals",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("subscription_id", Uuid, nullable=False),
    Column("price_id", Uuid, nullable=False),
    Column("period_start", Date, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("invoice_id", Uuid),  # set on a relief row: the invoice that billed it
    Column("entry_id", Uuid),  # the accrual's entry (a relief is in the invoice's)
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(
        ["book_id", "subscription_id"], ["subscriptions.book_id", "subscriptions.id"]
    ),
    ForeignKeyConstraint(["book_id", "price_id"], ["prices.book_id", "prices.id"]),
    Index(None, "book_id", "subscription_id", "price_id", "period_start"),
)

add_on_sales = Table(
    "add_on_sales",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("price_id", Uuid, nullable=False),
    Column("quantity", Numeric, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
    Column("wallet_id", Uuid),  # sold from the wallet (prepaid) …
    Column("subscription_id", Uuid),  # … or billed on its next invoice (postpaid)
    Column("entry_id", Uuid),
    Column("invoice_id", Uuid),  # the pending draft holding the postpaid line
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    ForeignKeyConstraint(["book_id", "price_id"], ["prices.book_id", "prices.id"]),
    ForeignKeyConstraint(["book_id", "customer_id"], ["customers.book_id", "customers.id"]),
    CheckConstraint("(wallet_id is null) <> (subscription_id is null)", name="channel"),
    CheckConstraint("quantity > 0 and amount >= 0", name="amounts"),
)

vouchers = Table(
    "vouchers",
    metadata,
    Column("book_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("batch_id", Uuid, nullable=False),
    Column("code_hash", Text, nullable=False),  # sha256 of the code: the code is shown once
    Column("currency", Text, nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("issue_entry_id", Uuid, nullable=False),
    Column("redeemed_wallet_id", Uuid),
    Column("redeemed_at", TIMESTAMPTZ),
    Column("redemption_entry_id", Uuid),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("book_id", "id"),
    UniqueConstraint("book_id", "code_hash"),
    ForeignKeyConstraint(["book_id", "redeemed_wallet_id"], ["wallets.book_id", "wallets.id"]),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint("(redeemed_at is null) = (redeemed_wallet_id is null)", name="redeemed"),
)
