"""The audit log records command-line mutations too: they have no API key, so
`key_id` may be empty when `principal` (e.g. "cli:alice") names who acted.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-01 02:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0040"
down_revision: str | None = "0039"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        alter table audit_log alter column key_id drop not null;
        alter table audit_log add column principal text;
        alter table audit_log add constraint ck_audit_log_who
          check (key_id is not null or principal is not null);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table audit_log drop constraint ck_audit_log_who;
        alter table audit_log drop column principal;
        alter table audit_log alter column key_id set not null;
        """
    )
