"""The postings trigger asks "is anything refused?" and only then "which, and why".

Backend CPU of a one-book post goes mostly to starting the executor for the
triggers' plans, node by node. ab_postings_inserted's facts query found the first
refused entry with a sort and a limit over an outer join, and its account check
the first refused account with a window (whether an account has a minimum), a
sort and a limit: nodes started on every statement to answer, nearly always, that
nothing is refused. Now the facts query asks with an EXISTS, and the account check
with two bool_or aggregates; the queries that say which entry or account and why
(the same as before: the several-currency per-entry query, the account query)
run only when something is refused, so errors keep their order, SQLSTATE,
constraint name and message. Still four trigger queries for a one-book entry.

Revision ID: 0053
Revises: 0052
Create Date: 2026-12-01 13:30:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0053"
down_revision: str | None = "0052"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTINGS_INSERTED = """
create or replace function ab_postings_inserted() returns trigger language plpgsql
security definer set search_path = public, pg_temp
set plan_cache_mode = force_generic_plan as $$
declare
  bad record;
  facts record;
  unbalanced record;
  book uuid;
  own_txid bigint := (pg_current_xact_id())::text::bigint;
  own_cmin text;
  many_books boolean;
  billing_document boolean;
  bad_amount numeric;
  off_by text;
  guarded boolean;
begin
  -- One read for the statement's facts: its (first) book, whether it has
  -- postings of another book or in another currency, the command id that wrote
  -- them (see below), and whether one names a billing document outside the
  -- billing services; and whether the per-entry check below refuses an entry
  -- (asked in full only then).
  select n.book_id as first_book,
         exists (select 1 from new_postings m where m.book_id <> n.book_id) as many_books,
         exists (select 1 from new_postings m where m.currency <> n.currency) as many_currencies,
         p.cmin::text as own_cmin,
         coalesce(current_setting('activebilling.writer', true), '') <> 'billing'
           and exists (select 1 from new_postings m where m.document ~ '^(invoice|payment|credit_note|refund|contract|encounter|claim|remittance|patient_payment):')
           as billing_document,
         -- whether an entry is refused (the per-entry check below): which one, and
         -- why, only then (an exists, not a sort of the entries)
         exists (
           select 1
            from (select book_id, entry_id, count(*) as n, min(effective_date) as first_day,
                         max(effective_date) as last_day, sum(amount) <> 0 as off
                    from new_postings
                   group by book_id, entry_id) s
            left join lateral (
              select e.id, e.txid, e.cmin, e.effective_date from journal_entries e
               where e.book_id = s.book_id and e.id = s.entry_id
               limit 1) e on true
           where e.id is null
              or e.txid <> own_txid
              or e.cmin::text is distinct from p.cmin::text
              or s.first_day <> e.effective_date
              or s.last_day <> e.effective_date
              or s.n < 2
              or s.off) as refused,
         null::uuid as entry_id, null::boolean as broken
    into facts
    from (select book_id, entry_id, line_no, currency from new_postings limit 1) n
    cross join lateral (
      select p.cmin from postings p
       where p.book_id = n.book_id and p.entry_id = n.entry_id and p.line_no = n.line_no
       limit 1) p;
  book := facts.first_book;
  many_books := facts.many_books;
  own_cmin := facts.own_cmin;
  billing_document := facts.billing_document;
  -- Billing documents are named only by the billing services' transactions.
  if billing_document then
    select entry_id, line_no, document into bad
      from new_postings
     where document ~ '^(invoice|payment|credit_note|refund|contract|encounter|claim|remittance|patient_payment):'
     limit 1;
    raise exception 'posting % of entry % names %, a billing document: such postings are written only by the billing services',
      bad.line_no, bad.entry_id, bad.document
      using errcode = 'check_violation', constraint = 'postings_billing_document';
  end if;
  -- Writers hold the per-book lock shared; closing a period or an account
  -- takes it exclusively, so neither can slip past an entry being written.
  if many_books then
    for book in select distinct n.book_id from new_postings n order by 1 loop
      perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
    end loop;
  elsif pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0)) is null then
    null;  -- (an expression, not PERFORM: PL/pgSQL evaluates it without starting a query)
  end if;

  -- Postings join an entry only in the statement that inserts it (cmin is
  -- the command that wrote a row), so the balance check below sees the whole
  -- entry. All rows of new_postings were written by this one statement: a
  -- transition table holds what one query's inserts wrote, and a query writes
  -- every row with the one command id it took when it started (a function it
  -- calls that inserts postings runs a query of its own, with its own
  -- transition table and trigger call). Postings are never updated or
  -- deleted, so a row's cmin stays the command that inserted it. Hence one
  -- row's cmin is every row's, and each posting's entry must carry it.

  -- Per entry: what the foreign key would check, that the entry is this
  -- statement's, the postings' dates, and (invariant 1) two or more postings
  -- summing to zero per currency. Broken entries sort first: those rules
  -- are reported before the account rules, the balance after them.
  -- Key lookups are written as LATERAL ... LIMIT 1, which the planner cannot
  -- turn into a hash join: a plan cached while the tables were small would
  -- otherwise scan a whole table in every later statement.
  if facts.many_currencies or facts.refused then
    -- Several currencies: the balance is checked per currency (in one, this is
    -- the per-entry check `refused` asked about, in full).
    with s as materialized (
      select book_id, entry_id, count(*) as n, min(effective_date) as first_day,
             max(effective_date) as last_day,
             -- one currency (nearly every entry): its sum; several: per currency, below
             min(currency) = max(currency) and sum(amount) <> 0 as off,
             min(currency) <> max(currency) as mixed
        from new_postings
       group by book_id, entry_id
    ), mixed_off as (
      select p.book_id, p.entry_id
        from new_postings p
        join s on s.book_id = p.book_id and s.entry_id = p.entry_id and s.mixed
       group by p.book_id, p.entry_id, p.currency
      having sum(p.amount) <> 0
    )
    select s.book_id, s.entry_id, s.n, s.first_day, s.last_day,
           e.id is null as no_entry,
           e.txid <> own_txid as not_own,
           e.cmin::text is distinct from own_cmin as other_statement,
           e.effective_date as entry_date,
           (e.id is null or e.txid <> own_txid
            or e.cmin::text is distinct from own_cmin  -- were it null, all refused
            or s.first_day <> e.effective_date or s.last_day <> e.effective_date) as broken
      into bad
      from s
      left join lateral (
        select e.id, e.txid, e.cmin, e.effective_date from journal_entries e
         where e.book_id = s.book_id and e.id = s.entry_id
         limit 1) e on true
     where e.id is null
        or e.txid <> own_txid
        or e.cmin::text is distinct from own_cmin
        or s.first_day <> e.effective_date
        or s.last_day <> e.effective_date
        or s.n < 2
        or s.off
        or (s.mixed and (s.book_id, s.entry_id) in (select book_id, entry_id from mixed_off))
     order by broken desc
     limit 1;
  else
    bad := facts;  -- no entry refused: its per-entry fields are null
  end if;
  if bad.broken then
    if bad.no_entry then
      raise exception 'posting names journal entry % which does not exist', bad.entry_id
        using errcode = 'foreign_key_violation',
              constraint = 'fk_postings_book_id_entry_id_journal_entries';
    elsif bad.not_own then
      raise exception
        'journal entry % was committed by an earlier transaction; postings cannot be added to it',
        bad.entry_id
        using errcode = 'check_violation', constraint = 'postings_open_entry';
    elsif bad.other_statement then
      raise exception
        'postings of journal entry % must be inserted by the statement that inserts the entry',
        bad.entry_id
        using errcode = 'check_violation', constraint = 'postings_open_entry';
    else
      raise exception 'posting date % differs from its entry''s date %',
        case when bad.first_day <> bad.entry_date then bad.first_day else bad.last_day end,
        bad.entry_date
        using errcode = 'check_violation', constraint = 'postings_entry_date';
    end if;
  end if;
  unbalanced := bad;  -- its entry is refused once the account rules have had their say

  -- Per account and currency of the statement: what the foreign keys would
  -- check (account, currency), and the account's and currency's rules; whether
  -- one of its accounts has a minimum (invariant 6, below); and in the same
  -- statement the daily balances (the slot spreads concurrent writers of one hot
  -- account). A refused statement's balance rows go with it.
  with balances as (
    insert into account_balances as b
           (book_id, account_id, currency, balance_date, slot, amount, postings_count)
    select book_id, account_id, currency, effective_date, pg_backend_pid() % 16,
           sum(amount), count(*)
      from new_postings
     group by book_id, account_id, currency, effective_date
     order by book_id, account_id, currency, effective_date
    on conflict (book_id, account_id, currency, balance_date, slot) do update
       set amount = b.amount + excluded.amount,
           postings_count = b.postings_count + excluded.postings_count
  )
  select bool_or(a.id is null
           or a.closed_at is not null
           or (cardinality(a.currencies) > 0 and not g.currency = any (a.currencies))
           or c.code is null
           or g.places > c.minor_unit) as broken,
         bool_or(a.min_balance is not null) as guarded
    into bad
    from (select book_id, account_id, currency, max(min_scale(amount)) as places
            from new_postings
           group by book_id, account_id, currency) g
    left join lateral (
      select a.id, a.name, a.closed_at, a.currencies, a.min_balance from accounts a
       where a.book_id = g.book_id and a.id = g.account_id
       limit 1) a on true
    left join currencies c on c.code = g.currency;
  guarded := coalesce(bad.guarded, false);
  if bad.broken then
    -- Which account, and why: the first refused one in key order.
    select g.book_id, g.account_id, g.currency, g.places,
           a.id is null as no_account, a.name as account_name,
           a.closed_at is not null as closed,
           c.code is null as no_currency, c.minor_unit,
           (a.id is null
            or a.closed_at is not null
            or (cardinality(a.currencies) > 0 and not g.currency = any (a.currencies))
            or c.code is null
            or g.places > c.minor_unit) as broken
      into bad
      from (select book_id, account_id, currency, max(min_scale(amount)) as places
              from new_postings
             group by book_id, account_id, currency) g
      left join lateral (
        select a.id, a.name, a.closed_at, a.currencies, a.min_balance from accounts a
         where a.book_id = g.book_id and a.id = g.account_id
         limit 1) a on true
      left join currencies c on c.code = g.currency
     -- a refused account first (the first in key order, as the scan found it before)
     order by broken desc nulls last, g.book_id, g.account_id, g.currency
     limit 1;
    if not coalesce(bad.broken, false) then  -- changed since (a currency's minor unit)
      raise exception 'an account or currency of the statement changed while it was checked'
        using errcode = 'serialization_failure';
    end if;
    if bad.no_account then
      raise exception 'posting names an account that does not exist in this book'
        using errcode = 'foreign_key_violation',
              constraint = 'fk_postings_book_id_account_id_accounts';
    elsif bad.no_currency then
      raise exception 'unknown currency %', bad.currency
        using errcode = 'foreign_key_violation', constraint = 'fk_postings_currency_currencies';
    elsif bad.closed then
      raise exception 'account % is closed', bad.account_name
        using errcode = 'check_violation', constraint = 'postings_open_account';
    elsif bad.places > bad.minor_unit then
      select n.amount into bad_amount
        from new_postings n
       where n.book_id = bad.book_id and n.account_id = bad.account_id
         and n.currency = bad.currency and min_scale(n.amount) > bad.minor_unit
       limit 1;
      raise exception 'amount % has more decimals than % allows (%)',
        bad_amount, bad.currency, bad.minor_unit
        using errcode = 'check_violation', constraint = 'postings_minor_unit';
    else
      raise exception 'account % does not allow currency %', bad.account_name, bad.currency
        using errcode = 'check_violation', constraint = 'postings_account_currency';
    end if;
  end if;


  -- Invariant 1, final here at the end of the statement that inserts the
  -- entry: the statement wrote all of its postings, so no per-row deferred
  -- trigger and no second read of the postings at commit.
  if unbalanced.entry_id is not null then
    if unbalanced.n < 2 then
      raise exception 'journal entry % has % posting(s); an entry needs at least two',
        unbalanced.entry_id, unbalanced.n
        using errcode = 'check_violation', constraint = 'journal_entries_balanced';
    end if;
    select string_agg(t.currency || ' ' || t.total::text, ', ' order by t.currency) into off_by
      from (select n.currency, sum(n.amount) as total
              from new_postings n
             where n.book_id = unbalanced.book_id and n.entry_id = unbalanced.entry_id
             group by n.currency
            having sum(n.amount) <> 0) t;
    raise exception 'journal entry % does not balance: off by %', unbalanced.entry_id, off_by
      using errcode = 'check_violation', constraint = 'journal_entries_balanced';
  end if;

  -- Invariant 6: accounts with a minimum keep one running balance, updated
  -- under its row lock, so concurrent debits are checked one after another.
  if not guarded then
    return null;  -- no account of the statement has one
  end if;
  with moved as (
    select g.book_id, g.account_id, g.currency, g.amount
      from (select book_id, account_id, currency, sum(amount) as amount
              from new_postings
             group by book_id, account_id, currency) g
     cross join lateral (
       select a.min_balance from accounts a
        where a.book_id = g.book_id and a.id = g.account_id
        limit 1) a
     where a.min_balance is not null
     order by g.book_id, g.account_id, g.currency
  ), updated as (
    insert into guarded_balances as g (book_id, account_id, currency, balance)
    select book_id, account_id, currency, amount from moved
    on conflict (book_id, account_id, currency) do update
       set balance = g.balance + excluded.balance
    returning g.book_id, g.account_id, g.currency, g.balance
  )
  select a.name, u.currency, u.balance, a.min_balance into bad
    from updated u
   cross join lateral (
     select a.name, a.type, a.min_balance from accounts a
      where a.book_id = u.book_id and a.id = u.account_id
      limit 1) a
   where u.balance * (case when a.type in ('asset', 'expense') then 1 else -1 end) < a.min_balance
   limit 1;
  if found then
    raise exception 'account % would go below its minimum balance % % (balance would be %)',
      bad.name, bad.min_balance, bad.currency, bad.balance
      using errcode = 'check_violation', constraint = 'postings_min_balance';
  end if;
  return null;
end $$;
"""


def _revision(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute(POSTINGS_INSERTED)


def downgrade() -> None:
    op.execute(_revision("0051_one_book_triggers.py").POSTINGS_INSERTED)
