"""The Stripe gateway: a payment names the gateway charge it records, unique per
book, so a charge's synchronous answer and its webhook (or two deliveries of
one webhook) can never post two payments.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-30 16:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("alter table payments add column gateway_charge text")
    op.execute(
        "alter table payments add constraint uq_payments_book_id_gateway_charge"
        " unique (book_id, gateway_charge)"
    )
    # Charges already collected through a gateway name their charge in reference.
    op.execute(
        "update payments set gateway_charge = reference"
        " where method in ('fake', 'stripe') and metadata ? 'charge'"
    )


def downgrade() -> None:
    op.execute("alter table payments drop constraint uq_payments_book_id_gateway_charge")
    op.execute("alter table payments drop column gateway_charge")
