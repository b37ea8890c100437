"""The statement triggers on match links look for a bad link with a full join, not a probe per link.

Revision 0030's `ab_match_queue` found a bad link (a missing match, line or
posting, or a committed match) with `... limit 1`. For the limit the planner
expected to meet a bad row after a few rows and probed the statement line (or
posting) and the match by primary key for every link: 180,000 index probes for
an auto-match of 90,000 lines, where none is ever bad. Ordering the bad rows
(`order by n.match_id limit 1`) makes it cost the whole join, so for a large
insert it weighs hash and merge joins against the probes (on 90,000 links it
joins the matches and statement lines, and still probes postings); a small
insert (a manual match) probes as before. The error names the lowest bad
match instead of an arbitrary one. Same checks.

Revision ID: 0036
Revises: 0035
Create Date: 2026-11-30 23:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0036"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
create or replace function ab_match_queue() returns trigger language plpgsql
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
     order by n.match_id limit 1;
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
     order by n.match_id limit 1;
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
"""

DOWNGRADE = r"""
create or replace function ab_match_queue() returns trigger language plpgsql
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
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
