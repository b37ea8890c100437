"""Batched posting: the journal_entries statement triggers do their per-book
work once per book, not once per entry.

`ab_entries_accepted_dates` computed the book's accepted window (a PL/pgSQL
call, ~20 µs) once per new entry: the planner put the lateral call after the
join with the entries. The window is now worked out in a materialized CTE, one
call per book. `ab_entries_inserted` read the transaction id once per entry
and probed `periods` with a `to_char` per entry; it now reads the id once and
looks for a closed period between each book's first and last new month, and
only when there is one names the first entry inside it. What each refuses,
and the message, SQLSTATE and constraint name, are unchanged.

The foreign key from a reversal to the entry it reverses was a per-row
constraint trigger: 1,000 trigger calls (each fetching its row again) for a
1,000-entry batch, though almost no entry reverses one (5-9 ms a batch on a
loaded machine). `ab_entries_inserted` now checks it once per statement, with
the same SQLSTATE (23503) and constraint name. A foreign key's other half,
keeping the parent from being deleted or its key changed, is already kept by
the append-only triggers (as for postings, which have no foreign keys).

The postings statement trigger and the per-entry balance trigger are not
touched here.

Revision ID: 0029
Revises: 0028
Create Date: 2026-11-30 19:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCEPTED_DATES = """
create or replace function ab_entries_accepted_dates() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  bad record;
begin
  -- MATERIALIZED: one ab_accepted_window call per book, however many entries.
  with windows as materialized (
    select nb.book_id, w.first_day, w.last_day
      from (select distinct book_id from new_entries) nb
      join books b on b.id = nb.book_id
      cross join lateral ab_accepted_window(b.clock_date, b.settings) w
  )
  select e.id, e.effective_date, w.first_day, w.last_day into bad
    from new_entries e
    join windows w on w.book_id = e.book_id
   where e.effective_date not between w.first_day and w.last_day
   limit 1;
  if found then
    raise exception 'entry % is dated %, outside the dates this book accepts (% to %)',
      bad.id, bad.effective_date, bad.first_day, bad.last_day
      using errcode = 'check_violation', constraint = 'journal_entries_accepted_dates';
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
  if exists (select 1 from new_entries n where not exists (select 1 from books b where b.id = n.book_id)) then
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
  for book in select distinct book_id from new_entries loop
    perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
  end loop;
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
      raise exception 'entry % is dated %, inside closed period %; post it in the first open period',
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

# As revisions 0006 and 0028 (0001's, with its 0-postings check) wrote them.
OLD_ACCEPTED_DATES = """
create or replace function ab_entries_accepted_dates() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  bad record;
begin
  select e.id, e.effective_date, w.first_day, w.last_day into bad
    from (select distinct book_id from new_entries) nb
    join books b on b.id = nb.book_id
    cross join lateral ab_accepted_window(b.clock_date, b.settings) w
    join new_entries e on e.book_id = nb.book_id
   where e.effective_date not between w.first_day and w.last_day
   limit 1;
  if found then
    raise exception 'entry % is dated %, outside the dates this book accepts (% to %)',
      bad.id, bad.effective_date, bad.first_day, bad.last_day
      using errcode = 'check_violation', constraint = 'journal_entries_accepted_dates';
  end if;
  return null;
end $$;
"""

OLD_ENTRIES_INSERTED = """
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
  if exists (select 1 from new_entries n where not exists (select 1 from books b where b.id = n.book_id)) then
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


FOREIGN_KEY = "fk_journal_entries_book_id_reverses_entry_id_journal_entries"


def upgrade() -> None:
    op.execute(ACCEPTED_DATES)
    op.execute(ENTRIES_INSERTED)
    op.drop_constraint(FOREIGN_KEY, "journal_entries", type_="foreignkey")


def downgrade() -> None:
    op.execute(OLD_ACCEPTED_DATES)
    op.execute(OLD_ENTRIES_INSERTED)
    op.create_foreign_key(
        FOREIGN_KEY,
        "journal_entries",
        "journal_entries",
        ["book_id", "reverses_entry_id"],
        ["book_id", "id"],
    )
