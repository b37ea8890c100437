-- Bank statements and reconciliation matches (revision 0004).
-- What the bank sent is kept as sent: statements and lines are append-only.
-- A match is a record of its own beside the ledger (never an edit of it);
-- undoing it stamps undone_at/released_at and keeps the history.

create trigger bank_statements_append_only before update or delete on bank_statements
  for each row execute function ab_forbid_change();
create trigger bank_statements_no_truncate before truncate on bank_statements
  for each statement execute function ab_forbid_change();
create trigger bank_statement_lines_append_only before update or delete on bank_statement_lines
  for each row execute function ab_forbid_change();
create trigger bank_statement_lines_no_truncate before truncate on bank_statement_lines
  for each statement execute function ab_forbid_change();

-- At commit: a live match's statement lines and postings sit on the match's
-- account and currency and agree in sum; it links at least two items.
create function ab_match_balanced() returns trigger language plpgsql as $$
declare
  m record;
  line_sum numeric;
  posting_sum numeric;
  items integer;
  stray integer;
begin
  select * into m from statement_matches where book_id = new.book_id and id = new.id;
  if m.undone_at is not null then
    return null;
  end if;
  select coalesce(sum(l.amount), 0), count(*),
         count(*) filter (where l.account_id <> m.account_id or l.currency <> m.currency)
    into line_sum, items, stray
    from statement_match_lines x
    join bank_statement_lines l on l.book_id = x.book_id and l.id = x.line_id
   where x.book_id = m.book_id and x.match_id = m.id;
  if stray > 0 then
    raise exception 'match %: a statement line is on another account or currency', m.id
      using errcode = 'check_violation', constraint = 'statement_matches_consistent';
  end if;
  select coalesce(sum(p.amount), 0), items + count(*),
         count(*) filter (where p.account_id <> m.account_id or p.currency <> m.currency)
    into posting_sum, items, stray
    from statement_match_postings x
    join postings p on p.book_id = x.book_id and p.entry_id = x.entry_id
                   and p.line_no = x.line_no
   where x.book_id = m.book_id and x.match_id = m.id;
  if stray > 0 then
    raise exception 'match %: a posting is on another account or currency', m.id
      using errcode = 'check_violation', constraint = 'statement_matches_consistent';
  end if;
  if items < 2 then
    raise exception 'match % links % item(s); a match links at least two', m.id, items
      using errcode = 'check_violation', constraint = 'statement_matches_balanced';
  end if;
  if line_sum <> posting_sum or line_sum <> m.amount then
    raise exception 'match %: statement lines sum to %, postings to %; they must agree',
      m.id, line_sum, posting_sum
      using errcode = 'check_violation', constraint = 'statement_matches_balanced';
  end if;
  return null;
end $$;
create constraint trigger statement_matches_balanced after insert on statement_matches
  deferrable initially deferred
  for each row execute function ab_match_balanced();

-- Links join a match only in the transaction that created it (the check above
-- ran on exactly what the match holds).
create function ab_match_links_inserted() returns trigger language plpgsql as $$
begin
  if exists (select 1 from new_links x
               join statement_matches m on m.book_id = x.book_id and m.id = x.match_id
              where m.txid <> (pg_current_xact_id())::text::bigint) then
    raise exception 'a committed match cannot gain lines or postings; undo it and match again'
      using errcode = 'check_violation', constraint = 'statement_matches_closed';
  end if;
  return null;
end $$;
create trigger statement_match_lines_inserted after insert on statement_match_lines
  referencing new table as new_links
  for each statement execute function ab_match_links_inserted();
create trigger statement_match_postings_inserted after insert on statement_match_postings
  referencing new table as new_links
  for each statement execute function ab_match_links_inserted();

-- Undo is the only change: once undone, a match stays undone; nothing else moves.
create function ab_match_undo() returns trigger language plpgsql as $$
begin
  if (to_jsonb(new) - 'undone_at' - 'undone_by') is distinct from
     (to_jsonb(old) - 'undone_at' - 'undone_by')
     or old.undone_at is not null or new.undone_at is null then
    raise exception 'match %: only undoing a live match is allowed', old.id
      using errcode = 'check_violation', constraint = 'statement_matches_undo_only';
  end if;
  return new;
end $$;
create trigger statement_matches_undo_only before update on statement_matches
  for each row execute function ab_match_undo();
create trigger statement_matches_no_delete before delete on statement_matches
  for each row execute function ab_forbid_change();

create function ab_match_link_release() returns trigger language plpgsql as $$
begin
  if (to_jsonb(new) - 'released_at') is distinct from (to_jsonb(old) - 'released_at')
     or old.released_at is not null or new.released_at is null then
    raise exception 'a match link can only be released, once'
      using errcode = 'check_violation', constraint = 'statement_matches_undo_only';
  end if;
  return new;
end $$;
create trigger statement_match_lines_release_only before update on statement_match_lines
  for each row execute function ab_match_link_release();
create trigger statement_match_postings_release_only before update on statement_match_postings
  for each row execute function ab_match_link_release();
create trigger statement_match_lines_no_delete before delete on statement_match_lines
  for each row execute function ab_forbid_change();
create trigger statement_match_postings_no_delete before delete on statement_match_postings
  for each row execute function ab_forbid_change();

grant select, insert on bank_statements, bank_statement_lines, statement_matches,
  statement_match_lines, statement_match_postings to activebilling_app;
grant select, insert, update (name, mapping) on csv_mappings to activebilling_app;
grant update (undone_at, undone_by) on statement_matches to activebilling_app;
grant update (released_at) on statement_match_lines, statement_match_postings
  to activebilling_app;
