-- A stored statement adds up (revision 0007).
-- `line_ids` lists, in order, the stored line of every line of the statement:
-- a line first seen in this statement, or the same bank line stored by an
-- earlier, overlapping statement of the account. At commit the listed lines
-- must all exist on the statement's account and currency, be as many as the
-- statement has (one stored line never stands for two of its lines), and,
-- when the statement has both balances, lead from the opening to the closing
-- balance. Statements stored before this revision have no list (NULL).

create function ab_statement_complete() returns trigger language plpgsql as $$
declare
  s record;
  total numeric;
  found integer;
  stray integer;
begin
  select * into s from bank_statements where book_id = new.book_id and id = new.id;
  if s.line_ids is null then
    raise exception 'bank statement %: the stored lines are not listed', s.id
      using errcode = 'check_violation', constraint = 'bank_statements_complete';
  end if;
  select coalesce(sum(l.amount), 0), count(*),
         count(*) filter (where l.account_id <> s.account_id or l.currency <> s.currency)
    into total, found, stray
    from bank_statement_lines l
   where l.book_id = s.book_id and l.id = any(s.line_ids);
  if cardinality(s.line_ids) <> s.line_count or found <> s.line_count or stray > 0 then
    raise exception 'bank statement % has % line(s) but % distinct stored line(s) on its account',
      s.id, s.line_count, found - stray
      using errcode = 'check_violation', constraint = 'bank_statements_complete';
  end if;
  if s.opening_balance is not null and s.closing_balance is not null
     and s.opening_balance + total <> s.closing_balance then
    raise exception 'bank statement %: opening % + lines % <> closing %',
      s.id, s.opening_balance, total, s.closing_balance
      using errcode = 'check_violation', constraint = 'bank_statements_balanced';
  end if;
  return null;
end $$;
create constraint trigger bank_statements_complete after insert on bank_statements
  deferrable initially deferred
  for each row execute function ab_statement_complete();
