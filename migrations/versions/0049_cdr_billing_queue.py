"""Rated CDRs not yet invoiced wait in a queue: invoicing reads the queue, not the history.

Invoicing found a subscriber's unbilled CDRs by reading every CDR the subscriber ever
had (billed ones included) and anti-joining `cdr_invoices`, so an invoice cost more
every month. Now a rating run queues the postpaid CDRs it rated (subscriber without a
wallet: prepaid CDRs are never invoiced) in `cdr_billing_queue`; invoicing links a
CDR to its invoice and takes it out of the queue in one statement; a void deletes its
links and queues their CDRs again. The rated, unlinked postpaid CDRs are queued here.

Revision ID: 0049
Revises: 0048
Create Date: 2026-12-01 07:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0049"
down_revision: str | None = "0048"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
create table cdr_billing_queue (
  book_id uuid not null,
  cdr_id text not null,
  subscriber text not null,
  start timestamptz not null,
  constraint pk_cdr_billing_queue primary key (book_id, cdr_id)
);
create index ix_cdr_billing_queue_book_id_subscriber_start
  on cdr_billing_queue (book_id, subscriber, start);
insert into cdr_billing_queue (book_id, cdr_id, subscriber, start)
  select c.book_id, c.id, c.subscriber, c.start from cdrs c
    join cdr_ratings r on r.book_id = c.book_id and r.cdr_id = c.id
    join telecom_subscribers s on s.book_id = c.book_id and s.subscriber = c.subscriber
   where s.wallet_id is null
     and not exists (select from cdr_invoices b where b.book_id = c.book_id and b.cdr_id = c.id);
grant select, insert, delete on cdr_billing_queue to activebilling_app;
"""
    )


def downgrade() -> None:
    op.execute("drop table cdr_billing_queue")
