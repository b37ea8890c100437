"""Balance compaction takes its row locks in one key order, writers' order.

Revision 0001's `ab_compact_balances` locked the day slots it would fold in
key order, then deleted in a second statement (which could meet rows written
since the lock, in no order) and wrote the folded sums into slot 0 in hash
order. Writers whose backend falls on slot 0 upsert those same rows in key
order, so a compaction and such a writer could each hold a row the other
wanted next: a deadlock, seen while four writers back-dated. Now one
statement locks the rows in key order, deletes exactly those rows and
upserts slot 0 in key order too.

Revision ID: 0031
Revises: 0030
Create Date: 2026-11-30 22:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
create or replace function ab_compact_balances(p_book uuid, p_before date) returns bigint
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  n bigint;
begin
  with locked as (
    -- Key order, as writers upsert, so a back-dating writer cannot deadlock with us.
    select book_id, account_id, currency, balance_date, slot
      from account_balances
     where book_id = p_book and balance_date < p_before and slot <> 0
     order by account_id, currency, balance_date, slot
       for update
  ), folded as (
    -- Exactly the locked rows: a row written since is left for the next pass.
    delete from account_balances b
     using locked l
     where b.book_id = l.book_id and b.account_id = l.account_id
       and b.currency = l.currency and b.balance_date = l.balance_date
       and b.slot = l.slot
    returning b.book_id, b.account_id, b.currency, b.balance_date,
              b.amount, b.postings_count
  ), merged as (
    insert into account_balances as b
           (book_id, account_id, currency, balance_date, slot, amount, postings_count)
    select book_id, account_id, currency, balance_date, 0,
           sum(amount), sum(postings_count)
      from folded
     group by book_id, account_id, currency, balance_date
     order by book_id, account_id, currency, balance_date
    on conflict (book_id, account_id, currency, balance_date, slot) do update
       set amount = b.amount + excluded.amount,
           postings_count = b.postings_count + excluded.postings_count
    returning 1
  )
  select count(*) into n from merged;
  return n;
end $$;
"""

DOWNGRADE = r"""
create or replace function ab_compact_balances(p_book uuid, p_before date) returns bigint
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  n bigint;
begin
  perform 1 from account_balances
   where book_id = p_book and balance_date < p_before and slot <> 0
   order by account_id, currency, balance_date, slot
     for update;
  with folded as (
    delete from account_balances
     where book_id = p_book and balance_date < p_before and slot <> 0
    returning book_id, account_id, currency, balance_date, amount, postings_count
  ), summed as (
    select book_id, account_id, currency, balance_date,
           sum(amount) as amount, sum(postings_count) as postings_count
      from folded group by 1, 2, 3, 4
  ), merged as (
    insert into account_balances as b
           (book_id, account_id, currency, balance_date, slot, amount, postings_count)
    select book_id, account_id, currency, balance_date, 0, amount, postings_count from summed
    on conflict (book_id, account_id, currency, balance_date, slot) do update
       set amount = b.amount + excluded.amount,
           postings_count = b.postings_count + excluded.postings_count
    returning 1
  )
  select count(*) into n from merged;
  return n;
end $$;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
