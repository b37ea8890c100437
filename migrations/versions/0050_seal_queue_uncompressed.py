"""The seal queue's entry ids stored out of line, uncompressed.

A statement's queue row holds its entries' ids (16 bytes each): a 1,000-entry
batch writes a 16 kB uuid[] that TOAST tried to compress with pglz every time,
and random ids do not compress (1.5% of a batch's backend CPU in perf, ~0.7 ms
per 1,000 entries). STORAGE EXTERNAL moves it out of line without trying; the
sealer reads it back without decompressing.

Revision ID: 0050
Revises: 0049
Create Date: 2026-12-01 09:55:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0050"
down_revision: str | None = "0049"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("alter table seal_queue alter column entry_ids set storage external")


def downgrade() -> None:
    op.execute("alter table seal_queue alter column entry_ids set storage extended")
