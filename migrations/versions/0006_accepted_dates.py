"""Dates a book accepts: journal entries outside the book's window are refused.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 13:20:00
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(Path(__file__).with_name("0006_accepted_dates.sql").read_text())


def downgrade() -> None:
    op.execute("drop trigger if exists journal_entries_accepted_dates on journal_entries")
    for function in (
        "ab_entries_accepted_dates()",
        "ab_accepted_window(date, jsonb)",
        "ab_accepted_years(jsonb, integer)",
    ):
        op.execute(f"drop function if exists {function}")
