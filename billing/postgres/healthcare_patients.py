"""The patient's side after insurance: statements, payment plans, refunds of credit
balances, small-balance write-offs. Figures are read from postings carrying
`dimensions->>'patient'` (and `->>'encounter'` for what an encounter left the
patient to pay); PHI stays in the healthcare tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from billing.errors import DocumentState, InvalidBillingRequest
from billing.healthcare.entries import (
    PATIENT_PAYMENT_ACCOUNTS,
    REFUNDS_PAYABLE,
    REMITTANCE_CLEARING,
)
from billing.healthcare.patients import (
    SMALL_BALANCE,
    EncounterFigures,
    Installment,
    installment_schedule,
    plan_progress,
    refund_entry,
    small_balance_entry,
    statement_lines,
)
from billing.healthcare.remittance import RECEIVABLE_PATIENT, RECEIVABLE_PAYER
from billing.postgres.healthcare import (
    _all,
    _one,
    get_patient,
    patient_balance,
)
from billing.postgres.ids import parse_id
from billing.postgres.posting import post_entries, post_entry
from ledger.errors import NotFound
from ledger.money import Money, minor_unit_text
from ledger.postgres.books import ensure_account, get_book

Row = dict[str, Any]
ADJUSTMENT_GROUPS = ("CO", "OA", "PI", "CR")


def _lock_patient(conn: psycopg.Connection, book_id: uuid.UUID, patient_id: uuid.UUID) -> None:
    # The same lock patient payments take: each sees what the last one left.
    conn.execute(
        "select 1 from patients where book_id = %s and id = %s for update", (book_id, patient_id)
    )


def credit_balance(conn: psycopg.Connection, book_id: uuid.UUID, patient_id: uuid.UUID) -> Decimal:
    """What the book owes the patient (Refunds-Payable, a credit: shown positive)."""
    row = conn.execute(
        "select coalesce(-sum(p.amount), 0) from postings p join accounts a on a.id = p.account_id"
        " where p.book_id = %s and a.book_id = %s and a.name = %s"
        " and p.dimensions->>'patient' = %s",
        (book_id, book_id, REFUNDS_PAYABLE, str(patient_id)),
    ).fetchone()
    assert row is not None
    return Decimal(row[0])


# --- statements -------------------------------------------------------------------------

_PATIENT_POSTINGS = """
select p.dimensions->>'encounter' as encounter, a.name as account,
       p.dimensions->>'group' as grp, e.metadata->>'kind' as kind, sum(p.amount) as amount
  from postings p join accounts a on a.id = p.account_id
  join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id
 where p.book_id = %(book)s and a.book_id = %(book)s and p.dimensions->>'patient' = %(patient)s
   and p.effective_date <= %(as_of)s
 group by 1, 2, 3, 4
"""


def statement(conn: psycopg.Connection, book_id: uuid.UUID, ref: str, as_of: date) -> Row:
    """What the patient owes per encounter after insurance, as of a day."""
    patient = get_patient(conn, book_id, ref)
    currency = get_book(conn, book_id).base_currency
    encounters = _all(
        conn,
        "select id, date_of_service, total from encounters where book_id = %s"
        " and patient_id = %s and date_of_service <= %s order by date_of_service, id",
        (book_id, patient["id"], as_of),
    )
    rows = _all(
        conn,
        _PATIENT_POSTINGS,
        {
            "book": book_id,
            "patient": str(patient["id"]),
            "as_of": as_of,
        },
    )
    per: dict[str, dict[str, Decimal]] = {
        str(e["id"]): {"paid": Decimal(0), "adjusted": Decimal(0), "patient": Decimal(0)}
        for e in encounters
    }
    payments = write_offs = Decimal(0)
    for r in rows:
        amount = Decimal(r["amount"])
        figures = per.get(r["encounter"] or "")
        if figures is None:
            if r["account"] == RECEIVABLE_PATIENT and r["kind"] == "patient_payment":
                payments -= amount
            elif r["account"] == RECEIVABLE_PATIENT and r["kind"] == "small_balance_write_off":
                write_offs -= amount
            continue
        if r["account"] == REMITTANCE_CLEARING:
            figures["paid"] += amount
        elif r["account"] == RECEIVABLE_PATIENT:
            figures["patient"] += amount
        elif r["grp"] in ADJUSTMENT_GROUPS and r["account"] != RECEIVABLE_PAYER:
            figures["adjusted"] += amount
    lines = statement_lines(
        [
            EncounterFigures(
                str(e["id"]),
                e["date_of_service"],
                Decimal(e["total"]),
                per[str(e["id"])]["paid"],
                per[str(e["id"])]["adjusted"],
                per[str(e["id"])]["patient"],
            )
            for e in encounters
        ],
        payments,
        write_offs,
    )
    received = _all(
        conn,
        "select id, received_on, amount, method from patient_payments where book_id = %s"
        " and patient_id = %s and received_on <= %s order by received_on, created_at",
        (book_id, patient["id"], as_of),
    )
    refunds = _all(
        conn,
        "select id, paid_on, amount, method from patient_refunds where book_id = %s"
        " and patient_id = %s and paid_on <= %s order by paid_on, created_at",
        (book_id, patient["id"], as_of),
    )
    totals = {
        key: sum((Decimal(str(line[key])) for line in lines), Decimal(0))
        for key in ("charges", "insurance_paid", "adjustments", "patient_responsibility")
    }
    plan = active_plan(conn, book_id, patient["id"])
    return {
        "patient": patient,
        "as_of": as_of,
        "currency": currency,
        "encounters": lines,
        "payments": received,
        "refunds": refunds,
        "totals": {
            **totals,
            "payments": payments,
            "write_offs": write_offs,
            "amount_due": patient_balance_as_of(conn, book_id, patient["id"], as_of),
            "credit_balance": credit_balance(conn, book_id, patient["id"]),
        },
        "payment_plan": plan_view(conn, book_id, plan, as_of) if plan else None,
    }


def patient_balance_as_of(
    conn: psycopg.Connection, book_id: uuid.UUID, patient_id: uuid.UUID, as_of: date
) -> Decimal:
    row = conn.execute(
        "select coalesce(sum(p.amount), 0) from postings p join accounts a on a.id = p.account_id"
        " where p.book_id = %s and a.book_id = %s and a.name = %s"
        " and p.dimensions->>'patient' = %s and p.effective_date <= %s",
        (book_id, book_id, RECEIVABLE_PATIENT, str(patient_id), as_of),
    ).fetchone()
    assert row is not None
    return Decimal(row[0])


# --- payment plans ----------------------------------------------------------------------


def active_plan(conn: psycopg.Connection, book_id: uuid.UUID, patient_id: uuid.UUID) -> Row | None:
    return _one(
        conn,
        "select * from payment_plans where book_id = %s and patient_id = %s and status = 'active'"
        " order by created_at desc limit 1",
        (book_id, patient_id),
    )


def create_payment_plan(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, body: Mapping[str, Any], today: date
) -> Row:
    patient = get_patient(conn, book_id, ref)
    _lock_patient(conn, book_id, patient["id"])
    currency = body.get("currency") or get_book(conn, book_id).base_currency
    total = Money.exact(body["total"], currency)
    start: date = body.get("start_date") or today
    schedule = installment_schedule(total, int(body["installments"]), start, body["interval"])
    owed = patient_balance(conn, book_id, patient["id"])
    if total.amount > owed:
        raise InvalidBillingRequest(
            f"the plan's total {total.amount} is more than the patient owes ({owed})"
        )
    if active_plan(conn, book_id, patient["id"]) is not None:
        raise DocumentState("the patient already has an active payment plan")
    plan_id = uuid.uuid4()
    conn.execute(
        "insert into payment_plans (book_id, id, patient_id, total, currency, installments,"
        " start_date, interval) values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (book_id, plan_id, patient["id"], total.amount, currency, len(schedule), start,
         body["interval"]),
    )  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            "insert into payment_plan_installments (book_id, plan_id, seq, due_on, amount)"
            " values (%s, %s, %s, %s, %s)",
            [(book_id, plan_id, i.seq, i.due_on, i.amount) for i in schedule],
        )
    plan = _one(conn, "select * from payment_plans where book_id = %s and id = %s",
                (book_id, plan_id))  # fmt: skip
    assert plan is not None
    return plan_view(conn, book_id, plan, today)


def get_payment_plan(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Row:
    plan = _one(
        conn,
        "select * from payment_plans where book_id = %s and id = %s",
        (book_id, parse_id(ref, "payment plan")),
    )
    if plan is None:
        raise NotFound(f"payment plan {ref!r} does not exist in this book")
    return plan


def plan_paid(conn: psycopg.Connection, book_id: uuid.UUID, plan_id: uuid.UUID) -> Decimal:
    row = conn.execute(
        "select coalesce(sum(amount), 0) from patient_payments where book_id = %s and plan_id = %s",
        (book_id, plan_id),
    ).fetchone()
    assert row is not None
    return Decimal(row[0])


def plan_view(conn: psycopg.Connection, book_id: uuid.UUID, plan: Row, today: date) -> Row:
    installments = [
        Installment(r["seq"], r["due_on"], Decimal(r["amount"]))
        for r in _all(
            conn,
            "select seq, due_on, amount from payment_plan_installments where book_id = %s"
            " and plan_id = %s order by seq",
            (book_id, plan["id"]),
        )
    ]
    paid = min(plan_paid(conn, book_id, plan["id"]), Decimal(plan["total"]))
    progress = plan_progress(installments, paid, today)
    return {
        **plan,
        "paid": paid,
        "remaining": Decimal(plan["total"]) - paid,
        "schedule": progress,
        "missed": [p["seq"] for p in progress if p["status"] == "missed"],
        "as_of": today,
    }


# --- refunds -----------------------------------------------------------------------------


def create_refund(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, body: Mapping[str, Any], today: date
) -> Row:
    """Pay out (part of) the patient's credit balance: Refunds-Payable / cash."""
    patient = get_patient(conn, book_id, ref)
    _lock_patient(conn, book_id, patient["id"])
    currency = body.get("currency") or get_book(conn, book_id).base_currency
    method = body.get("method") or "check"
    if method not in PATIENT_PAYMENT_ACCOUNTS:
        raise InvalidBillingRequest(
            f"method {method!r}: use one of {', '.join(PATIENT_PAYMENT_ACCOUNTS)}"
        )
    credit = credit_balance(conn, book_id, patient["id"])
    if credit <= 0:
        raise DocumentState("the patient has no credit balance to refund")
    asked = body.get("amount")
    amount = Money.exact(asked, currency) if asked else Money(credit, currency)
    if amount.amount <= 0:
        raise InvalidBillingRequest("amount must be positive")
    if amount.amount > credit:
        raise InvalidBillingRequest(
            f"amount {amount.amount} is more than the patient's credit balance ({credit})"
        )
    on: date = body.get("paid_on") or today
    refund_id = uuid.uuid4()
    ensure_account(conn, book_id, REFUNDS_PAYABLE)
    posted = post_entry(
        conn,
        book_id,
        refund_entry(refund_id, patient["id"], amount, PATIENT_PAYMENT_ACCOUNTS[method], on),
    )
    row = _one(
        conn,
        "insert into patient_refunds (book_id, id, patient_id, amount, currency, method, paid_on,"
        " entry_id) values (%s, %s, %s, %s, %s, %s, %s, %s) returning *",
        (book_id, refund_id, patient["id"], amount.amount, currency, method, on, posted.id),
    )
    assert row is not None
    return {**row, "credit_balance": credit_balance(conn, book_id, patient["id"])}


# --- small-balance write-offs ----------------------------------------------------------

_SMALL_BALANCES = """
select p.dimensions->>'patient' as patient,
       sum(p.amount) filter (where p.effective_date <= %(as_of)s) as then,
       sum(p.amount) as now
  from postings p join accounts a on a.id = p.account_id
 where p.book_id = %(book)s and a.book_id = %(book)s and a.name = %(account)s
   and p.currency = %(currency)s and p.dimensions ? 'patient'
 group by 1
"""


def write_off_small_balances(
    conn: psycopg.Connection, book_id: uuid.UUID, body: Mapping[str, Any], today: date
) -> tuple[bool, Row]:
    """Every patient balance above zero and at most `max_amount` on `as_of` (and still
    owed now) is written off, dated `as_of`. The same (as_of, max_amount) run again
    is answered from the first run and posts nothing: (False, summary)."""
    currency = body.get("currency") or get_book(conn, book_id).base_currency
    threshold = Money.exact(body["max_amount"], currency)
    if threshold.amount <= 0:
        raise InvalidBillingRequest("max_amount must be positive")
    as_of: date = body["as_of"]
    if as_of > today:
        raise InvalidBillingRequest(f"as_of {as_of} is after the book's today ({today})")
    run_id = uuid.uuid4()
    taken = conn.execute(
        "insert into small_balance_write_offs (book_id, id, as_of, max_amount, currency, summary)"
        " values (%s, %s, %s, %s, %s, '{}') on conflict do nothing returning id",
        (book_id, run_id, as_of, threshold.amount, currency),
    ).fetchone()
    if taken is None:
        found = _one(
            conn,
            "select summary from small_balance_write_offs where book_id = %s and as_of = %s"
            " and max_amount = %s and currency = %s",
            (book_id, as_of, threshold.amount, currency),
        )
        assert found is not None
        return False, {**found["summary"], "duplicate": True}
    balances = _all(
        conn,
        _SMALL_BALANCES,
        {"book": book_id, "as_of": as_of, "account": RECEIVABLE_PATIENT, "currency": currency},
    )
    candidates = sorted(r["patient"] for r in balances
                        if 0 < Decimal(r["then"] or 0) <= threshold.amount)  # fmt: skip
    if candidates:
        conn.execute(
            "select 1 from patients where book_id = %s and id = any(%s) order by id for update",
            (book_id, [uuid.UUID(p) for p in candidates]),
        )
        balances = _all(
            conn,
            _SMALL_BALANCES,
            {"book": book_id, "as_of": as_of, "account": RECEIVABLE_PATIENT, "currency": currency},
        )  # again under the locks: a payment may have landed meanwhile
    written = []
    for r in sorted(balances, key=lambda x: x["patient"]):
        amount = min(Decimal(r["then"] or 0), Decimal(r["now"]))
        if r["patient"] in candidates and amount > 0:
            written.append((r["patient"], amount))
    if written:
        ensure_account(conn, book_id, SMALL_BALANCE)
        post_entries(
            conn,
            book_id,
            [small_balance_entry(run_id, p, Money(a, currency), as_of) for p, a in written],
        )
    summary = {
        "object": "small_balance_write_off",
        "id": str(run_id),
        "as_of": as_of.isoformat(),
        "max_amount": minor_unit_text(threshold.amount, currency),
        "currency": currency,
        "account": SMALL_BALANCE,
        "patients": [{"patient": p, "amount": minor_unit_text(a, currency)} for p, a in written],
        "total": minor_unit_text(sum((a for _, a in written), Decimal(0)), currency),
        "duplicate": False,
    }
    conn.execute(
        "update small_balance_write_offs set summary = %s where book_id = %s and id = %s",
        (Jsonb(summary), book_id, run_id),
    )
    return True, summary
