"""Usage: rate plans as subscription items (the subscriber a subscription bills),
usage accruals to Unbilled, and the invoice that billed each CDR.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscription_rate_plans",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("subscriber", sa.Text(), nullable=False),
        sa.Column("rate_plan", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["book_id", "subscription_id"],
            ["subscriptions.book_id", "subscriptions.id"],
            name=op.f("fk_subscription_rate_plans_book_id_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["book_id", "subscriber"],
            ["telecom_subscribers.book_id", "telecom_subscribers.subscriber"],
            name=op.f("fk_subscription_rate_plans_book_id_subscriber_telecom_subscribers"),
        ),
        sa.PrimaryKeyConstraint(
            "book_id", "subscription_id", name=op.f("pk_subscription_rate_plans")
        ),
        sa.UniqueConstraint(
            "book_id", "subscriber", name=op.f("uq_subscription_rate_plans_book_id_subscriber")
        ),
    )
    op.create_table(
        "usage_accruals",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("price_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("entry_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["book_id", "subscription_id"],
            ["subscriptions.book_id", "subscriptions.id"],
            name=op.f("fk_usage_accruals_book_id_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["book_id", "price_id"],
            ["prices.book_id", "prices.id"],
            name=op.f("fk_usage_accruals_book_id_price_id_prices"),
        ),
        sa.PrimaryKeyConstraint("book_id", "id", name=op.f("pk_usage_accruals")),
    )
    op.create_index(
        op.f("ix_usage_accruals_book_id_subscription_id_price_id_period_start"),
        "usage_accruals",
        ["book_id", "subscription_id", "price_id", "period_start"],
        unique=False,
    )
    op.create_table(
        "add_on_sales",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("price_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=True),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("entry_id", sa.Uuid(), nullable=True),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("(wallet_id is null) <> (subscription_id is null)", name=op.f("ck_add_on_sales_channel")),
        sa.CheckConstraint("quantity > 0 and amount >= 0", name=op.f("ck_add_on_sales_amounts")),
        sa.ForeignKeyConstraint(["book_id", "customer_id"], ["customers.book_id", "customers.id"], name=op.f("fk_add_on_sales_book_id_customer_id_customers")),
        sa.ForeignKeyConstraint(["book_id", "price_id"], ["prices.book_id", "prices.id"], name=op.f("fk_add_on_sales_book_id_price_id_prices")),
        sa.PrimaryKeyConstraint("book_id", "id", name=op.f("pk_add_on_sales")),
    )
    op.create_table(
        "vouchers",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("issue_entry_id", sa.Uuid(), nullable=False),
        sa.Column("redeemed_wallet_id", sa.Uuid(), nullable=True),
        sa.Column("redeemed_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("redemption_entry_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_vouchers_amount")),
        sa.CheckConstraint("(redeemed_at is null) = (redeemed_wallet_id is null)", name=op.f("ck_vouchers_redeemed")),
        sa.ForeignKeyConstraint(["book_id", "redeemed_wallet_id"], ["wallets.book_id", "wallets.id"], name=op.f("fk_vouchers_book_id_redeemed_wallet_id_wallets")),
        sa.PrimaryKeyConstraint("book_id", "id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("book_id", "code_hash", name=op.f("uq_vouchers_book_id_code_hash")),
    )
    op.execute("grant select, insert on add_on_sales to activebilling_app")
    # A voucher is redeemed once: the update that sets `redeemed_at` is its only change.
    op.execute("grant select, insert, update on vouchers to activebilling_app")
    # Append-only for the application: accruals and reliefs are new rows.
    op.execute("grant select, insert on subscription_rate_plans, usage_accruals to activebilling_app")
    # The invoice that billed a rated CDR (null: not invoiced yet).
    op.add_column("cdrs", sa.Column("invoice_id", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_cdrs_invoice",
        "cdrs",
        ["book_id", "invoice_id"],
        unique=False,
        postgresql_where=sa.text("invoice_id is not null"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_cdrs_invoice", table_name="cdrs", postgresql_where=sa.text("invoice_id is not null")
    )
    op.drop_column("cdrs", "invoice_id")
    op.drop_index(
        op.f("ix_usage_accruals_book_id_subscription_id_price_id_period_start"),
        table_name="usage_accruals",
    )
    op.drop_table("usage_accruals")
    op.drop_table("vouchers")
    op.drop_table("add_on_sales")
    op.drop_table("subscription_rate_plans")
