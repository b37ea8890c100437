"""Billing's part of `verify`: every invoice's settlement adds up, read from postings.

For each finalized invoice, from its receivable postings (billing/postings.py
conventions): paid (`via` a payment or applied credit) + credited (`via` a
credit note) + written off (`via` write_off, less recoveries) + still due
(the sum of them all) = its total; 0 for a voided one, whose finalization was
reversed. A receivable posting that no billing event explains — a manual
journal, or a superuser's change behind the triggers — breaks the sum.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg

from billing.postings import AR
from billing.usage_accrual import UNBILLED
from billing.wallets import USAGE
from ledger.money import quantum
from ledger.postgres.verify import Discrepancy

# A negative total was booked to customer credit at finalization, with no receivable.
_SETTLEMENT = """
select i.number, i.id, i.total, i.status, i.currency, s.due, s.paid, s.credited, s.written_off
  from invoices i
  left join lateral (
    select coalesce(sum(p.amount), 0) as due,
           coalesce(-sum(p.amount) filter (where p.dimensions->>'via' like 'payment:%%'
                                              or p.dimensions->>'via' like 'credit:%%'), 0)
             as paid,
           coalesce(-sum(p.amount) filter (where p.dimensions->>'via' like 'credit_note:%%'), 0)
             as credited,
           coalesce(-sum(p.amount) filter (where p.dimensions->>'via' = 'write_off'
                                              or p.dimensions->>'via' like 'recovery:%%'), 0)
             as written_off
      from postings p
     where p.book_id = i.book_id and p.document = 'invoice:' || i.id::text
       and p.account_id = (select id from accounts where book_id = %(book)s and name = %(ar)s)
  ) s on true
 where i.book_id = %(book)s and i.status <> 'draft' and i.total >= 0
   and s.due + s.paid + s.credited + s.written_off
       <> case when i.status = 'void' then 0 else i.total end
 order by i.number, i.id
"""


def verify_invoices(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    rows = conn.execute(_SETTLEMENT, {"book": book_id, "ar": AR}).fetchall()
    found = []
    for number, invoice_id, total, status, currency, due, paid, credited, written_off in rows:
        q = quantum(currency)
        paid, credited, written_off, due = (
            x.quantize(q) for x in (paid, credited, written_off, due)
        )
        expected = (Decimal(0) if status == "void" else total).quantize(q)
        found.append(
            Discrepancy(
                "invoice_settlement",
                f"invoice {number or invoice_id}",
                f"paid {paid} + credited {credited} + written off {written_off} + due {due}"
                f" = {paid + credited + written_off + due} {currency},"
                f" but the invoice's total is {expected} ({status})",
            )
        )
    return found


# The rating sub-ledger ties to its summary: per run and currency, the rated
# CDRs' amounts = what the run credited to Income:Usage.
_CDR_RATINGS = """
with rated as (
  select run_id as run, currency, sum(amount) as amount from cdr_ratings
   where book_id = %(book)s group by 1, 2
), posted as (
  select (substr(p.dimensions->>'via', 12))::uuid as run, p.currency, -sum(p.amount) as amount
    from postings p
   where p.book_id = %(book)s and p.dimensions->>'via' like 'cdr_rating:%%'
     and p.account_id = (select id from accounts where book_id = %(book)s and name = %(usage)s)
   group by 1, 2
)
select coalesce(r.run, p.run), coalesce(r.currency, p.currency),
       coalesce(r.amount, 0), coalesce(p.amount, 0)
  from rated r full join posted p on p.run = r.run and p.currency = r.currency
 where coalesce(r.amount, 0) <> coalesce(p.amount, 0)
 order by 1, 2
"""


def verify_cdr_ratings(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    rows = conn.execute(_CDR_RATINGS, {"book": book_id, "usage": USAGE}).fetchall()
    return [
        Discrepancy(
            "cdr_rating_tie",
            f"cdr rating run {run}",
            f"rated CDRs sum to {rated} {currency} but the run posted {posted} to {USAGE}",
        )
        for run, currency, rated, posted in rows
    ]


# The usage part of Unbilled, re-derived: what the accrual runs and the invoices left
# accrued (usage_accruals), plus the postpaid rated CDRs no invoice billed yet, per
# currency = the Unbilled postings marked as usage (`usage` dimension, or a rating run's).
_USAGE_UNBILLED = """
with derived as (
  select currency, sum(amount) as amount from (
    select currency, amount from usage_accruals where book_id = %(book)s
    union all
    select r.currency, r.amount from cdrs c
      join cdr_ratings r on r.book_id = c.book_id and r.cdr_id = c.id
      join telecom_subscribers s on s.book_id = c.book_id and s.subscriber = c.subscriber
     where c.book_id = %(book)s and s.wallet_id is null
       and not exists (select 1 from cdr_invoices b where b.book_id = c.book_id
                       and b.cdr_id = c.id)
  ) d group by 1
), posted as (
  select p.currency, sum(p.amount) as amount from postings p
   where p.book_id = %(book)s
     and p.account_id = (select id from accounts where book_id = %(book)s and name = %(unbilled)s)
     and (p.dimensions ? 'usage' or p.dimensions->>'via' like 'cdr_rating:%%')
   group by 1
)
select coalesce(d.currency, p.currency), coalesce(d.amount, 0), coalesce(p.amount, 0)
  from derived d full join posted p on p.currency = d.currency
 where coalesce(d.amount, 0) <> coalesce(p.amount, 0)
 order by 1
"""


def verify_usage_unbilled(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    rows = conn.execute(_USAGE_UNBILLED, {"book": book_id, "unbilled": UNBILLED}).fetchall()
    return [
        Discrepancy(
            "usage_unbilled",
            f"{UNBILLED} ({currency})",
            f"accrued usage not yet invoiced is {derived} {currency} but the usage postings"
            f" to {UNBILLED} sum to {posted}",
        )
        for currency, derived, posted in rows
    ]
