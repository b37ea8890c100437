"""Revenue-cycle reports over the ledger's postings (billing/healthcare/reports.py
defines each figure): denials by payer and CARC, days in AR, net collection rate,
expected vs actual payment per payer contract. AR by payer is in healthcare.py."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from billing.errors import InvalidBillingRequest
from billing.healthcare.entries import PATIENT_SERVICES, REMITTANCE_CLEARING
from billing.healthcare.remittance import (
    CONTRACTUAL,
    DENIALS,
    RECEIVABLE_PATIENT,
    RECEIVABLE_PAYER,
)
from billing.healthcare.reports import days_in_ar, expected_allowed, ratio
from billing.postgres.healthcare import _all
from ledger.postgres.books import get_book

Row = dict[str, Any]
MAX_WINDOW_DAYS = 3660


def _window(date_from: date, date_to: date) -> None:
    if date_to < date_from:
        raise InvalidBillingRequest(f"to ({date_to}) is before from ({date_from})")
    if (date_to - date_from).days > MAX_WINDOW_DAYS:
        raise InvalidBillingRequest(f"a report window is at most {MAX_WINDOW_DAYS} days")


def _payer_names(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, str]:
    rows = conn.execute("select id::text, name from payers where book_id = %s", (book_id,))
    return dict(rows.fetchall())


def _account_sum(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    accounts: list[str],
    date_from: date | None,
    date_to: date,
    currency: str,
    document_like: str = "%",
) -> Decimal:
    row = conn.execute(
        "select coalesce(sum(p.amount), 0) from postings p join accounts a on a.id = p.account_id"
        " where p.book_id = %(book)s and a.book_id = %(book)s and a.name = any(%(accounts)s)"
        " and p.currency = %(currency)s and p.effective_date <= %(to)s"
        " and (%(from)s::date is null or p.effective_date >= %(from)s::date)"
        " and coalesce(p.document, '') like %(like)s",
        {"book": book_id, "accounts": accounts, "currency": currency, "from": date_from,
         "to": date_to, "like": document_like},
    ).fetchone()  # fmt: skip
    assert row is not None
    return Decimal(row[0])


# --- denials ----------------------------------------------------------------------------

_LAST_ADJUDICATION = """
select distinct on (e.metadata->>'claim') e.metadata->>'claim' as claim,
       e.metadata->>'claim_status' as status, c.payer_id::text as payer
  from journal_entries e
  join claims c on c.book_id = e.book_id and c.id = (e.metadata->>'claim')::uuid
 where e.book_id = %(book)s and e.metadata->>'kind' = 'claim_remittance'
   and e.effective_date between %(from)s and %(to)s
 order by e.metadata->>'claim', e.recorded_at desc, e.id desc
"""

_DENIAL_POSTINGS = """
select p.dimensions->>'payer' as payer, p.dimensions->>'group' as grp,
       p.dimensions->>'carc' as carc, count(distinct p.dimensions->>'claim') as claims,
       sum(p.amount) as amount
  from postings p join accounts a on a.id = p.account_id
 where p.book_id = %(book)s and a.book_id = %(book)s and a.name = %(denials)s
   and p.effective_date between %(from)s and %(to)s
 group by 1, 2, 3
having sum(p.amount) <> 0
 order by 1, 2, 3
"""


def denials(conn: psycopg.Connection, book_id: uuid.UUID, date_from: date, date_to: date) -> Row:
    """Claims adjudicated (by an 835 posted in the window) and denied, per payer and
    per (group, CARC) of the denial write-offs."""
    _window(date_from, date_to)
    params = {"book": book_id, "from": date_from, "to": date_to, "denials": DENIALS}
    adjudicated: dict[str, int] = defaultdict(int)
    denied: dict[str, int] = defaultdict(int)
    for r in _all(conn, _LAST_ADJUDICATION, params):
        adjudicated[r["payer"]] += 1
        denied[r["payer"]] += r["status"] == "denied"
    carcs: dict[str, list[Row]] = defaultdict(list)
    overall: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 2)
    for r in _all(conn, _DENIAL_POSTINGS, params):
        carcs[r["payer"]].append(r)
        overall[(r["grp"], r["carc"])][0] += r["claims"]
        overall[(r["grp"], r["carc"])][1] += Decimal(r["amount"])
    names = _payer_names(conn, book_id)
    total = sum(adjudicated.values())
    payers = []
    for payer in sorted(adjudicated, key=lambda p: (names.get(p, p), p)):
        payers.append(
            {
                "payer": payer,
                "name": names.get(payer, payer),
                "claims_adjudicated": adjudicated[payer],
                "claims_denied": denied[payer],
                "denial_rate": ratio(Decimal(denied[payer]), Decimal(adjudicated[payer])),
                "denied_amount": sum((Decimal(c["amount"]) for c in carcs[payer]), Decimal(0)),
                "by_carc": [
                    {
                        "group": c["grp"],
                        "carc": c["carc"],
                        "claims": c["claims"],
                        "rate": ratio(Decimal(c["claims"]), Decimal(adjudicated[payer])),
                        "amount": Decimal(c["amount"]),
                    }
                    for c in carcs[payer]
                ],
            }
        )
    return {
        "from": date_from,
        "to": date_to,
        "claims_adjudicated": total,
        "claims_denied": sum(denied.values()),
        "denial_rate": ratio(Decimal(sum(denied.values())), Decimal(total)),
        "payers": payers,
        "by_carc": [
            {
                "group": g,
                "carc": c,
                "claims": int(v[0]),
                "rate": ratio(v[0], Decimal(total)),
                "amount": v[1],
            }
            for (g, c), v in sorted(overall.items())
        ],
    }


# --- days in AR, net collection rate ---------------------------------------------------


def days_in_ar_report(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date, days: int = 90
) -> Row:
    if not 1 <= days <= MAX_WINDOW_DAYS:
        raise InvalidBillingRequest(f"days must be between 1 and {MAX_WINDOW_DAYS}")
    currency = get_book(conn, book_id).base_currency
    ar = _account_sum(conn, book_id, [RECEIVABLE_PAYER, RECEIVABLE_PATIENT], None, as_of, currency)
    first = as_of - timedelta(days=days - 1)
    charges = -_account_sum(conn, book_id, [PATIENT_SERVICES], first, as_of, currency)
    return {
        "as_of": as_of,
        "currency": currency,
        "window": {"from": first, "to": as_of, "days": days},
        "ar": ar,
        "charges": charges,
        "average_daily_charges": ratio(charges, Decimal(days), Decimal("0.01")),
        "days_in_ar": days_in_ar(ar, charges, days),
    }


def net_collection_rate(
    conn: psycopg.Connection, book_id: uuid.UUID, date_from: date, date_to: date
) -> Row:
    _window(date_from, date_to)
    currency = get_book(conn, book_id).base_currency
    charges = -_account_sum(conn, book_id, [PATIENT_SERVICES], date_from, date_to, currency)
    contractual = _account_sum(conn, book_id, [CONTRACTUAL], date_from, date_to, currency)
    payer_paid = _account_sum(
        conn, book_id, [REMITTANCE_CLEARING], date_from, date_to, currency, "claim:%"
    )
    row = conn.execute(
        "select (select coalesce(sum(amount), 0) from patient_payments where book_id = %(b)s"
        "        and currency = %(c)s and received_on between %(f)s and %(t)s),"
        "       (select coalesce(sum(amount), 0) from patient_refunds where book_id = %(b)s"
        "        and currency = %(c)s and paid_on between %(f)s and %(t)s)",
        {"b": book_id, "c": currency, "f": date_from, "t": date_to},
    ).fetchone()
    assert row is not None
    patient_paid, refunded = Decimal(row[0]), Decimal(row[1])
    payments = payer_paid + patient_paid - refunded
    return {
        "from": date_from,
        "to": date_to,
        "currency": currency,
        "charges": charges,
        "contractual_adjustments": contractual,
        "payer_payments": payer_paid,
        "patient_payments": patient_paid,
        "patient_refunds": refunded,
        "payments": payments,
        "net_collection_rate": ratio(payments, charges - contractual),
    }


# --- expected vs actual -----------------------------------------------------------------

_CLAIMS = """
select c.id::text as claim, c.control_number, c.payer_id::text as payer, c.encounter_id,
       e.fee_schedule_id, e.date_of_service,
       coalesce(sum(p.amount) filter (where a.name = %(clearing)s), 0) as paid,
       coalesce(sum(p.amount) filter (where p.dimensions->>'group' = 'PR'
                                        and a.name = %(patient)s), 0) as patient_responsibility
  from claims c
  join encounters e on e.book_id = c.book_id and e.id = c.encounter_id
  join postings p on p.book_id = c.book_id and p.document = 'claim:' || c.id::text
  join accounts a on a.id = p.account_id
 where c.book_id = %(book)s and e.date_of_service between %(from)s and %(to)s
   and c.adjudication is not null
 group by 1, 2, 3, 4, 5, 6
 order by e.date_of_service, c.control_number
"""


def expected_vs_actual(
    conn: psycopg.Connection, book_id: uuid.UUID, date_from: date, date_to: date
) -> Row:
    """Adjudicated claims with a date of service in the window, per payer: the
    contracted (allowed) amounts against what the 835 allowed and paid."""
    _window(date_from, date_to)
    claims = _all(
        conn,
        _CLAIMS,
        {"book": book_id, "from": date_from, "to": date_to, "clearing": REMITTANCE_CLEARING,
         "patient": RECEIVABLE_PATIENT},
    )  # fmt: skip
    lines: dict[Any, list[tuple[str, str, Decimal]]] = defaultdict(list)
    for r in _all(
        conn,
        "select encounter_id, code, modifiers, units from encounter_charges"
        " where book_id = %s and encounter_id = any(%s) order by line_no",
        (book_id, [c["encounter_id"] for c in claims]),
    ):
        lines[r["encounter_id"]].append((r["code"], ":".join(r["modifiers"]), Decimal(r["units"])))
    contracts: dict[tuple[str, str], dict[tuple[str, str], Decimal]] = defaultdict(dict)
    for r in _all(
        conn,
        "select fee_schedule_id::text as schedule, payer_id::text as payer, code, modifiers,"
        " amount from fee_schedule_allowed where book_id = %s",
        (book_id,),
    ):
        contracts[(r["schedule"], r["payer"])][(r["code"], r["modifiers"])] = Decimal(r["amount"])
    names = _payer_names(conn, book_id)
    per: dict[str, Row] = {}
    for c in claims:
        payer = per.setdefault(
            c["payer"],
            {
                "payer": c["payer"],
                "name": names.get(c["payer"], c["payer"]),
                "claims": 0,
                "claims_without_contract": 0,
                "expected_allowed": Decimal(0),
                "actual_allowed": Decimal(0),
                "expected_payment": Decimal(0),
                "actual_payment": Decimal(0),
                "variance": Decimal(0),
                "detail": [],
            },
        )
        contracted = contracts.get((str(c["fee_schedule_id"]), c["payer"]), {})
        expected = expected_allowed(lines[c["encounter_id"]], contracted)
        if expected is None:
            payer["claims_without_contract"] += 1
            continue
        paid, pr = Decimal(c["paid"]), Decimal(c["patient_responsibility"])
        detail = {
            "claim": c["claim"],
            "control_number": c["control_number"],
            "date_of_service": c["date_of_service"],
            "expected_allowed": expected,
            "actual_allowed": paid + pr,
            "expected_payment": expected - pr,
            "actual_payment": paid,
            "variance": paid - (expected - pr),
        }
        payer["claims"] += 1
        for key in ("expected_allowed", "actual_allowed", "expected_payment", "actual_payment",
                    "variance"):  # fmt: skip
            payer[key] += detail[key]
        payer["detail"].append(detail)
    return {
        "from": date_from,
        "to": date_to,
        "payers": sorted(per.values(), key=lambda p: (p["name"], p["payer"])),
    }
