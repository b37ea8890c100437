"""A wallet hold and a capture, each one round trip: two PL/pgSQL functions.

`ab_wallet_hold` and `ab_wallet_capture` do what billing/postgres/wallets.py did in
six and seven statements from Python: lock the wallet row, write down its expired
holds, read its balance and open holds, decide, write the hold or post the capture,
and flag a low-balance crossing. They run as the caller (security invoker), so
every grant, ledger trigger, seal and balance check applies as to any insert. At
READ COMMITTED each statement of a volatile function takes a new snapshot, so the
reads after the row lock see everything the previous holder of the lock committed.

A refusal writes nothing but the expired holds and answers an `outcome` (Python
raises the same problem as before): `not_found`, `lapsed`, `invalid`, `short`
(hold); `not_found`, `no_reservation`, `not_held`, `invalid`, `over` (capture).
The capture's journal entry comes built by Python (billing.wallets' rule, the
ledger's row arrays) and goes in with the ledger's own insert statement.

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-01 06:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0045"
down_revision: str | None = "0044"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What both functions answer: the outcome, the wallet's figures a refusal names,
# whether the change crossed the low-balance threshold, and the reservation.
OUT = """
  out outcome text, out w_available numeric, out w_valid_until date, out w_today date,
  out fell_low boolean,
  out r_id uuid, out r_requested numeric, out r_amount numeric, out r_captured numeric,
  out r_status text, out r_expires_at timestamptz, out r_closed_at timestamptz,
  out r_entry_id uuid, out r_created_at timestamptz"""

FUNCTIONS = f"""
-- PL/pgSQL, not SQL: a session plans its query once (an SQL function called from
-- PL/pgSQL is planned again at every call).
create function ab_wallet_figures(p_book uuid, w wallets, out balance numeric, out held numeric)
language plpgsql as $$
begin
  balance := coalesce((select -g.balance from guarded_balances g where g.book_id = p_book
                         and g.account_id = w.account_id and g.currency = w.currency), 0);
  held := coalesce((select sum(r.amount) from wallet_reservations r where r.book_id = p_book
                      and r.wallet_id = w.id and r.status = 'held' and r.expires_at > now()), 0);
end $$;

-- billing.wallets.falls_low: one event per crossing below the threshold; re-armed
-- at or above it. The outbox event is Python's (it carries the wallet's JSON).
create function ab_wallet_changed(p_book uuid, w wallets, p_available numeric)
returns boolean language plpgsql as $$
begin
  if w.low_balance_threshold is null then
    return false;
  end if;
  if p_available < w.low_balance_threshold and not w.low_balance then
    insert into wallet_events (book_id, id, wallet_id, kind, available, threshold)
    values (p_book, gen_random_uuid(), w.id, 'low_balance', p_available,
            w.low_balance_threshold);
    update wallets set low_balance = true where book_id = p_book and id = w.id;
    return true;
  end if;
  if w.low_balance and p_available >= w.low_balance_threshold then
    update wallets set low_balance = false where book_id = p_book and id = w.id;
  end if;
  return false;
end $$;

create function ab_wallet_locked(p_book uuid, p_wallet uuid) returns wallets
language plpgsql as $$
declare
  w wallets;
begin
  select * into w from wallets where book_id = p_book and id = p_wallet for update;
  if found then
    update wallet_reservations set status = 'expired', closed_at = now()
     where book_id = p_book and wallet_id = p_wallet and status = 'held'
       and expires_at <= now();
  end if;
  return w;
end $$;

-- Hold: `p_today` is the caller's date; else, with `p_wall_today`, the book's
-- date (its simulated clock, else that day), read only for a wallet with a validity.
create function ab_wallet_hold(
  p_book uuid, p_wallet uuid, p_id uuid, p_requested numeric, p_ttl integer,
  p_partial boolean, p_today date, p_wall_today date, {OUT})
language plpgsql as $$
declare
  w wallets;
  f record;
begin
  w := ab_wallet_locked(p_book, p_wallet);
  if w.id is null then
    outcome := 'not_found';
    return;
  end if;
  if w.valid_until is not null and (p_today is not null or p_wall_today is not null) then
    w_today := coalesce(p_today, (select b.clock_date from books b where b.id = p_book),
                        p_wall_today);
    if w.valid_until < w_today then  -- billing.wallets.lapses_on
      outcome := 'lapsed';
      w_valid_until := w.valid_until;
      return;
    end if;
  end if;
  if p_requested <= 0 then
    outcome := 'invalid';
    return;
  end if;
  f := ab_wallet_figures(p_book, w);
  w_available := f.balance - f.held;
  -- billing.wallets.grant
  if p_requested <= w_available then
    r_amount := p_requested;
  elsif p_partial and w_available > 0 then
    r_amount := w_available;
  else
    outcome := 'short';
    return;
  end if;
  insert into wallet_reservations as r (book_id, id, wallet_id, requested, amount, expires_at)
  values (p_book, p_id, p_wallet, p_requested, r_amount, now() + make_interval(secs => p_ttl))
  returning r.id, r.requested, r.status, r.expires_at, r.created_at
       into r_id, r_requested, r_status, r_expires_at, r_created_at;
  w_available := w_available - r_amount;
  fell_low := ab_wallet_changed(p_book, w, w_available);
  outcome := 'held';
end $$;

-- Capture: the entry's rows as the ledger's insert takes them (one entry, its
-- postings); none when nothing is captured.
create function ab_wallet_capture(
  p_book uuid, p_wallet uuid, p_reservation uuid, p_amount numeric,
  p_account uuid, p_currency text, p_customer uuid,
  p_ids text, p_dates text, p_memos text, p_metadata text, p_keys text, p_hashes text,
  p_reverses text, p_entry_ids text, p_line_nos text, p_accounts text, p_amounts text,
  p_currencies text, p_customers text, p_documents text, p_dimensions text, {OUT})
language plpgsql as $$
declare
  w wallets;
  f record;
  r wallet_reservations;
begin
  w := ab_wallet_locked(p_book, p_wallet);
  if w.id is null then
    outcome := 'not_found';
    return;
  end if;
  if (w.account_id, w.currency, w.customer_id) is distinct from (p_account, p_currency, p_customer)
  then
    raise exception 'wallet % is not the one the caller built its entry for', p_wallet
      using errcode = 'check_violation';
  end if;
  select * into r from wallet_reservations
   where book_id = p_book and id = p_reservation and wallet_id = p_wallet;
  if not found then
    outcome := 'no_reservation';
    return;
  end if;
  r_status := r.status;
  r_amount := r.amount;
  if r.status <> 'held' then
    outcome := 'not_held';
    return;
  end if;
  if p_amount is null or p_amount < 0 then
    outcome := 'invalid';
    return;
  end if;
  if p_amount > r.amount then
    outcome := 'over';
    return;
  end if;
  -- The reservation records what the entry takes from the wallet, to the cent.
  if p_amount is distinct from (
       select coalesce(sum(a.amount), 0)
         from unnest(p_accounts::uuid[], p_amounts::numeric[]) as a(account_id, amount)
        where a.account_id = p_account) then
    raise exception 'the capture entry does not take % from wallet %', p_amount, p_wallet
      using errcode = 'check_violation';
  end if;
  f := ab_wallet_figures(p_book, w);
  if p_amount > 0 then
    -- billing.postgres.posting.post_entry: billing's transaction, the ledger's insert.
    perform set_config('activebilling.writer', 'billing', true);
    with entry_rows as (
      select *
        from unnest(p_ids::uuid[], p_dates::date[], p_memos::text[], p_metadata::text[],
                    p_keys::text[], p_hashes::text[], p_reverses::text[])
             with ordinality as t(id, effective_date, memo, metadata, idempotency_key,
                                  request_hash, reverses, n)
    ), inserted as (
      insert into journal_entries
             (book_id, id, effective_date, memo, metadata, idempotency_key, request_hash,
              reverses_entry_id)
      select p_book, e.id, e.effective_date, e.memo, coalesce(e.metadata::jsonb, '{{}}'),
             e.idempotency_key, e.request_hash, e.reverses::uuid
        from entry_rows e
       order by e.n
      returning journal_entries.id, journal_entries.effective_date
    ), posting_rows as (
      insert into postings
             (book_id, entry_id, line_no, account_id, amount, currency, effective_date,
              customer_id, document, dimensions)
      select p_book, p.entry_id, p.line_no, p.account_id, p.amount, p.currency,
             i.effective_date, p.customer_id, p.document, coalesce(p.dimensions::jsonb, '{{}}')
        from unnest(p_entry_ids::uuid[], p_line_nos::int2[], p_accounts::uuid[],
                    p_amounts::numeric[], p_currencies::text[], p_customers::text[],
                    p_documents::text[], p_dimensions::text[])
             as p(entry_id, line_no, account_id, amount, currency, customer_id, document,
                  dimensions)
        join inserted i on i.id = p.entry_id
      returning 1
    )
    select i.id into r_entry_id from inserted i;
  end if;
  update wallet_reservations as u
     set status = 'captured', captured = p_amount, entry_id = r_entry_id, closed_at = now()
   where u.book_id = p_book and u.id = p_reservation
  returning u.id, u.requested, u.captured, u.status, u.expires_at, u.closed_at, u.created_at
       into r_id, r_requested, r_captured, r_status, r_expires_at, r_closed_at, r_created_at;
  w_available := f.balance - p_amount - (f.held - r.amount);
  fell_low := ab_wallet_changed(p_book, w, w_available);
  outcome := 'captured';
end $$;
"""


def upgrade() -> None:
    op.execute(FUNCTIONS)


def downgrade() -> None:
    op.execute("drop function ab_wallet_capture")
    op.execute("drop function ab_wallet_hold")
    op.execute("drop function ab_wallet_locked")
    op.execute("drop function ab_wallet_changed")
    op.execute("drop function ab_wallet_figures")
