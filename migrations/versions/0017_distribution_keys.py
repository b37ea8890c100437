"""Every unique key carries book_id, so the schema distributes by book (Citus).

`events.sequence` was unique across the whole database: a distributed table
cannot enforce a uniqueness that does not include its distribution column.
The identity still numbers events in order; uniqueness is now per book, which
is what readers use (`GET /v1/events` pages one book by sequence).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 17:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        alter table events drop constraint uq_events_sequence;
        drop index ix_events_book_id_sequence;
        alter table events add constraint uq_events_book_id_sequence unique (book_id, sequence);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table events drop constraint uq_events_book_id_sequence;
        create index ix_events_book_id_sequence on events (book_id, sequence);
        alter table events add constraint uq_events_sequence unique (sequence);
        """
    )
