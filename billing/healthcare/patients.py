"""The patient's side after insurance, as pure functions: payment plan schedules and
their progress, what a statement shows per encounter, and the entries of refunds
and small-balance write-offs.

Small balances are written off to `Income:Contra:Small-Balance`, not to
`Expenses:Credit-Losses`: leaving a few dollars unbilled is a decision not to
collect made before any collection effort (an administrative adjustment of the
price, like a denial write-off), not a judgement that a debtor cannot pay, so it
reduces net patient revenue instead of showing as bad debt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billing.errors import InvalidBillingRequest
from billing.healthcare.entries import REFUNDS_PAYABLE
from billing.healthcare.remittance import RECEIVABLE_PATIENT
from billing.periods import Interval, anchor_date
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money, allocate

SMALL_BALANCE = "Income:Contra:Small-Balance"
PLAN_INTERVALS = {"weekly": (Interval.WEEK, 1), "biweekly": (Interval.WEEK, 2),
                  "monthly": (Interval.MONTH, 1)}  # fmt: skip
MAX_INSTALLMENTS = 120


@dataclass(frozen=True, slots=True)
class Installment:
    seq: int
    due_on: date
    amount: Decimal


def installment_schedule(total: Money, count: int, start: date, interval: str) -> list[Installment]:
    """`count` installments from `start`, split by largest remainder (earlier ones take
    the odd cent: 100.00 in 3 → 33.34, 33.33, 33.33), dated by the interval."""
    if interval not in PLAN_INTERVALS:
        raise InvalidBillingRequest(
            f"interval {interval!r}: use one of {', '.join(PLAN_INTERVALS)}"
        )
    if not 1 <= count <= MAX_INSTALLMENTS:
        raise InvalidBillingRequest(f"installments must be between 1 and {MAX_INSTALLMENTS}")
    if total.amount <= 0:
        raise InvalidBillingRequest("a payment plan's total must be positive")
    if total.minor_units < count:
        raise InvalidBillingRequest(f"{total.amount} cannot be split into {count} installments")
    unit, step = PLAN_INTERVALS[interval]
    parts = allocate(total, [1] * count)
    return [
        Installment(n + 1, anchor_date(start, unit, step, n), part.amount)
        for n, part in enumerate(parts)
    ]


def plan_progress(
    installments: Sequence[Installment], paid: Decimal, today: date
) -> list[dict[str, object]]:
    """What was paid goes to the installments in order. An installment due before
    today and not fully paid is `missed`; due today or later it is `due` (the next
    one) or `scheduled`."""
    left = paid
    out: list[dict[str, object]] = []
    next_open = True
    for item in installments:
        covered = min(left, item.amount)
        left -= covered
        remaining = item.amount - covered
        if remaining == 0:
            status = "paid"
        elif item.due_on < today:
            status = "missed"
        elif next_open:
            status = "due"
            next_open = False
        else:
            status = "scheduled"
        out.append(
            {
                "seq": item.seq,
                "due_on": item.due_on,
                "amount": item.amount,
                "paid": covered,
                "remaining": remaining,
                "status": status,
            }
        )
    return out


@dataclass(frozen=True, slots=True)
class EncounterFigures:
    encounter: str
    date_of_service: date
    charges: Decimal
    insurance_paid: Decimal
    adjustments: Decimal
    patient_responsibility: Decimal


def statement_lines(
    encounters: Sequence[EncounterFigures], payments: Decimal, write_offs: Decimal
) -> list[dict[str, object]]:
    """Per encounter, oldest first: patient-level payments, then write-offs, applied
    to what the patient owes on each until used up (the ledger keeps them per
    patient; the statement shows where they went)."""
    left = {"payments": payments, "write_offs": write_offs}
    out = []
    for enc in sorted(encounters, key=lambda e: (e.date_of_service, e.encounter)):
        owed = enc.patient_responsibility
        applied: dict[str, Decimal] = {}
        for name in ("payments", "write_offs"):
            take = max(min(left[name], owed), Decimal(0))
            applied[name] = take
            left[name] -= take
            owed -= take
        out.append(
            {
                "encounter": enc.encounter,
                "date_of_service": enc.date_of_service,
                "charges": enc.charges,
                "insurance_paid": enc.insurance_paid,
                "adjustments": enc.adjustments,
                "patient_responsibility": enc.patient_responsibility,
                "payments": applied["payments"],
                "write_offs": applied["write_offs"],
                "balance": owed,
            }
        )
    return out


def refund_entry(
    refund_id: object, patient_id: object, amount: Money, cash_account: str, on: date
) -> JournalEntry:
    """A patient's credit balance paid back: Refunds-Payable / cash."""
    dims = {"patient": str(patient_id), "via": f"patient_refund:{refund_id}"}
    return build_entry(
        on,
        f"Patient refund {refund_id}",
        [
            Posting(REFUNDS_PAYABLE, amount, None, None, dims),
            Posting(cash_account, -amount, None, None, dims),
        ],
        metadata={"kind": "patient_refund", "patient_refund": str(refund_id)},
        idempotency_key=f"patient_refund:{refund_id}",
    )


def small_balance_entry(
    run_id: object, patient_id: object, amount: Money, on: date
) -> JournalEntry:
    """A small patient balance written off: Income:Contra:Small-Balance / Receivable:Patient."""
    dims = {"patient": str(patient_id), "via": f"small_balance_write_off:{run_id}"}
    return build_entry(
        on,
        f"Small-balance write-off {run_id}",
        [
            Posting(SMALL_BALANCE, amount, None, None, dims),
            Posting(RECEIVABLE_PATIENT, -amount, None, None, dims),
        ],
        metadata={"kind": "small_balance_write_off", "run": str(run_id)},
        idempotency_key=f"small_balance_write_off:{run_id}:{patient_id}",
    )
