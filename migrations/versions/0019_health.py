"""Healthcare, patient side and reports: the claim's generated interchange (submit,
then GET the 837 as often as needed), payers' contracted amounts, payment plans and
their installments, patient refunds, small-balance write-off runs.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 16:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
alter table claims add column interchange text, add column interchange_control bigint;

create table fee_schedule_allowed (
  book_id uuid not null,
  fee_schedule_id uuid not null,
  payer_id uuid not null,
  code text not null,
  modifiers text not null,
  amount numeric not null,
  constraint pk_fee_schedule_allowed
    primary key (book_id, fee_schedule_id, payer_id, code, modifiers),
  constraint fk_fee_schedule_allowed_book_id_fee_schedule_id_fee_schedules
    foreign key (book_id, fee_schedule_id) references fee_schedules (book_id, id),
  constraint fk_fee_schedule_allowed_book_id_payer_id_payers
    foreign key (book_id, payer_id) references payers (book_id, id),
  constraint ck_fee_schedule_allowed_amount check (amount >= 0)
);

create table payment_plans (
  book_id uuid not null,
  id uuid not null,
  patient_id uuid not null,
  total numeric not null,
  currency text not null,
  installments integer not null,
  start_date date not null,
  interval text not null,
  status text not null default 'active',
  created_at timestamp with time zone not null default now(),
  constraint pk_payment_plans primary key (book_id, id),
  constraint fk_payment_plans_book_id_patient_id_patients
    foreign key (book_id, patient_id) references patients (book_id, id),
  constraint ck_payment_plans_total check (total > 0),
  constraint ck_payment_plans_installments check (installments between 1 and 120),
  constraint ck_payment_plans_interval check (interval in ('weekly', 'biweekly', 'monthly')),
  constraint ck_payment_plans_status check (status in ('active', 'completed', 'cancelled'))
);
create index ix_payment_plans_book_id_patient_id on payment_plans (book_id, patient_id);

create table payment_plan_installments (
  book_id uuid not null,
  plan_id uuid not null,
  seq integer not null,
  due_on date not null,
  amount numeric not null,
  constraint pk_payment_plan_installments primary key (book_id, plan_id, seq),
  constraint fk_payment_plan_installments_book_id_plan_id_payment_plans
    foreign key (book_id, plan_id) references payment_plans (book_id, id),
  constraint ck_payment_plan_installments_amount check (amount > 0)
);

alter table patient_payments add column plan_id uuid,
  add constraint fk_patient_payments_book_id_plan_id_payment_plans
    foreign key (book_id, plan_id) references payment_plans (book_id, id);

create table patient_refunds (
  book_id uuid not null,
  id uuid not null,
  patient_id uuid not null,
  amount numeric not null,
  currency text not null,
  method text not null,
  paid_on date not null,
  entry_id uuid not null,
  created_at timestamp with time zone not null default now(),
  constraint pk_patient_refunds primary key (book_id, id),
  constraint fk_patient_refunds_book_id_patient_id_patients
    foreign key (book_id, patient_id) references patients (book_id, id),
  constraint ck_patient_refunds_amount check (amount > 0)
);

create table small_balance_write_offs (
  book_id uuid not null,
  id uuid not null,
  as_of date not null,
  max_amount numeric not null,
  currency text not null,
  summary jsonb not null,
  created_at timestamp with time zone not null default now(),
  constraint pk_small_balance_write_offs primary key (book_id, id),
  constraint uq_small_balance_write_offs_book_id_as_of_max_amount_currency
    unique (book_id, as_of, max_amount, currency),
  constraint fk_small_balance_write_offs_book_id_books
    foreign key (book_id) references books (id),
  constraint ck_small_balance_write_offs_max_amount check (max_amount > 0)
);

grant select, insert, update on payment_plans to activebilling_app;
grant select, insert, delete on fee_schedule_allowed to activebilling_app;
grant select, insert, update on small_balance_write_offs to activebilling_app;
grant select, insert on payment_plan_installments, patient_refunds to activebilling_app;
"""

DOWNGRADE = """
drop table small_balance_write_offs;
drop table patient_refunds;
alter table patient_payments drop column plan_id;
drop table payment_plan_installments;
drop table payment_plans;
drop table fee_schedule_allowed;
alter table claims drop column interchange, drop column interchange_control;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
