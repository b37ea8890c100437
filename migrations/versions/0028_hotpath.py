"""The hot posting path: invariant 1 (an entry balances) checked at the end of the
statement that writes the entry, by the statement-level triggers, instead of by
a deferred per-row constraint trigger at commit.

Postings join an entry only in the statement that inserts it (ab_postings_inserted
refuses any other: `postings_open_entry`), so when that statement ends the entry
is complete and the check is final. The balance is summed from the statement's
transition table (`new_postings`), with no read of `postings`; an entry given no
posting at all is not in it, so `ab_entries_inserted` refuses that one. Errors keep
their constraint name, `journal_entries_balanced`, and their messages.

What it saves per entry: the deferred trigger's queued event and its two queries
at commit. And a single autocommitted statement now finishes every check inside
itself, so the posting route can write an entry, its postings and its stored
idempotent response in one round trip (adapters/http/hot_path.py).

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-30 19:45:00.000000
"""

import re
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTRIES_INSERTED = r"""
create or replace function ab_entries_inserted() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  bad record;
  book uuid;
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
  if exists (select 1 from new_entries
             where txid <> (pg_current_xact_id())::text::bigint) then
    raise exception 'txid of a journal entry is set by the database'
      using errcode = 'check_violation', constraint = 'journal_entries_txid';
  end if;
  -- Shared per-book lock: closing a period takes it exclusively, so an entry
  -- either commits before the close or sees the period closed.
  for book in select distinct book_id from new_entries loop
    perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
  end loop;
  select e.id, e.effective_date into bad
    from new_entries e
    join periods p on p.book_id = e.book_id
                  and p.period = to_char(e.effective_date, 'YYYY-MM')
   where p.status = 'closed'
   limit 1;
  if found then
    raise exception 'entry % is dated %, inside closed period %; post it in the first open period',
      bad.id, bad.effective_date, to_char(bad.effective_date, 'YYYY-MM')
      using errcode = 'check_violation', constraint = 'journal_entries_open_period';
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

POSTINGS_INSERTED = r"""
create or replace function ab_postings_inserted() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  bad record;
  book uuid;
begin
  -- Writers hold the per-book lock shared; closing a period or an account
  -- takes it exclusively, so neither can slip past an entry being written.
  for book in select distinct book_id from new_postings loop
    perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
  end loop;
  -- One pass over the new postings checks what foreign keys would (entry,
  -- account, currency) and the ledger's own rules. Postings are inserted by
  -- the statement that inserts their entry (cmin is the command that wrote a
  -- row), so the balance check, even when made IMMEDIATE, sees the whole entry.
  select n.entry_id, n.currency, n.amount, n.effective_date,
         e.id is null as no_entry,
         e.txid <> (pg_current_xact_id())::text::bigint as not_own,
         p.cmin::text <> e.cmin::text as other_statement,
         e.effective_date as entry_date,
         a.id is null as no_account, a.name as account_name,
         a.closed_at is not null as closed,
         c.code is null as no_currency, c.minor_unit
    into bad
    from new_postings n
    left join journal_entries e on e.book_id = n.book_id and e.id = n.entry_id
    left join postings p on p.book_id = n.book_id and p.entry_id = n.entry_id
                        and p.line_no = n.line_no
    left join accounts a on a.book_id = n.book_id and a.id = n.account_id
    left join currencies c on c.code = n.currency
   where e.id is null
      or e.txid <> (pg_current_xact_id())::text::bigint
      or p.cmin::text <> e.cmin::text
      or n.effective_date <> e.effective_date
      or a.id is null
      or a.closed_at is not null
      or (cardinality(a.currencies) > 0 and not n.currency = any (a.currencies))
      or c.code is null
      or n.amount <> round(n.amount, c.minor_unit)
   limit 1;
  if found then
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
    elsif bad.effective_date <> bad.entry_date then
      raise exception 'posting date % differs from its entry''s date %',
        bad.effective_date, bad.entry_date
        using errcode = 'check_violation', constraint = 'postings_entry_date';
    elsif bad.no_account then
      raise exception 'posting names an account that does not exist in this book'
        using errcode = 'foreign_key_violation',
              constraint = 'fk_postings_book_id_account_id_accounts';
    elsif bad.no_currency then
      raise exception 'unknown currency %', bad.currency
        using errcode = 'foreign_key_violation', constraint = 'fk_postings_currency_currencies';
    elsif bad.closed then
      raise exception 'account % is closed', bad.account_name
        using errcode = 'check_violation', constraint = 'postings_open_account';
    elsif bad.amount <> round(bad.amount, bad.minor_unit) then
      raise exception 'amount % has more decimals than % allows (%)',
        bad.amount, bad.currency, bad.minor_unit
        using errcode = 'check_violation', constraint = 'postings_minor_unit';
    else
      raise exception 'account % does not allow currency %', bad.account_name, bad.currency
        using errcode = 'check_violation', constraint = 'postings_account_currency';
    end if;
  end if;

  -- Invariant 1: each entry has two or more postings summing to zero per
  -- currency. The check above makes every posting of an entry come from the
  -- statement that inserts the entry, so new_postings holds all of them and
  -- the check is final here, at the end of that statement: no per-row
  -- deferred trigger, no second read of the postings at commit.
  select s.entry_id, s.n, s.off into bad
    from (select c.entry_id, sum(c.n) as n,
                 string_agg(case when c.total <> 0 then c.currency || ' ' || c.total::text end,
                            ', ' order by c.currency) as off
            from (select book_id, entry_id, currency, count(*) as n, sum(amount) as total
                    from new_postings
                   group by book_id, entry_id, currency) c
           group by c.book_id, c.entry_id) s
   where s.n < 2 or s.off is not null
   limit 1;
  if found then
    if bad.n < 2 then
      raise exception 'journal entry % has % posting(s); an entry needs at least two',
        bad.entry_id, bad.n
        using errcode = 'check_violation', constraint = 'journal_entries_balanced';
    end if;
    raise exception 'journal entry % does not balance: off by %', bad.entry_id, bad.off
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
    select p.book_id, p.account_id, p.currency, sum(p.amount) as amount
      from new_postings p
      join accounts a on a.book_id = p.book_id and a.id = p.account_id
     where a.min_balance is not null
     group by p.book_id, p.account_id, p.currency
     order by p.book_id, p.account_id, p.currency
  ), updated as (
    insert into guarded_balances as g (book_id, account_id, currency, balance)
    select book_id, account_id, currency, amount from moved
    on conflict (book_id, account_id, currency) do update
       set balance = g.balance + excluded.balance
    returning g.book_id, g.account_id, g.currency, g.balance
  )
  select a.name, u.currency, u.balance, a.min_balance into bad
    from updated u join accounts a on a.book_id = u.book_id and a.id = u.account_id
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


def upgrade() -> None:
    op.execute(ENTRIES_INSERTED)
    op.execute(POSTINGS_INSERTED)
    op.execute("drop trigger journal_entries_balanced on journal_entries")
    op.execute("drop function ab_entry_balanced()")


def _revision_0001(name: str) -> str:
    """A function of revision 0001's SQL, as it was written there."""
    source = Path(__file__).with_name("0001_ledger_invariants.sql").read_text()
    found = re.search(rf"create function {name}\(\).*?\nend \$\$;\n", source, re.S)
    assert found is not None, name
    return found.group(0)


def downgrade() -> None:
    op.execute(
        _revision_0001("ab_entries_inserted").replace(
            "create function", "create or replace function", 1
        )
    )
    op.execute(
        _revision_0001("ab_postings_inserted").replace(
            "create function", "create or replace function", 1
        )
    )
    op.execute(_revision_0001("ab_entry_balanced"))
    op.execute(
        "create constraint trigger journal_entries_balanced after insert on journal_entries"
        " deferrable initially deferred"
        " for each row execute function ab_entry_balanced()"
    )
