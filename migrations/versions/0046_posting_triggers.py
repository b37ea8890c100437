"""Posting's triggers do less per statement: one sealing-queue row per statement, fewer queries.

Measured per statement (backend CPU from /proc/<pid>/schedstat): a single 2-posting entry
cost ~770 µs of backend CPU, ~400 µs of it in the four statement triggers (their own call
overhead and about twenty small queries); a 1,000-entry batch ~40 ms, ~10 ms of it in the
triggers, ~25 ms more in the sealer. This revision:

- queues each statement's entries as one row of `seal_queue` (an array of entry ids, in
  the order the statement wrote them) instead of one `unsealed_entries` row per entry
  with two index entries each; `unsealed_entries` stays, as a view that unnests the
  queue, for the readers (verify, metrics, auditors). The sealer takes whole rows in
  queue order and deletes them by their key;
- checks the accepted dates inside `ab_entries_inserted` and the billing documents inside
  `ab_postings_inserted`: two trigger calls fewer per statement;
- checks what the foreign key from `seals` to `journal_entries` checked once per sealing
  statement in `ab_seals_inserted` (one query, not a query per seal), and takes each
  seal's predecessor from the statement's own rows (a window over `new_seals`), reading
  the table only for the statement's first seal;
- plans the two triggers' queries generically (once per session), not again per statement;
- in `ab_entries_inserted`, reads the statement's book once (existence, clock, settings)
  and gathers the statement-wide facts (one book?, txid, dates, reversals) in one pass
  over the new entries; the general queries stay for a statement of several books.

Every check and its error (SQLSTATE, constraint name, message) is unchanged.

Revision ID: 0046
Revises: 0045
Create Date: 2026-12-01 07:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0046"
down_revision: str | None = "0045"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE = """
create table seal_queue (
  book_id uuid not null,
  id bigint generated always as identity,
  entry_ids uuid[] not null,
  queued_at timestamptz not null default clock_timestamp(),
  constraint pk_seal_queue primary key (book_id, id)
);
insert into seal_queue (book_id, entry_ids, queued_at)
select book_id, array_agg(entry_id order by queued_at, entry_id), min(queued_at)
  from unsealed_entries
 group by book_id
 order by book_id;
-- Whoever could read or delete the old queue can read or delete the new one,
-- and read the view that takes the old one's name.
do $$
declare
  g record;
  readers text[] := '{}';
begin
  for g in select grantee, privilege_type from information_schema.role_table_grants
            where table_schema = 'public' and table_name = 'unsealed_entries'
              and privilege_type in ('SELECT', 'DELETE')
              and grantee <> current_user loop
    execute format('grant %s on seal_queue to %I', g.privilege_type, g.grantee);
    if g.privilege_type = 'SELECT' then
      readers := readers || g.grantee::text;
    end if;
  end loop;
  drop table unsealed_entries;
  create view unsealed_entries as
  select q.book_id, e.entry_id, q.queued_at
    from seal_queue q cross join lateral unnest(q.entry_ids) as e(entry_id);
  for g in select unnest(readers) as grantee loop
    execute format('grant select on unsealed_entries to %I', g.grantee);
  end loop;
end $$;
"""

# Back to a row per entry (the grants of the queue go to the table again).
UNQUEUE = """
do $$
declare
  g record;
begin
  drop view unsealed_entries;
  create table unsealed_entries (
    book_id uuid not null,
    entry_id uuid not null,
    queued_at timestamptz not null default clock_timestamp(),
    constraint pk_unsealed_entries primary key (book_id, entry_id)
  );
  create index ix_unsealed_entries_book_id_queued_at_entry_id
      on unsealed_entries (book_id, queued_at, entry_id);
  insert into unsealed_entries (book_id, entry_id, queued_at)
  select q.book_id, e.entry_id, q.queued_at + (e.n - 1) * interval '1 microsecond'
    from seal_queue q cross join lateral unnest(q.entry_ids) with ordinality as e(entry_id, n)
  on conflict do nothing;
  for g in select grantee, privilege_type from information_schema.role_table_grants
            where table_schema = 'public' and table_name = 'seal_queue'
              and privilege_type in ('SELECT', 'DELETE')
              and grantee <> current_user loop
    execute format('grant %s on unsealed_entries to %I', g.privilege_type, g.grantee);
  end loop;
  drop table seal_queue;
end $$;
"""

ENTRIES_INSERTED = """
create or replace function ab_entries_inserted() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  bad record;
  book uuid;
  facts record;
  acc record;
  own_txid bigint := (pg_current_xact_id())::text::bigint;
begin
  -- The statement's facts in one pass: nearly always one book, so one row of
  -- `books` serves the accepted dates, the foreign key and the lock.
  select f.book_id, bool_or(n.book_id <> f.book_id) as many_books,
         bool_or(n.txid <> own_txid) as foreign_txid,
         bool_or(n.reverses_entry_id is not null) as reversing,
         min(n.effective_date) as first_day, max(n.effective_date) as last_day
    into facts
    from (select book_id from new_entries limit 1) f cross join new_entries n
   group by f.book_id;
  if not found then
    return null;  -- no entry written (an idempotent replay): nothing to check or queue
  end if;
  book := facts.book_id;
  if facts.many_books then
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
  else
    select w.first_day, w.last_day into acc
      from books b cross join lateral ab_accepted_window(b.clock_date, b.settings) w
     where b.id = book;
    if found and (facts.first_day < acc.first_day or facts.last_day > acc.last_day) then
      select e.id, e.effective_date into bad
        from new_entries e
       where e.effective_date not between acc.first_day and acc.last_day
       limit 1;
      raise exception 'entry % is dated %, outside the dates this book accepts (% to %)',
        bad.id, bad.effective_date, acc.first_day, acc.last_day
        using errcode = 'check_violation', constraint = 'journal_entries_accepted_dates';
    end if;
  end if;
  -- The checks below read other rows with the statement's snapshot; under
  -- REPEATABLE READ that snapshot could predate a period close.
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'ledger entries are written at READ COMMITTED isolation, not %',
      current_setting('transaction_isolation')
      using errcode = 'check_violation', constraint = 'journal_entries_isolation';
  end if;
  if (facts.many_books and exists (
        select 1 from new_entries n
         where not exists (select 1 from books b where b.id = n.book_id)))
     or (not facts.many_books and acc is null) then
    raise exception 'journal entry names a book that does not exist'
      using errcode = 'foreign_key_violation', constraint = 'fk_journal_entries_book_id_books';
  end if;
  if facts.foreign_txid then
    raise exception 'txid of a journal entry is set by the database'
      using errcode = 'check_violation', constraint = 'journal_entries_txid';
  end if;
  -- What the foreign key to the reversed entry checked, once per statement.
  if facts.reversing then
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
  end if;
  -- Shared per-book lock: closing a period takes it exclusively, so an entry
  -- either commits before the close or sees the period closed.
  if facts.many_books then
    for book in select distinct n.book_id from new_entries n order by 1 loop
      perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
    end loop;
    select n.book_id into book from new_entries n limit 1;
  else
    perform pg_advisory_xact_lock_shared(hashtextextended('ab_periods:' || book::text, 0));
  end if;
  -- Periods ('YYYY-MM') sort as dates do: a closed one between a book's first
  -- and last new month is the only case that needs the per-entry look.
  if (facts.many_books and exists (
        select 1
          from (select book_id, min(effective_date) as first_day, max(effective_date) as last_day
                  from new_entries group by book_id) r
          join periods p on p.book_id = r.book_id
                        and p.period between to_char(r.first_day, 'YYYY-MM')
                                         and to_char(r.last_day, 'YYYY-MM')
         where p.status = 'closed'))
     or (not facts.many_books and exists (
        select 1 from periods p
         where p.book_id = book
           and p.period between to_char(facts.first_day, 'YYYY-MM')
                            and to_char(facts.last_day, 'YYYY-MM')
           and p.status = 'closed')) then
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
  -- One queue row per book of the statement, its entries in the order written.
  if facts.many_books then
    insert into seal_queue (book_id, entry_ids)
    select book_id, array_agg(id) from new_entries group by book_id order by book_id;
  else
    insert into seal_queue (book_id, entry_ids) select book, array_agg(id) from new_entries;
  end if;
  return null;
end $$;
"""

POSTINGS_HEAD = """begin
  -- One read for the statement's facts: its (first) book, whether it has
  -- postings of another book, the command id that wrote them (see below),
  -- and whether one names a billing document outside the billing services.
  select n.book_id,
         exists (select 1 from new_postings m where m.book_id <> n.book_id),
         p.cmin::text,
         coalesce(current_setting('activebilling.writer', true), '') <> 'billing'
           and exists (select 1 from new_postings m where m.document ~ BILLING_DOCUMENT)
    into book, many_books, own_cmin, billing_document
    from (select book_id, entry_id, line_no from new_postings limit 1) n
    cross join lateral (
      select p.cmin from postings p
       where p.book_id = n.book_id and p.entry_id = n.entry_id and p.line_no = n.line_no
       limit 1) p;
  -- Billing documents are named only by the billing services' transactions.
  if billing_document then
    select entry_id, line_no, document into bad
      from new_postings
     where document ~ BILLING_DOCUMENT
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
""".replace(
    "BILLING_DOCUMENT",
    "'^(invoice|payment|credit_note|refund|contract|encounter|claim|remittance|patient_payment):'",
)


SEALS_INSERTED = """
create or replace function ab_seals_inserted() returns trigger language plpgsql as $$
begin
  -- What the foreign key to the sealed entry checked, once per statement
  -- (entries are never deleted, so no row lock is needed to keep it true).
  if exists (select 1 from new_seals s
              where not exists (select 1 from journal_entries e
                                 where e.book_id = s.book_id and e.id = s.entry_id)) then
    raise exception 'seal names a journal entry that does not exist in its book'
      using errcode = 'foreign_key_violation',
            constraint = 'fk_seals_book_id_entry_id_journal_entries';
  end if;
  -- Each seal names its predecessor's hash: the seal before it in this
  -- statement when there is one (no second read of rows just written), else
  -- the last one already in the table.
  if exists (
    select 1
      from (select s.book_id, s.seq, s.prev_hash,
                   lag(s.seq) over w as before_seq, lag(s.hash) over w as before_hash
              from new_seals s
            window w as (partition by s.book_id order by s.seq)) s
     where (s.seq = 1 and s.prev_hash <> repeat('0', 64))
        or (s.seq > 1 and s.before_seq = s.seq - 1 and s.prev_hash <> s.before_hash)
        or (s.seq > 1 and s.before_seq is distinct from s.seq - 1 and not exists (
              select 1 from seals p
               where p.book_id = s.book_id and p.seq = s.seq - 1 and p.hash = s.prev_hash))
  ) then
    raise exception 'seals must extend the chain: each seq follows the last one and names its hash'
      using errcode = 'check_violation', constraint = 'seals_chain';
  end if;
  return null;
end $$;
alter table seals drop constraint fk_seals_book_id_entry_id_journal_entries;
"""

OLD_SEALS = """
alter table seals add constraint fk_seals_book_id_entry_id_journal_entries
  foreign key (book_id, entry_id) references journal_entries (book_id, id);
CREATE OR REPLACE FUNCTION public.ab_seals_inserted()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
begin
  if exists (
    select 1 from new_seals s
     where (s.seq = 1 and s.prev_hash <> repeat('0', 64))
        or (s.seq > 1 and not exists (
              select 1 from seals p
               where p.book_id = s.book_id and p.seq = s.seq - 1 and p.hash = s.prev_hash))
  ) then
    raise exception 'seals must extend the chain: each seq follows the last one and names its hash'
      using errcode = 'check_violation', constraint = 'seals_chain';
  end if;
  return null;
end $function$;
"""

# The definitions 0044 left (pg_get_functiondef), for the downgrade.
OLD_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION public.ab_entries_accepted_dates()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'public', 'pg_temp'
AS $function$
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
end $function$

;
CREATE OR REPLACE FUNCTION public.ab_entries_inserted()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'public', 'pg_temp'
AS $function$
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
end $function$

;
CREATE OR REPLACE FUNCTION public.ab_postings_billing_documents()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
declare
  bad record;
begin
  if coalesce(current_setting('activebilling.writer', true), '') = 'billing' then
    return null;
  end if;
  select entry_id, line_no, document into bad
    from new_postings
   where document ~ '^(invoice|payment|credit_note|refund|contract|encounter|claim|remittance|patient_payment):'
   limit 1;
  if found then
    raise exception 'posting % of entry % names %, a billing document: such postings are written only by the billing services',
      bad.line_no, bad.entry_id, bad.document
      using errcode = 'check_violation', constraint = 'postings_billing_document';
  end if;
  return null;
end $function$

;
CREATE OR REPLACE FUNCTION public.ab_postings_inserted()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'public', 'pg_temp'
AS $function$
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
end $function$

;
"""

OLD_TRIGGERS = """
create trigger journal_entries_accepted_dates after insert on journal_entries
  referencing new table as new_entries
  for each statement execute function ab_entries_accepted_dates();
create trigger postings_billing_documents after insert on postings
  referencing new table as new_postings
  for each statement execute function ab_postings_billing_documents();
"""

_POSTINGS_FROM = "begin\n  -- Writers hold the per-book lock shared"
_POSTINGS_TO = "\n  -- Per entry: what the foreign key would check"


def _postings_inserted() -> str:
    """0044's ab_postings_inserted with its first reads made one, and the
    billing-documents check (0044's own trigger) in it."""
    start = OLD_FUNCTIONS.index("CREATE OR REPLACE FUNCTION public.ab_postings_inserted()")
    body = OLD_FUNCTIONS[start:]
    head, rest = body.split(_POSTINGS_FROM, 1)
    _, tail = rest.split(_POSTINGS_TO, 1)
    head = head.replace("  own_cmin text;\n", "  own_cmin text;\n  many_books boolean;\n  billing_document boolean;\n", 1)
    assert "many_books boolean" in head
    return head + POSTINGS_HEAD + _POSTINGS_TO + tail


def upgrade() -> None:
    op.execute(QUEUE)
    op.execute("drop trigger journal_entries_accepted_dates on journal_entries")
    op.execute("drop trigger postings_billing_documents on postings")
    op.execute("drop function ab_entries_accepted_dates()")
    op.execute("drop function ab_postings_billing_documents()")
    op.execute(ENTRIES_INSERTED)
    op.execute(_postings_inserted())
    op.execute(SEALS_INSERTED)
    # Generic plans, built once per session: with `auto` some of the triggers' queries
    # (parameters from their variables) were planned again at every statement, ~6 % of
    # a single entry's backend CPU (perf); their key lookups are LATERAL ... LIMIT 1,
    # which keeps a generic plan on the keys however small the tables were.
    for function in ("ab_entries_inserted", "ab_postings_inserted"):
        op.execute(f"alter function {function}() set plan_cache_mode = force_generic_plan")


def downgrade() -> None:
    op.execute(OLD_SEALS)
    op.execute(OLD_FUNCTIONS)
    op.execute(OLD_TRIGGERS)
    op.execute(UNQUEUE)
