"""Billing runs: a lease renewed per batch (a run whose worker died reads as
interrupted and the next run of the same date takes it over), and the
subscriptions a run could not bill, with the reason.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 13:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('billing_runs', sa.Column('heartbeat_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False))
    op.add_column('billing_runs', sa.Column('lease_until', postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now() + interval '5 minutes'"), nullable=False))
    op.add_column('billing_runs', sa.Column('failures', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False))
    # Runs left running by older code never renew a lease: they read as interrupted.
    op.execute("update billing_runs set lease_until = started_at where status = 'running'")


def downgrade() -> None:
    op.drop_column('billing_runs', 'failures')
    op.drop_column('billing_runs', 'lease_until')
    op.drop_column('billing_runs', 'heartbeat_at')
