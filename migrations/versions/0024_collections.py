"""Direct-debit collection runs (SEPA pain.008, NACHA ACH): runs with their file,
one transaction per invoice (at most one unsettled per invoice), and the ACH
account numbers the NACHA file needs.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-30 16:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
create table collection_runs (
    book_id uuid not null,
    id uuid not null,
    scheme text not null,
    file_format text not null,
    as_of date not null,
    created_on date not null,
    collection_date date not null,
    currency text not null,
    message_id text not null,
    total numeric not null,
    transaction_count integer not null,
    file bytea not null,
    status text default 'submitted' not null,
    settlement_entry_id uuid,
    created_at timestamp with time zone default now() not null,
    constraint pk_collection_runs primary key (book_id, id),
    constraint uq_collection_runs_book_id_message_id unique (book_id, message_id),
    constraint ck_collection_runs_scheme check (scheme in ('sepa', 'ach')),
    constraint ck_collection_runs_status check (status in ('submitted', 'settled')),
    constraint ck_collection_runs_not_empty check (total > 0 and transaction_count > 0)
);

create table collection_transactions (
    book_id uuid not null,
    id uuid not null,
    run_id uuid not null,
    invoice_id uuid not null,
    customer_id uuid not null,
    payment_method_id uuid not null,
    payment_id uuid not null,
    amount numeric not null,
    currency text not null,
    reference text not null,
    sequence text,
    sec_code text,
    status text default 'pending' not null,
    settled_on date,
    returned_on date,
    return_code text,
    return_reason text,
    return_entry_id uuid,
    fee_invoice_id uuid,
    created_at timestamp with time zone default now() not null,
    constraint pk_collection_transactions primary key (book_id, id),
    constraint fk_collection_transactions_book_id_run_id_collection_runs
        foreign key (book_id, run_id) references collection_runs (book_id, id),
    constraint fk_collection_transactions_book_id_invoice_id_invoices
        foreign key (book_id, invoice_id) references invoices (book_id, id),
    constraint fk_collection_transactions_book_id_payment_method_id_payment_methods
        foreign key (book_id, payment_method_id) references payment_methods (book_id, id),
    constraint fk_collection_transactions_book_id_payment_id_payments
        foreign key (book_id, payment_id) references payments (book_id, id),
    constraint uq_collection_transactions_book_id_reference unique (book_id, reference),
    constraint ck_collection_transactions_status
        check (status in ('pending', 'settled', 'returned')),
    constraint ck_collection_transactions_positive check (amount > 0)
);
create index ix_collection_transactions_book_id_run_id
    on collection_transactions (book_id, run_id);
-- An invoice is in at most one unsettled collection (23505 names this index).
create unique index uq_collection_transactions_unsettled
    on collection_transactions (book_id, invoice_id) where status = 'pending';

create table ach_account_numbers (
    book_id uuid not null,
    payment_method_id uuid not null,
    account_number text not null,
    constraint pk_ach_account_numbers primary key (book_id, payment_method_id),
    constraint fk_ach_account_numbers_book_id_payment_method_id_payment_methods
        foreign key (book_id, payment_method_id) references payment_methods (book_id, id)
);

grant select, insert, update on collection_runs, collection_transactions to activebilling_app;
grant select, insert on ach_account_numbers to activebilling_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(
        "drop table ach_account_numbers; drop table collection_transactions;"
        " drop table collection_runs;"
    )
