"""Events (the transactional outbox) and webhook endpoints, deliveries and attempts.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 14:00:00.000000
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Hand-written SQL: tables, the fan-out trigger, grants (read it beside this file).
    op.execute(Path(__file__).with_name("0012_events_and_webhooks.sql").read_text())


def downgrade() -> None:
    op.execute(
        """
        drop trigger if exists events_fan_out on events;
        drop function if exists ab_events_fan_out();
        drop table webhook_attempts;
        drop table webhook_deliveries;
        drop table webhook_endpoints;
        drop table events;
        """
    )
