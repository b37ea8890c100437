"""Seals record the format of their hash; the sealer writes format 2.

Format 1 (every seal so far) is `sha256(previous hash || sha256(canonical
entry))`; format 2 is `sha256(previous hash || canonical entry)`, one digest per
entry instead of two (ledger/sealing.py). Existing seals keep format 1 (the
column's default: no table rewrite) and verify checks each seal by its own
format, so a book's chain crosses from format 1 to format 2 where the new
sealer takes over.

Revision ID: 0052
Revises: 0051
Create Date: 2026-12-01 10:55:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0052"
down_revision: str | None = "0051"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("alter table seals add column format smallint not null default 1")


def downgrade() -> None:
    # Format-2 seals cannot be checked without the column: refuse rather than
    # leave a chain no verify can read.
    op.execute(
        "do $$ begin if exists (select 1 from seals where format <> 1) then"
        " raise exception 'seals of format 2 exist: they need the format column';"
        " end if; end $$"
    )
    op.execute("alter table seals drop column format")
