"""Which invoice billed a CDR: an insert-only table, not an update of `cdrs`.

Invoicing set `cdrs.invoice_id` on every CDR it billed: a second write of each
row (never HOT: `ix_cdrs_invoice` indexes the column), with a row lock first.
On 1M CDRs shaped like ours (load ~10): 79 s, 2.5 GB of WAL, the table 271 →
477 MB and 1M dead rows, against 10 s and 0.44 GB to insert the 1M links.
`cdr_invoices` holds (CDR, invoice) once per billed CDR; a voided invoice's
rows are deleted (its CDRs are unbilled again), the only delete. Existing
marks are copied over; downgrade copies them back.

Revision ID: 0048
Revises: 0047
Create Date: 2026-12-01 07:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0048"
down_revision: str | None = "0047"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
create table cdr_invoices (
  book_id uuid not null,
  cdr_id text not null,
  invoice_id uuid not null,
  constraint pk_cdr_invoices primary key (book_id, cdr_id)
);
create index ix_cdr_invoices_book_id_invoice_id on cdr_invoices (book_id, invoice_id);
insert into cdr_invoices (book_id, cdr_id, invoice_id)
  select book_id, id, invoice_id from cdrs where invoice_id is not null;
drop index ix_cdrs_invoice;
alter table cdrs drop column invoice_id;
grant select, insert, delete on cdr_invoices to activebilling_app;
"""
    )


def downgrade() -> None:
    op.execute(
        """
alter table cdrs add column invoice_id uuid;
update cdrs c set invoice_id = l.invoice_id from cdr_invoices l
 where l.book_id = c.book_id and l.cdr_id = c.id;
create index ix_cdrs_invoice on cdrs (book_id, invoice_id) where invoice_id is not null;
drop table cdr_invoices;
"""
    )
