"""API keys: when each was last used (`keys list`, `GET /v1/api-keys`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'api_keys', sa.Column('last_used_at', postgresql.TIMESTAMP(timezone=True), nullable=True)
    )
    # Authentication stamps it (at most once a minute per key); revoking sets revoked_at.
    op.execute("grant update (last_used_at) on api_keys to activebilling_app")


def downgrade() -> None:
    op.execute("revoke update (last_used_at) on api_keys from activebilling_app")
    op.drop_column('api_keys', 'last_used_at')
