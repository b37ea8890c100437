"""Prepaid value with a validity: a wallet's `valid_until`, extended by top-ups.

A top-up may carry `valid_days` (a telecom recharge "valid 30 days"); the wallet's
value can be used through `valid_until` and lapses to Income:Breakage after it
(ACCOUNTING.md: "wallet expiry (breakage)"). Null: the value never lapses.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-01 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0038"
down_revision: str | None = "0037"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("wallets", sa.Column("valid_until", sa.Date(), nullable=True))
    # The sweep looks for lapsed wallets only: a small partial index, not a scan.
    op.create_index(
        "ix_wallets_valid_until_book_id",
        "wallets",
        ["valid_until", "book_id"],
        postgresql_where=sa.text("valid_until is not null"),
    )


def downgrade() -> None:
    op.drop_index("ix_wallets_valid_until_book_id", table_name="wallets")
    op.drop_column("wallets", "valid_until")
