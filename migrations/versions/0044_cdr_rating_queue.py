"""Unrated CDRs wait in a queue of their own: a rating run reads the queue, not the history.

A run found its CDRs by an anti-join of the book's `cdrs` against `cdr_ratings`, so
a run that found nothing still read every CDR the book ever imported. Now every CDR
inserted into `cdrs` is also put in `cdr_rating_queue` (a statement trigger on
`cdrs`, so no insert path can forget it) with what rating reads; a run takes the
queued CDRs that started before its cut-off out of the queue (DELETE ... RETURNING,
so a CDR imported while the run works waits for the next run) and puts back the few
it could not rate. A CDR imported late (an older start, after its month was rated)
is queued like any other. The CDRs that are unrated now are queued here.

Revision ID: 0044
Revises: 0043
Create Date: 2026-12-01 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0044"
down_revision: str | None = "0043"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "book_id, id, subscriber, event_type, start, quantity, destination, roaming"

QUEUED = f"""
create or replace function ab_cdrs_queued() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
begin
  insert into cdr_rating_queue ({COLUMNS.replace(" id,", " cdr_id,")})
  select {COLUMNS} from new_cdrs;
  return null;
end $$;
"""


def upgrade() -> None:
    op.create_table(
        "cdr_rating_queue",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        # Byte order ("C"): a run sorts its CDRs by subscriber, start and id as Python
        # compares them, with no locale.
        sa.Column("cdr_id", sa.Text(collation="C"), nullable=False),
        sa.Column("subscriber", sa.Text(collation="C"), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("start", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("roaming", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("book_id", "cdr_id", name=op.f("pk_cdr_rating_queue")),
    )
    op.execute(QUEUED)
    op.execute(
        "create trigger ab_cdrs_queued after insert on cdrs"
        " referencing new table as new_cdrs for each statement execute function ab_cdrs_queued()"
    )
    op.execute(
        f"insert into cdr_rating_queue ({COLUMNS.replace(' id,', ' cdr_id,')})"
        f" select {', '.join('c.' + c.strip() for c in COLUMNS.split(','))} from cdrs c"
        " where not exists (select from cdr_ratings r"
        " where r.book_id = c.book_id and r.cdr_id = c.id)"
    )
    # The run takes CDRs out of the queue and puts back those it could not rate.
    op.execute("grant select, insert, delete on cdr_rating_queue to activebilling_app")


def downgrade() -> None:
    op.execute("drop trigger ab_cdrs_queued on cdrs")
    op.execute("drop function ab_cdrs_queued()")
    op.drop_table("cdr_rating_queue")
