-- Invariants of DESIGN.md enforced by PostgreSQL itself (revision 0001).
-- Violations raise SQLSTATE 23514 (check_violation) with a named constraint,
-- so drivers report an integrity error and the service can say which rule.

create function ab_forbid_change() returns trigger language plpgsql as $$
begin
  raise exception '% is append-only: % is not allowed; correct a mistake with a reversing entry',
    tg_table_name, lower(tg_op)
    using errcode = 'check_violation', constraint = tg_table_name || '_append_only';
end $$;

create trigger journal_entries_append_only before update or delete on journal_entries
  for each row execute function ab_forbid_change();
create trigger journal_entries_no_truncate before truncate on journal_entries
  for each statement execute function ab_forbid_change();
create trigger postings_append_only before update or delete on postings
  for each row execute function ab_forbid_change();
create trigger postings_no_truncate before truncate on postings
  for each statement execute function ab_forbid_change();
create trigger seals_append_only before update or delete on seals
  for each row execute function ab_forbid_change();
create trigger seals_no_truncate before truncate on seals
  for each statement execute function ab_forbid_change();
create trigger accounts_no_delete before delete on accounts
  for each row execute function ab_forbid_change();
create trigger accounts_no_truncate before truncate on accounts
  for each statement execute function ab_forbid_change();

-- Accounts: identity, type and limit are fixed once created (postings and
-- guarded balances depend on them); closing and reopening are allowed.
create function ab_account_update() returns trigger language plpgsql as $$
begin
  if new.book_id <> old.book_id or new.id <> old.id or new.name <> old.name
     or new.type <> old.type or new.min_balance is distinct from old.min_balance then
    raise exception 'account %: name, type and minimum balance cannot change', old.name
      using errcode = 'check_violation', constraint = 'accounts_immutable';
  end if;
  return new;
end $$;
create trigger accounts_immutable before update on accounts
  for each row execute function ab_account_update();

-- Invariant 5 (transaction ownership) and 4 (closed periods), for every new
-- entry; and queue each entry for the sealer.
create function ab_entries_inserted() returns trigger language plpgsql
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
  insert into unsealed_entries (book_id, entry_id) select book_id, id from new_entries;
  return null;
end $$;
create trigger journal_entries_inserted after insert on journal_entries
  referencing new table as new_entries
  for each statement execute function ab_entries_inserted();

-- Invariant 1: at commit, each entry has two or more postings summing to zero
-- per currency.
create function ab_entry_balanced() returns trigger language plpgsql as $$
declare
  n integer;
  off text;
begin
  select count(*) into n from postings where book_id = new.book_id and entry_id = new.id;
  if n < 2 then
    raise exception 'journal entry % has % posting(s); an entry needs at least two', new.id, n
      using errcode = 'check_violation', constraint = 'journal_entries_balanced';
  end if;
  select string_agg(currency || ' ' || total::text, ', ') into off
    from (select currency, sum(amount) as total from postings
           where book_id = new.book_id and entry_id = new.id
           group by currency having sum(amount) <> 0) s;
  if off is not null then
    raise exception 'journal entry % does not balance: off by %', new.id, off
      using errcode = 'check_violation', constraint = 'journal_entries_balanced';
  end if;
  return null;
end $$;
create constraint trigger journal_entries_balanced after insert on journal_entries
  deferrable initially deferred
  for each row execute function ab_entry_balanced();

-- Invariants 3, 4 (accounts), 6, exact money, and the balance projections.
create function ab_postings_inserted() returns trigger language plpgsql
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
      raise exception 'journal entry % was committed by an earlier transaction; postings cannot be added to it',
        bad.entry_id
        using errcode = 'check_violation', constraint = 'postings_open_entry';
    elsif bad.other_statement then
      raise exception 'postings of journal entry % must be inserted by the statement that inserts the entry',
        bad.entry_id
        using errcode = 'check_violation', constraint = 'postings_open_entry';
    elsif bad.effective_date <> bad.entry_date then
      raise exception 'posting date % differs from its entry''s date %', bad.effective_date, bad.entry_date
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
      raise exception 'amount % has more decimals than % allows (%)', bad.amount, bad.currency, bad.minor_unit
        using errcode = 'check_violation', constraint = 'postings_minor_unit';
    else
      raise exception 'account % does not allow currency %', bad.account_name, bad.currency
        using errcode = 'check_violation', constraint = 'postings_account_currency';
    end if;
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
create trigger postings_inserted after insert on postings
  referencing new table as new_postings
  for each statement execute function ab_postings_inserted();

-- Seals: gapless per book, each hash chained to its predecessor's.
create function ab_seals_inserted() returns trigger language plpgsql as $$
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
end $$;
create trigger seals_inserted after insert on seals
  referencing new table as new_seals
  for each statement execute function ab_seals_inserted();

-- Folds the per-slot daily balances of days before `before` into slot 0, so
-- reads scan one row per account, currency and day. Safe beside writers:
-- the rows it folds are locked while it works.
create function ab_compact_balances(p_book uuid, p_before date) returns bigint
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  n bigint;
begin
  -- Lock what will be folded in key order first, as writers do, so a writer
  -- back-dating into these days and the compaction cannot deadlock.
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

-- The application's role may read everything, append entries and postings,
-- and manage what is meant to change; it owns nothing, so it cannot disable
-- a trigger, and it writes balances only through the triggers above.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'activebilling_app') then
    begin
      create role activebilling_app login;
    exception when duplicate_object or unique_violation then
      null;  -- created by a concurrent migration of another database
    end;
  end if;
  -- The service logs in as this role (no superuser session to RESET ROLE back to).
  begin
    alter role activebilling_app login;
  exception
    when insufficient_privilege then
      null;  -- the migrating user may not alter roles; the service then uses SET ROLE
    when internal_error then
      -- "tuple concurrently updated": the role is shared by every database of the
      -- server, and a migration of another database gave it login at this moment.
      null;
  end;
end $$;
grant usage on schema public to activebilling_app;
grant select on all tables in schema public to activebilling_app;
grant insert on journal_entries, postings, seals, accounts, books, periods, api_keys,
  idempotency_keys to activebilling_app;
grant update (closed_at, metadata, currencies, code) on accounts to activebilling_app;
grant update (status, changed_at) on periods to activebilling_app;
grant update (clock_date, settings, name) on books to activebilling_app;
grant update (revoked_at) on api_keys to activebilling_app;
grant update (status_code, response_body) on idempotency_keys to activebilling_app;
grant delete on unsealed_entries, idempotency_keys to activebilling_app;
grant execute on function ab_compact_balances(uuid, date) to activebilling_app;
