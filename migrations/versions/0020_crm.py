"""CRM sync: connections and mappings, record links, deals, outbound deliveries, sync log.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 16:40:00.000000
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Hand-written SQL: tables, the outbound fan-out trigger, grants.
    op.execute(Path(__file__).with_name("0020_crm.sql").read_text())


def downgrade() -> None:
    op.execute(
        """
        drop trigger if exists events_crm_fan_out on events;
        drop function if exists ab_events_crm_fan_out();
        drop table crm_sync_log;
        drop table crm_deliveries;
        drop table crm_deals;
        drop table crm_links;
        drop table crm_connections;
        """
    )
