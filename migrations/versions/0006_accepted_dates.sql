-- Dates a book accepts (revision 0006, ACCOUNTING.md): every entry's
-- effective date lies within the book's window around its today, the book
-- setting accepted_dates = {"years_before": n, "years_after": n} (default 10
-- and 2). ledger/dates.py is the same rule in Python: settings that are not
-- whole numbers >= 0 read as the defaults, more than 1000 years as 1000; a
-- year later of Feb 29 is Feb 28 (date + interval does the same).

create function ab_accepted_years(p_value jsonb, p_default integer) returns integer
language sql immutable as $$
  select case
    when jsonb_typeof(p_value) = 'number' and p_value::text ~ '^[0-9]+$'
      then least(p_value::text::numeric, 1000)::integer
    else p_default
  end
$$;

-- The book's today is its simulated date, else today in UTC (the service's
-- clock). PL/pgSQL, not SQL: its expressions' plans are cached, where a SQL
-- function returning a record is planned again on every call (~0.5 ms).
create function ab_accepted_window(p_clock_date date, p_settings jsonb,
                                   out first_day date, out last_day date)
language plpgsql stable as $$
declare
  today date := coalesce(p_clock_date, (now() at time zone 'UTC')::date);
begin
  first_day := today - make_interval(
    years => ab_accepted_years(p_settings #> '{accepted_dates,years_before}', 10));
  last_day := today + make_interval(
    years => ab_accepted_years(p_settings #> '{accepted_dates,years_after}', 2));
end $$;

-- One statement-level check: each book in the statement is read once, however
-- many entries it inserts. A trigger of its own beside journal_entries_inserted.
create function ab_entries_accepted_dates() returns trigger language plpgsql
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
create trigger journal_entries_accepted_dates after insert on journal_entries
  referencing new table as new_entries
  for each statement execute function ab_entries_accepted_dates();
