"""Payouts are keyed by their id only: Stripe may pay out twice on one day in one
currency (an instant payout beside the automatic one), and the second `payout.paid`
hit the (book, gateway, currency, arrival date) unique key and failed every retry.
The fake gateway's one payout per day and currency is now its payout id.

Revision ID: 0027
Revises: 0026
Create Date: 2026-11-30 19:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(
        "uq_payouts_book_id_gateway_currency_arrival_date", "payouts", type_="unique"
    )
    op.create_index(
        op.f("ix_payouts_book_id_gateway_arrival_date"),
        "payouts",
        ["book_id", "gateway", "arrival_date"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payouts_book_id_gateway_arrival_date"), table_name="payouts")
    op.create_unique_constraint(
        "uq_payouts_book_id_gateway_currency_arrival_date",
        "payouts",
        ["book_id", "gateway", "currency", "arrival_date"],
    )
