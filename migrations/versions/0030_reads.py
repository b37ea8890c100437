"""Statement matches are checked at commit once per transaction, set-based.

Revision 0004 checked each new match (its lines and postings on its account
and currency, at least two items, equal sums) with a deferred row trigger,
three queries per match at commit, and six per-row foreign keys (a lookup and
a KEY SHARE lock on the parent each): most of an auto-match run of 100,000
lines. Now a statement trigger on the match and link tables checks what the
foreign keys checked, for the whole statement at once, and inserts one
ticket per book and transaction in `statement_match_tickets`; the ticket's deferred
constraint trigger checks every live match of the transaction (found by its
`txid`, now indexed and refused when not the database's own) in one
statement, then removes the ticket, so a later insert in the same
transaction (e.g. after `SET CONSTRAINTS … IMMEDIATE`) checks again. Same
rules, same constraint names; the application role cannot touch the tickets.

Revision ID: 0030
Revises: 0029
Create Date: 2026-11-30 19:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
create table statement_match_tickets (
  book_id uuid not null,
  txid bigint not null,
  constraint pk_statement_match_tickets primary key (book_id, txid)
);
revoke all on statement_match_tickets from public;
create index ix_statement_matches_txid on statement_matches (txid);

-- What the foreign keys of revision 0004 checked per row (a lookup and a KEY
-- SHARE lock on the parent for every match and link), checked per statement;
-- the parents (accounts, entries, postings, statement lines, matches) cannot
-- be deleted. Links join only a match of their own transaction (revision
-- 0004's statement_matches_closed, checked in the same pass). Then hold one
-- ticket per transaction for the commit-time check.
create function ab_match_queue() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  me bigint := (pg_current_xact_id())::text::bigint;
  bad record;
begin
  if tg_table_name = 'statement_matches' then
    -- the commit-time check finds the transaction's matches by txid
    if exists (select 1 from new_rows where txid <> me) then
      raise exception 'txid of a statement match is set by the database'
        using errcode = 'check_violation', constraint = 'statement_matches_txid';
    end if;
    select n.id, a.id is null as no_account into bad
      from new_rows n
      left join accounts a on a.book_id = n.book_id and a.id = n.account_id
      left join journal_entries e on e.book_id = n.book_id and e.id = n.entry_id
     where a.id is null or (n.entry_id is not null and e.id is null)
     limit 1;
    if found and bad.no_account then
      raise exception 'statement match % names an account that does not exist in this book',
        bad.id
        using errcode = 'foreign_key_violation',
              constraint = 'fk_statement_matches_book_id_account_id_accounts';
    elsif found then
      raise exception 'statement match % names a journal entry that does not exist in this book',
        bad.id
        using errcode = 'foreign_key_violation',
              constraint = 'fk_statement_matches_book_id_entry_id_journal_entries';
    end if;
  elsif tg_table_name = 'statement_match_lines' then
    select n.match_id, m.id is null as no_match, m.txid <> me as closed into bad
      from new_rows n
      left join statement_matches m on m.book_id = n.book_id and m.id = n.match_id
      left join bank_statement_lines l on l.book_id = n.book_id and l.id = n.line_id
     where m.id is null or l.id is null or m.txid <> me
     limit 1;
    if found and bad.closed then
      raise exception 'a committed match cannot gain lines or postings; undo it and match again'
        using errcode = 'check_violation', constraint = 'statement_matches_closed';
    elsif found and bad.no_match then
      raise exception 'match % does not exist in this book', bad.match_id
        using errcode = 'foreign_key_violation',
              constraint = 'fk_statement_match_lines_book_id_match_id_statement_matches';
    elsif found then
      raise exception 'match % names a statement line that does not exist in this book',
        bad.match_id
        using errcode = 'foreign_key_violation',
              constraint = 'fk_statement_match_lines_book_id_line_id_bank_statement_lines';
    end if;
  else
    select n.match_id, m.id is null as no_match, m.txid <> me as closed into bad
      from new_rows n
      left join statement_matches m on m.book_id = n.book_id and m.id = n.match_id
      left join postings p on p.book_id = n.book_id and p.entry_id = n.entry_id
                          and p.line_no = n.line_no
     where m.id is null or p.entry_id is null or m.txid <> me
     limit 1;
    if found and bad.closed then
      raise exception 'a committed match cannot gain lines or postings; undo it and match again'
        using errcode = 'check_violation', constraint = 'statement_matches_closed';
    elsif found and bad.no_match then
      raise exception 'match % does not exist in this book', bad.match_id
        using errcode = 'foreign_key_violation',
              constraint = 'fk_statement_match_postings_book_id_match_id_statement_matches';
    elsif found then
      raise exception 'match % names a posting that does not exist in this book', bad.match_id
        using errcode = 'foreign_key_violation',
              constraint = 'fk_statement_match_postings_book_id_entry_id_line_no_postings';
    end if;
  end if;
  insert into statement_match_tickets (book_id, txid)
    select distinct book_id, me from new_rows on conflict do nothing;
  return null;
end $$;
create trigger statement_matches_queued after insert on statement_matches
  referencing new table as new_rows
  for each statement execute function ab_match_queue();
create trigger statement_match_lines_queued after insert on statement_match_lines
  referencing new table as new_rows
  for each statement execute function ab_match_queue();
create trigger statement_match_postings_queued after insert on statement_match_postings
  referencing new table as new_rows
  for each statement execute function ab_match_queue();

-- At commit: every live queued match's statement lines and postings sit on
-- the match's account and currency and agree in sum; it links at least two
-- items (revision 0004's rules, for all of them in one statement).
create function ab_matches_balanced() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  me bigint := (pg_current_xact_id())::text::bigint;
  bad record;
begin
  delete from statement_match_tickets where book_id = new.book_id and txid = me;
  -- Every match of the transaction, again after a later insert (checking one
  -- twice is harmless). Per match, lateral lookups by primary key: linear
  -- whatever the planner believes of tables written in this very transaction
  -- (a join planned on their stale counts went quadratic).
  execute $q$
    select m.id, ls.items + ps.items as items, ls.total as line_sum, ps.total as posting_sum,
           ls.stray as line_stray, ps.stray as posting_stray
      from statement_matches m
     cross join lateral (
       select coalesce(sum(l.amount), 0) as total, count(*) as items,
              count(*) filter (where l.account_id <> m.account_id
                                  or l.currency <> m.currency) as stray
         from statement_match_lines x
         join bank_statement_lines l on l.book_id = x.book_id and l.id = x.line_id
        where x.book_id = m.book_id and x.match_id = m.id) ls
     cross join lateral (
       select coalesce(sum(p.amount), 0) as total, count(*) as items,
              count(*) filter (where p.account_id <> m.account_id
                                  or p.currency <> m.currency) as stray
         from statement_match_postings x
         join postings p on p.book_id = x.book_id and p.entry_id = x.entry_id
                        and p.line_no = x.line_no
        where x.book_id = m.book_id and x.match_id = m.id) ps
     where m.book_id = $2 and m.txid = $1 and m.undone_at is null
       and (ls.stray > 0 or ps.stray > 0 or ls.items + ps.items < 2
            or ls.total <> ps.total or ls.total <> m.amount)
     limit 1
  $q$ into bad using me, new.book_id;
  if bad.id is not null then
    if bad.line_stray > 0 then
      raise exception 'match %: a statement line is on another account or currency', bad.id
        using errcode = 'check_violation', constraint = 'statement_matches_consistent';
    elsif bad.posting_stray > 0 then
      raise exception 'match %: a posting is on another account or currency', bad.id
        using errcode = 'check_violation', constraint = 'statement_matches_consistent';
    elsif bad.items < 2 then
      raise exception 'match % links % item(s); a match links at least two', bad.id, bad.items
        using errcode = 'check_violation', constraint = 'statement_matches_balanced';
    else
      raise exception 'match %: statement lines sum to %, postings to %; they must agree',
        bad.id, bad.line_sum, bad.posting_sum
        using errcode = 'check_violation', constraint = 'statement_matches_balanced';
    end if;
  end if;
  return null;
end $$;
create constraint trigger statement_matches_balanced after insert on statement_match_tickets
  deferrable initially deferred
  for each row execute function ab_matches_balanced();

drop trigger statement_matches_balanced on statement_matches;
drop trigger statement_match_lines_inserted on statement_match_lines;
drop trigger statement_match_postings_inserted on statement_match_postings;
alter table statement_matches
  drop constraint fk_statement_matches_book_id_account_id_accounts,
  drop constraint fk_statement_matches_book_id_entry_id_journal_entries;
alter table statement_match_lines
  drop constraint fk_statement_match_lines_book_id_match_id_statement_matches,
  drop constraint fk_statement_match_lines_book_id_line_id_bank_statement_lines;
alter table statement_match_postings
  drop constraint fk_statement_match_postings_book_id_match_id_statement_matches,
  drop constraint fk_statement_match_postings_book_id_entry_id_line_no_postings;
"""

DOWNGRADE = r"""
alter table statement_matches
  add constraint fk_statement_matches_book_id_account_id_accounts
    foreign key (book_id, account_id) references accounts (book_id, id),
  add constraint fk_statement_matches_book_id_entry_id_journal_entries
    foreign key (book_id, entry_id) references journal_entries (book_id, id);
alter table statement_match_lines
  add constraint fk_statement_match_lines_book_id_match_id_statement_matches
    foreign key (book_id, match_id) references statement_matches (book_id, id),
  add constraint fk_statement_match_lines_book_id_line_id_bank_statement_lines
    foreign key (book_id, line_id) references bank_statement_lines (book_id, id);
alter table statement_match_postings
  add constraint fk_statement_match_postings_book_id_match_id_statement_matches
    foreign key (book_id, match_id) references statement_matches (book_id, id),
  add constraint fk_statement_match_postings_book_id_entry_id_line_no_postings
    foreign key (book_id, entry_id, line_no) references postings (book_id, entry_id, line_no);
drop trigger statement_matches_queued on statement_matches;
drop trigger statement_match_lines_queued on statement_match_lines;
drop trigger statement_match_postings_queued on statement_match_postings;
drop table statement_match_tickets;
drop index ix_statement_matches_txid;
drop function ab_matches_balanced();
drop function ab_match_queue();
create constraint trigger statement_matches_balanced after insert on statement_matches
  deferrable initially deferred
  for each row execute function ab_match_balanced();
create trigger statement_match_lines_inserted after insert on statement_match_lines
  referencing new table as new_links
  for each statement execute function ab_match_links_inserted();
create trigger statement_match_postings_inserted after insert on statement_match_postings
  referencing new table as new_links
  for each statement execute function ab_match_links_inserted();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
