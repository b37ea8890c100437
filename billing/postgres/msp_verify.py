"""Services' part of `verify`: retainer prepaid hours and WIP re-derived from the
time sub-ledger, against the ledger's postings, per client.

- Prepaid-Hours: the retainer fee of every invoiced period (from the
  contract's terms), less every approved entry's drawn hours and every closed
  period's expired hours at the contract's hourly value (fee ÷ included hours),
  equals the client's Prepaid-Hours postings that name a contract or a
  retainer-fee line.
- Unbilled (WIP): the accrued amount of approved, not yet invoiced entries plus
  completed milestones not yet invoiced plus what percent-complete contracts
  earned beyond what they billed equals the client's Unbilled postings that
  name a contract or a time/milestone/progress invoice line.
- Deferred-Revenue of percent-complete contracts: what they billed beyond what
  they earned equals the client's Deferred-Revenue postings naming a contract.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

import psycopg

from billing.msp import contract_position, minutes_value
from billing.postgres.msp import PREPAID_HOURS, UNBILLED, get_contract
from billing.postgres.msp_progress import DEFERRED
from ledger.money import Money
from ledger.postgres.verify import Discrepancy

_LEDGER = """
select p.customer_id, sum(p.amount)
  from postings p
  left join invoice_lines l
    on p.document = 'invoice:' || l.invoice_id::text and l.book_id = p.book_id
   and p.dimensions->>'line' = l.line_no::text
 where p.book_id = %(book)s
   and p.account_id = (select id from accounts where book_id = %(book)s and name = %(account)s)
   and (p.document like 'contract:%%' or l.kind = any(%(kinds)s))
 group by p.customer_id
"""


def _ledger(
    conn: psycopg.Connection, book_id: uuid.UUID, account: str, kinds: list[str]
) -> dict[str, Decimal]:
    rows = conn.execute(_LEDGER, {"book": book_id, "account": account, "kinds": kinds})
    return {str(c): Decimal(a) for c, a in rows if c is not None}


def _prepaid(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, Decimal]:
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for (contract_id,) in conn.execute(
        "select id from contracts where book_id = %s and type = 'retainer'", (book_id,)
    ).fetchall():
        contract = get_contract(conn, book_id, str(contract_id))
        customer, c = str(contract.customer_id), contract.currency
        hourly = contract.terms.hourly_value()
        invoiced = conn.execute(
            "select count(*) from contract_periods where book_id = %s and contract_id = %s"
            " and invoice_id is not null",
            (book_id, contract.id),
        ).fetchone()
        fee = Money(contract.terms.retainer_fee, c).round_to_minor().amount
        expected[customer] -= fee * (invoiced[0] if invoiced else 0)
        for (minutes,) in conn.execute(
            "select drawn_minutes from time_entries where book_id = %s and contract_id = %s"
            " and drawn_minutes <> 0 union all select expired_minutes from contract_periods"
            " where book_id = %s and contract_id = %s and expired_minutes > 0",
            (book_id, contract.id, book_id, contract.id),
        ).fetchall():
            expected[customer] += minutes_value(minutes, hourly, c).amount
    return expected


def _unbilled(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, Decimal]:
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for customer, amount in conn.execute(
        "select customer_id, accrued_amount from time_entries where book_id = %s"
        " and status = 'approved' and accrued_amount > 0"
        " union all select c.customer_id, round(m.amount, 2) from contract_milestones m"
        " join contracts c on c.book_id = m.book_id and c.id = m.contract_id"
        " where m.book_id = %s and m.completed_on is not null and m.invoice_id is null",
        (book_id, book_id),
    ).fetchall():
        expected[str(customer)] += Decimal(amount)
    for customer, earned, billed in _progress_states(conn, book_id):
        expected[customer] += contract_position(earned, billed)[0]
    return expected


def _progress_states(
    conn: psycopg.Connection, book_id: uuid.UUID
) -> list[tuple[str, Decimal, Decimal]]:
    """Each percent-complete contract's latest (customer, earned, billed)."""
    rows = conn.execute(
        "select distinct on (p.contract_id) c.customer_id, p.earned, p.billed"
        " from contract_progress p join contracts c"
        " on c.book_id = p.book_id and c.id = p.contract_id"
        " where p.book_id = %s order by p.contract_id, p.seq desc",
        (book_id,),
    ).fetchall()
    return [(str(c), Decimal(e), Decimal(b)) for c, e, b in rows]


def _deferred(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, Decimal]:
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for customer, earned, billed in _progress_states(conn, book_id):
        expected[customer] -= contract_position(earned, billed)[1]
    return expected


def verify_services(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    checks: tuple[tuple[str, str, list[str], dict[str, Decimal]], ...] = (
        ("retainer_prepaid_hours", PREPAID_HOURS, ["retainer_fee"], _prepaid(conn, book_id)),
        ("unbilled_time", UNBILLED, ["time", "milestone", "progress"], _unbilled(conn, book_id)),
        ("contract_deferred_revenue", DEFERRED, [], _deferred(conn, book_id)),
    )
    for name, account, kinds, expected in checks:
        ledger = _ledger(conn, book_id, account, kinds)
        for customer in sorted(set(expected) | set(ledger)):
            want, have = expected.get(customer, Decimal(0)), ledger.get(customer, Decimal(0))
            if want != have:
                found.append(
                    Discrepancy(
                        name,
                        f"customer {customer}",
                        f"the time sub-ledger gives {account} {want}, the postings {have}",
                    )
                )
    return found
