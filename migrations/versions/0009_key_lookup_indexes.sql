-- Revision 0005 (ledgerdb).
--
-- 1. Key lookups stay key lookups whatever the statistics and cached plans.
--
-- The triggers look rows up by key: a posting's entry by (book_id, id), its
-- own row by (book_id, entry_id, line_no), its account by (book_id, id). A
-- session caches those plans (plpgsql keeps one per statement; a query without
-- parameters is never re-planned until the table's statistics change). Planned
-- while the tables were empty, any index that leads with book_id costs the
-- same as the primary key, and PostgreSQL took a smaller one: the lookup became
-- a scan of every entry (posting) of the book with the key as a filter, so a
-- long-lived session on a new book slowed down quadratically.
--
-- So on the tables a posting writes or reads, the only indexes that lead with
-- book_id alone are the primary keys and partial indexes whose predicate a key
-- lookup does not state (the planner may use a partial index only when the
-- query implies its predicate). Every other index leads with its selective
-- column; book-wide scans have the primary key.

-- An entry is reversed at most once; only reversals need the index.
alter table journal_entries drop constraint uq_journal_entries_book_id_reverses_entry_id;
create unique index uq_journal_entries_book_id_reverses_entry_id
  on journal_entries (book_id, reverses_entry_id) where reverses_entry_id is not null;

-- Idempotency keys: the key first (ON CONFLICT (book_id, idempotency_key)
-- infers a unique index by its set of columns, not their order).
alter table journal_entries drop constraint uq_journal_entries_book_id_idempotency_key;
alter table journal_entries add constraint uq_journal_entries_idempotency_key_book_id
  unique (idempotency_key, book_id);

-- Entries in recorded order per book (list_entries). recorded_at is never
-- null: the predicate is there so that only a query stating it can use the
-- index, and a lookup by (book_id, id) never can.
drop index ix_journal_entries_book_id_recorded_at;
create index ix_journal_entries_book_id_recorded_at
  on journal_entries (book_id, recorded_at) where recorded_at is not null;

-- An account's postings by date: every query names the account (whose id is
-- unique on its own), so the account leads.
drop index ix_postings_book_id_account_id_effective_date;
create index ix_postings_account_id_book_id_effective_date
  on postings (account_id, book_id, effective_date);

-- Accounts by code (only those that have one) and by name (name first).
alter table accounts drop constraint uq_accounts_book_id_code;
create unique index uq_accounts_book_id_code on accounts (book_id, code) where code is not null;
alter table accounts drop constraint uq_accounts_book_id_name;
alter table accounts add constraint uq_accounts_name_book_id unique (name, book_id);

-- The same for billing's and reconciliation's trigger lookups: lines join
-- their invoice by (book_id, id) (ab_invoice_lines_frozen, once per billing
-- run statement), matches are read by (book_id, id) (ab_match_balanced, a
-- generic plan after five), and both tables grow with the book.
alter table invoices drop constraint uq_invoices_book_id_number;
create unique index uq_invoices_book_id_number on invoices (book_id, number)
  where number is not null;  -- drafts have none
alter table invoices drop constraint uq_invoices_book_id_subscription_id_subscription_period_start;
alter table invoices add constraint uq_invoices_subscription_id_subscription_period_start_book_id
  unique (subscription_id, subscription_period_start, book_id);
drop index ix_invoices_book_id_customer_id_due_date;
create index ix_invoices_customer_id_book_id_due_date on invoices (customer_id, book_id, due_date);
drop index ix_invoices_book_id_status;
create index ix_invoices_status_book_id on invoices (status, book_id);
drop index ix_statement_matches_book_id_account_id_created_at;
create index ix_statement_matches_account_id_book_id_created_at
  on statement_matches (account_id, book_id, created_at);
drop index ix_bank_statement_lines_book_id_account_id_booking_date;
create index ix_bank_statement_lines_account_id_book_id_booking_date
  on bank_statement_lines (account_id, book_id, booking_date);

-- 2. Postings that name a billing document are billing's alone.
--
-- An invoice's amount due is the sum of its receivable postings; a manual
-- journal naming `invoice:<id>` could settle it behind the billing services'
-- backs (ACCOUNTING.md, "Manual journals and billing documents"). The billing
-- services mark their transactions (billing/postgres/posting.py sets
-- activebilling.writer = 'billing', transaction-local); any other statement
-- inserting such a posting is refused. The mark is a declaration, not a
-- credential: it keeps the API, the CLI and sessions that do not claim to be
-- billing from writing billing's postings. The kinds are billing.postings'
-- BILLING_DOCUMENT_KINDS.
create function ab_postings_billing_documents() returns trigger language plpgsql as $$
declare
  bad record;
begin
  if coalesce(current_setting('activebilling.writer', true), '') = 'billing' then
    return null;
  end if;
  select entry_id, line_no, document into bad
    from new_postings
   where document ~ '^(invoice|payment|credit_note|refund):'
   limit 1;
  if found then
    raise exception 'posting % of entry % names %, a billing document: such postings are written only by the billing services',
      bad.line_no, bad.entry_id, bad.document
      using errcode = 'check_violation', constraint = 'postings_billing_document';
  end if;
  return null;
end $$;
create trigger postings_billing_documents after insert on postings
  referencing new table as new_postings
  for each statement execute function ab_postings_billing_documents();
