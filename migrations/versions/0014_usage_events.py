"""Usage: events (idempotent by their id per book), meters, and what each billing
period's usage was billed for (so late events bill only the difference).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("prices", sa.Column("free_units", sa.Numeric(), nullable=True))
    op.add_column("prices", sa.Column("minimum_amount", sa.Numeric(), nullable=True))
    op.create_table(
        "usage_events",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("occurred_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("properties", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("received_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_usage_events_quantity")),
        sa.PrimaryKeyConstraint("book_id", "id", name=op.f("pk_usage_events")),
    )
    op.create_index(op.f("ix_usage_events_book_id_customer_id_metric_occurred_at"), "usage_events", ["book_id", "customer_id", "metric", "occurred_at"], unique=False)
    op.create_table(
        "meters",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("aggregation", sa.Text(), nullable=False),
        sa.Column("property", sa.Text(), nullable=True),
        sa.Column("filters", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("group_by", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("aggregation in ('sum', 'count', 'max', 'unique_count', 'last')", name=op.f("ck_meters_aggregation")),
        sa.CheckConstraint("aggregation <> 'unique_count' or property is not null", name=op.f("ck_meters_unique_count_property")),
        sa.ForeignKeyConstraint(["book_id"], ["books.id"], name=op.f("fk_meters_book_id_books")),
        sa.PrimaryKeyConstraint("book_id", "id", name=op.f("pk_meters")),
        sa.UniqueConstraint("book_id", "metric", name=op.f("uq_meters_book_id_metric")),
    )
    op.create_table(
        "usage_billings",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("price_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("group_key", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("billed_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False),
        sa.ForeignKeyConstraint(["book_id", "subscription_id"], ["subscriptions.book_id", "subscriptions.id"], name=op.f("fk_usage_billings_book_id_subscription_id_subscriptions")),
        sa.ForeignKeyConstraint(["book_id", "price_id"], ["prices.book_id", "prices.id"], name=op.f("fk_usage_billings_book_id_price_id_prices")),
        sa.PrimaryKeyConstraint("book_id", "id", name=op.f("pk_usage_billings")),
    )
    op.create_index(op.f("ix_usage_billings_book_id_subscription_id_price_id_period_start"), "usage_billings", ["book_id", "subscription_id", "price_id", "period_start"], unique=False)
    # Events and meters are never updated (an event is corrected by a new one); usage
    # billings are the record of what an invoice billed.
    op.execute("grant select, insert on usage_events, meters, usage_billings to activebilling_app")


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_billings_book_id_subscription_id_price_id_period_start"), table_name="usage_billings")
    op.drop_table("usage_billings")
    op.drop_table("meters")
    op.drop_index(op.f("ix_usage_events_book_id_customer_id_metric_occurred_at"), table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_column("prices", "minimum_amount")
    op.drop_column("prices", "free_units")
