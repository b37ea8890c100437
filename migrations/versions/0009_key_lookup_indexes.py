"""Key lookups that no cached plan can turn into book-wide scans; billing documents
are written only by the billing services.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 13:15:00.000000
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0009"
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Hand-written SQL: indexes, and the postings trigger (read it beside this file).
    op.execute(Path(__file__).with_name("0009_key_lookup_indexes.sql").read_text())


def downgrade() -> None:
    op.execute("drop trigger if exists postings_billing_documents on postings")
    op.execute("drop function if exists ab_postings_billing_documents()")
    op.execute(
        """
        drop index uq_journal_entries_book_id_reverses_entry_id;
        alter table journal_entries add constraint uq_journal_entries_book_id_reverses_entry_id
          unique (book_id, reverses_entry_id);
        alter table journal_entries drop constraint uq_journal_entries_idempotency_key_book_id;
        alter table journal_entries add constraint uq_journal_entries_book_id_idempotency_key
          unique (book_id, idempotency_key);
        drop index ix_journal_entries_book_id_recorded_at;
        create index ix_journal_entries_book_id_recorded_at on journal_entries (book_id, recorded_at);
        drop index ix_postings_account_id_book_id_effective_date;
        create index ix_postings_book_id_account_id_effective_date
          on postings (book_id, account_id, effective_date);
        drop index uq_accounts_book_id_code;
        alter table accounts add constraint uq_accounts_book_id_code unique (book_id, code);
        alter table accounts drop constraint uq_accounts_name_book_id;
        alter table accounts add constraint uq_accounts_book_id_name unique (book_id, name);
        drop index uq_invoices_book_id_number;
        alter table invoices add constraint uq_invoices_book_id_number unique (book_id, number);
        alter table invoices
          drop constraint uq_invoices_subscription_id_subscription_period_start_book_id;
        alter table invoices
          add constraint uq_invoices_book_id_subscription_id_subscription_period_start
          unique (book_id, subscription_id, subscription_period_start);
        drop index ix_invoices_customer_id_book_id_due_date;
        create index ix_invoices_book_id_customer_id_due_date
          on invoices (book_id, customer_id, due_date);
        drop index ix_invoices_status_book_id;
        create index ix_invoices_book_id_status on invoices (book_id, status);
        drop index ix_statement_matches_account_id_book_id_created_at;
        create index ix_statement_matches_book_id_account_id_created_at
          on statement_matches (book_id, account_id, created_at);
        drop index ix_bank_statement_lines_account_id_book_id_booking_date;
        create index ix_bank_statement_lines_book_id_account_id_booking_date
          on bank_statement_lines (book_id, account_id, booking_date);
        """
    )
