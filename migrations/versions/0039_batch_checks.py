"""The posting triggers do less per batch: one grouping of the postings, one lock.

Measured on one 1,000-entry batch (2,500 postings) of `benchmarks.post_batch`
with auto_explain, pg_stat_user_functions and the backend's CPU time: the
insert itself (entries, postings and their indexes) is ~30 ms of ~42 ms of
server CPU, the triggers the rest. Of the postings trigger, the per-entry
balance check grouped the postings twice (per entry and currency, then per
entry: two hash aggregates over every posting), and taking the per-book lock
hashed every posting for its distinct books.

- The balance check groups the postings once, per entry: an entry in one
  currency (nearly all) balances when its sum is zero; only the postings of
  entries in several currencies are grouped per currency (none in a usual
  batch: the join with no such entry is empty).
- The per-book lock reads one row's book and scans for another (no hashing;
  no row, as when every entry of a batch was a replay: a null key, no lock);
  only a statement that spans books collects them (now in order, so two such
  statements take their locks in one order).
  `ab_entries_inserted` takes its lock the same way.

What each trigger refuses, with which message, SQLSTATE and constraint name,
and in which order, is unchanged (tests/integration/test_invariants.py,
test_posting_checks.py, test_post_batch.py). Server CPU of a batch
(/proc/<backend>/schedstat, one session, the two versions alternating on the
same database): median 50.0 → 43.4 ms.

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-01 03:00:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0039"
down_revision: str | None = "0038"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTINGS_INSERTED = r"""
create or replace function ab_postings_inserted() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  bad record;
  unbalanced record;
  book uuid;
  own_txid bigint := (pg_current_xact_id())::text::bigint;
  own_cmin text;
  bad_amount numeric;
  off_by text;
begin
  -- Writers hold the per-book lock shared; closing a period or an account
  -- takes it exclusively, so neither can slip past an entry being written.
  -- A statement's postings are almost always of one book: one row read for
  -- it, and a plain scan (no hashing) that finds no other.
  select n.book_id into book from new_postings n limit 1;
  if exists (select 1 from new_postings n where n.book_id <> book) then
    for book in select distinct n.book_id from new_postings n order by 1 loop
      perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
    end loop;
  else
    perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
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
  select p.cmin::text into own_cmin
    from (select book_id, entry_id, line_no from new_postings limit 1) n
    cross join lateral (
      select p.cmin from postings p
       where p.book_id = n.book_id and p.entry_id = n.entry_id and p.line_no = n.line_no
       limit 1) p;

  -- Per entry: what the foreign key would check, that the entry is this
  -- statement's, the postings' dates, and (invariant 1) two or more postings
  -- summing to zero per currency. Broken entries sort first: those rules
  -- are reported before the account rules, the balance after them.
  -- Key lookups are written as LATERAL ... LIMIT 1, which the planner cannot
  -- turn into a hash join: a plan cached while the tables were small would
  -- otherwise scan a whole table in every later statement.
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
  if found and bad.broken then
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
  -- check (account, currency), and the account's and currency's rules.
  select g.book_id, g.account_id, g.currency, g.places,
         a.id is null as no_account, a.name as account_name,
         a.closed_at is not null as closed,
         c.code is null as no_currency, c.minor_unit
    into bad
    from (select book_id, account_id, currency, max(min_scale(amount)) as places
            from new_postings
           group by book_id, account_id, currency) g
    left join lateral (
      select a.id, a.name, a.closed_at, a.currencies from accounts a
       where a.book_id = g.book_id and a.id = g.account_id
       limit 1) a on true
    left join currencies c on c.code = g.currency
   where a.id is null
      or a.closed_at is not null
      or (cardinality(a.currencies) > 0 and not g.currency = any (a.currencies))
      or c.code is null
      or g.places > c.minor_unit
   limit 1;
  if found then
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

  -- Daily balances; the slot spreads concurrent writers of one hot account.
  insert into account_balances as b
         (book_id, account_id, currency, balance_date, slot, amount, postings_count)
  select book_id, account_id, currency, effective_date, pg_backend_pid() % 16,
         sum(amount), count(*)
    from new_postings
   group by book_id, account_id, currency, effective_date
   order by book_id, account_id, currency, effective_date
  on conflict (book_id, account_id, currency, balance_date, slot) do update
     set amount = b.amount + excluded.amount,
         postings_count = b.postings_count + excluded.postings_count;

  -- Invariant 6: accounts with a minimum keep one running balance, updated
  -- under its row lock, so concurrent debits are checked one after another.
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

ENTRIES_INSERTED = """
create or replace function ab_entries_inserted() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  bad record;
  book uuid;
  own_txid bigint := (pg_current_xact_id())::text::bigint;
begin
  -- The checks below read other rows with the statement's snapshot; under
  -- REPEATABLE READ that snapshot could predate a period close.
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'ledger entries are written at READ COMMITTED isolation, not %',
      current_setting('transaction_isolation')
      using errcode = 'check_violation', constraint = 'journal_entries_isolation';
  end if;
  if exists (select 1 from new_entries n
              where not exists (select 1 from books b where b.id = n.book_id)) then
    raise exception 'journal entry names a book that does not exist'
      using errcode = 'foreign_key_violation', constraint = 'fk_journal_entries_book_id_books';
  end if;
  if exists (select 1 from new_entries where txid <> own_txid) then
    raise exception 'txid of a journal entry is set by the database'
      using errcode = 'check_violation', constraint = 'journal_entries_txid';
  end if;
  -- What the foreign key to the reversed entry checked, once per statement.
  select n.id, n.reverses_entry_id into bad
    from new_entries n
   where n.reverses_entry_id is not null
     and not exists (select 1 from journal_entries e
                      where e.book_id = n.book_id and e.id = n.reverses_entry_id)
   limit 1;
  if found then
    raise exception 'journal entry % reverses entry %, which does not exist in its book',
      bad.id, bad.reverses_entry_id
      using errcode = 'foreign_key_violation',
            constraint = 'fk_journal_entries_book_id_reverses_entry_id_journal_entries';
  end if;
  -- Shared per-book lock: closing a period takes it exclusively, so an entry
  -- either commits before the close or sees the period closed.
  select n.book_id into book from new_entries n limit 1;
  if exists (select 1 from new_entries n where n.book_id <> book) then
    for book in select distinct n.book_id from new_entries n order by 1 loop
      perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
    end loop;
  else
    perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
  end if;
  -- Periods ('YYYY-MM') sort as dates do: a closed one between a book's first
  -- and last new month is the only case that needs the per-entry look.
  if exists (
    select 1
      from (select book_id, min(effective_date) as first_day, max(effective_date) as last_day
              from new_entries group by book_id) r
      join periods p on p.book_id = r.book_id
                    and p.period between to_char(r.first_day, 'YYYY-MM')
                                     and to_char(r.last_day, 'YYYY-MM')
     where p.status = 'closed'
  ) then
    select e.id, e.effective_date into bad
      from new_entries e
      join periods p on p.book_id = e.book_id
                    and p.period = to_char(e.effective_date, 'YYYY-MM')
     where p.status = 'closed'
     limit 1;
    if found then
      raise exception
        'entry % is dated %, inside closed period %; post it in the first open period',
        bad.id, bad.effective_date, to_char(bad.effective_date, 'YYYY-MM')
        using errcode = 'check_violation', constraint = 'journal_entries_open_period';
    end if;
  end if;
  -- Invariant 1, for an entry the statement gave no posting at all (it is in
  -- no new_postings, so ab_postings_inserted cannot see it). Postings join an
  -- entry only in the statement that inserts it, so none can come later.
  select n.id into bad
    from new_entries n
   where not exists (select 1 from postings p where p.book_id = n.book_id and p.entry_id = n.id)
   limit 1;
  if found then
    raise exception 'journal entry % has 0 posting(s); an entry needs at least two', bad.id
      using errcode = 'check_violation', constraint = 'journal_entries_balanced';
  end if;
  insert into unsealed_entries (book_id, entry_id) select book_id, id from new_entries;
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
    op.execute(ENTRIES_INSERTED)


def downgrade() -> None:
    op.execute(str(_revision("0032_batch.py").POSTINGS_INSERTED))
    op.execute(str(_revision("0029_batch.py").ENTRIES_INSERTED))
