"""Customers by external id: the external id leads its unique index, so a lookup
of a customer by (book_id, id) can only use the primary key.

A posting names its customer as text, and the Beancount export and the journal
feed join each posting row to `customers` by (book_id, id). Planned before
`customers` had statistics, that join took `uq_customers_book_id_external_id`
with only book_id as the index condition and the id as a filter: every posting
row read every customer of the book. In a 10-minute soak (1,600 customers) a
whole-book Beancount export took 19 s until autovacuum analyzed the table, then
4 s; 20,000 entries and 1,600 never-analyzed customers: 29 s, with this index
1.8 s. Revision 0009 did the same for the tables a posting reads by key.
ON CONFLICT (book_id, external_id) infers the index by its set of columns.

Revision ID: 0033
Revises: 0032
Create Date: 2026-11-30 23:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        alter table customers drop constraint uq_customers_book_id_external_id;
        alter table customers add constraint uq_customers_external_id_book_id
          unique (external_id, book_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table customers drop constraint uq_customers_external_id_book_id;
        alter table customers add constraint uq_customers_book_id_external_id
          unique (book_id, external_id);
        """
    )
