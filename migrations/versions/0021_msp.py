"""Services (MSP): people with cost rates, expenses (receipt metadata, markup,
approval), percent-complete progress of fixed-fee contracts.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 16:40:00.000000
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("people", "expenses", "contract_progress")


def upgrade() -> None:
    op.execute(Path(__file__).with_name("0021_msp.sql").read_text())
    op.execute(f"grant select, insert, update on {', '.join(TABLES)} to activebilling_app")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"drop table {table}")
