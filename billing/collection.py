"""Collection by gateway, as pure rules: the entries a gateway's money movements
post (ACCOUNTING.md, "What each event posts") and the card retry schedule.

Example: a 108.00 invoice (100.00 + 8.00 tax) charged by card through the
fake gateway, fee 2.9 % + 0.30:

- the charge: Clearing 108.00 | AR 108.00 (the payment entry, billing.postings);
- its fee, a second entry: Payment-Fees 3.43 | Clearing 3.43;
- the payout: Bank 104.57 | Clearing 104.57 — clearing is back to zero;
- a dispute opened with a 15.00 fee: Disputed-Funds 108.00, Dispute-Fees 15.00
  | Clearing 123.00; won: Clearing 108.00 | Disputed-Funds 108.00; lost: the
  split of a refund (Income:Contra:Disputes for the earned part,
  Deferred-Revenue for the unearned part, Tax-Payable for the tax) |
  Disputed-Funds 108.00.

Retries (book setting `dunning.retry_days`, default 3, 5, 7): a card that
fails is tried again that many days after the *first* failure; the next
action is the first of those days after the last attempt, while the invoice
is still due.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from billing.credit_notes import LineCredit, split_postings
from billing.postings import BANK, CUSTOMER_CREDIT, payment_doc
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money

__all__ = [
    "CONTRA_DISPUTES",
    "DEFAULT_RETRY_DAYS",
    "DISPUTED_FUNDS",
    "DISPUTE_FEES",
    "PAYMENT_FEES",
    "dispute_lost_entry",
    "dispute_opened_entry",
    "dispute_won_entry",
    "fee_entry",
    "next_retry",
    "payout_entry",
]

PAYMENT_FEES = "Expenses:Payment-Fees"
DISPUTE_FEES = "Expenses:Dispute-Fees"
DISPUTED_FUNDS = "Assets:Disputed-Funds"
CONTRA_DISPUTES = "Income:Contra:Disputes"
DEFAULT_RETRY_DAYS = (3, 5, 7)


def next_retry(
    attempts: Sequence[tuple[date, str]], retry_days: Sequence[int] = DEFAULT_RETRY_DAYS
) -> date | None:
    """The day of the next retry after failed attempts ((day, outcome), oldest first).

    None when the last attempt succeeded or is pending, or every retry was used.
    """
    if not attempts or attempts[-1][1] in ("succeeded", "pending"):
        return None
    failures = [day for day, outcome in attempts if outcome in ("failed", "requires_action")]
    first, last = failures[0], attempts[-1][0]
    for days in sorted(retry_days):
        day = first + timedelta(days=days)
        if day > last:
            return day
    return None


def fee_entry(
    payment_id: object, customer: str, on: date, clearing: str, fee: Money, charge_id: str
) -> JournalEntry:
    """Payment-Fees | Clearing for a charge's gateway fee (a second entry beside the payment)."""
    doc = payment_doc(payment_id)
    via = {"via": f"payment_fee:{payment_id}"}
    return build_entry(
        on,
        f"Gateway fee for charge {charge_id}",
        [
            Posting(PAYMENT_FEES, fee, customer, doc, via),
            Posting(clearing, -fee, customer, doc, via),
        ],
        metadata={"kind": "payment_fee", "payment": str(payment_id), "charge": charge_id},
        idempotency_key=f"payment_fee:{payment_id}",
    )


def payout_entry(
    payout_id: object, on: date, clearing: str, amount: Money, bank_reference: str | None = None
) -> JournalEntry:
    """Bank | Clearing for the net paid out (a negative net is the gateway debiting the bank).
    `bank_reference`: what the bank statement line carries, for reconciliation's
    bank_reference rule — the gateway's own payout id (Stripe's po_…), else ours."""
    reference = bank_reference or str(payout_id)
    metadata = {"kind": "payout", "payout": str(payout_id), "bank_reference": reference}
    return build_entry(
        on,
        f"Payout {reference}",
        [Posting(BANK, amount), Posting(clearing, -amount)],
        metadata=metadata,
        idempotency_key=f"payout:{payout_id}",
    )


def dispute_opened_entry(
    dispute_id: object,
    payment_id: object,
    customer: str,
    on: date,
    clearing: str,
    amount: Money,
    fee: Money,
) -> JournalEntry:
    doc = payment_doc(payment_id)
    via = {"via": f"dispute:{dispute_id}"}
    postings = [Posting(DISPUTED_FUNDS, amount, customer, doc, via)]
    if not fee.is_zero():
        postings.append(Posting(DISPUTE_FEES, fee, customer, doc, via))
    postings.append(Posting(clearing, -(amount + fee), customer, doc, via))
    return build_entry(
        on,
        f"Dispute {dispute_id} opened on payment {payment_id}",
        postings,
        metadata={"kind": "dispute", "dispute": str(dispute_id), "payment": str(payment_id)},
        idempotency_key=f"dispute:{dispute_id}",
    )


def dispute_won_entry(
    dispute_id: object, payment_id: object, customer: str, on: date, clearing: str, amount: Money
) -> JournalEntry:
    doc = payment_doc(payment_id)
    via = {"via": f"dispute:{dispute_id}"}
    return build_entry(
        on,
        f"Dispute {dispute_id} won",
        [
            Posting(clearing, amount, customer, doc, via),
            Posting(DISPUTED_FUNDS, -amount, customer, doc, via),
        ],
        metadata={"kind": "dispute_won", "dispute": str(dispute_id), "payment": str(payment_id)},
        idempotency_key=f"dispute_closed:{dispute_id}",
    )


def dispute_lost_entry(
    dispute_id: object,
    payment_id: object,
    customer: str,
    on: date,
    amount: Money,
    split: Sequence[tuple[str, Sequence[LineCredit]]],
    from_credit: Money,
    unrecovered: Money | None = None,
) -> JournalEntry:
    """The refund split (contra-revenue Income:Contra:Disputes) | Disputed-Funds; what
    no invoice line or credit still held (`unrecovered`) is contra-revenue alone."""
    doc = payment_doc(payment_id)
    via = f"dispute:{dispute_id}"
    postings: list[Posting] = []
    if not from_credit.is_zero():
        postings.append(Posting(CUSTOMER_CREDIT, from_credit, customer, doc, {"via": via}))
    for invoice_id, credits in split:
        postings.extend(split_postings(invoice_id, customer, credits, CONTRA_DISPUTES, via))
    if unrecovered is not None and not unrecovered.is_zero():
        postings.append(Posting(CONTRA_DISPUTES, unrecovered, customer, doc, {"via": via}))
    postings.append(Posting(DISPUTED_FUNDS, -amount, customer, doc, {"via": via}))
    return build_entry(
        on,
        f"Dispute {dispute_id} lost",
        postings,
        metadata={"kind": "dispute_lost", "dispute": str(dispute_id), "payment": str(payment_id)},
        idempotency_key=f"dispute_closed:{dispute_id}",
    )
