"""Direct-debit collection (SEPA Core and ACH), as pure rules: who is collected,
which file fields each debit gets, the entries a collection and its return
post, and what a return code does to the mandate.

Worked example (EUR book, three invoices of 100.00, 200.00, 50.00 collected
by SEPA on 2026-03-02, the 200.00 one returned with AM04):

- the run: one payment per invoice, `Assets:Clearing:SEPA` 100.00 | AR 100.00
  (and so on), allocated to its invoice, so each invoice reads paid;
- the return: AR 200.00 | Clearing:SEPA 200.00 on the day of the return, its
  AR posting `via payment:<id>` like the payment's, so the invoice's amount
  paid falls back and 200.00 is due again (the invoice is open for a retry);
- the bank's credit of the run (350.00, or 150.00 net of the return): Bank |
  Clearing:SEPA, when reconciliation sees that line — clearing ends at 0.

Rules:

- **Who.** Finalized invoices still open with an amount due, due on or
  before `as_of`, in EUR (SEPA) or USD (ACH), of customers whose default
  payment method — or, without a default, their only attached one — is an
  active SEPA mandate (SEPA) or US bank account (ACH). An invoice already in
  an unsettled collection is left out (and the database refuses a second).
- **Amount**: what the invoice still owes.
- **Sequence** (SEPA): FRST for a mandate's first collection (every debit of
  that mandate in that run), RCUR after; a FRST rejected before settlement
  (pain.002) makes the next one FRST again.
- **SEC code** (ACH): PPD for an individual's account (consumer), CCD for a
  company's, from the account's `account_holder_type`.
- **Dates.** The run posts on the book's today; the debit is requested for
  the later of `as_of` and the next business day (Monday–Friday).
- **Returns** reverse the payment (above) and set the mandate's state from
  the reason code (RETURN_STATES): the account or authority is gone →
  `inactive` or `revoked` (never collected again until replaced); anything
  else, e.g. insufficient funds (AM04, R01), leaves it `active` so the
  reopened invoice is collected by the next run.
- **Return fee** (book setting `direct_debit_return_fee`, an amount in the
  invoice's currency): a one-off invoice "Direct debit return fee" to the
  customer, on its usual terms and tax — its own document, so
  the reopened invoice keeps its original total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billing.payment_methods import add_business_days
from billing.postings import AR, BANK, invoice_doc, payment_doc
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money

__all__ = [
    "CLEARING",
    "CURRENCY",
    "METHOD",
    "PM_TYPE",
    "RETURN_STATES",
    "SCHEMES",
    "ReturnOutcome",
    "collection_date",
    "end_to_end_id",
    "mandate_state_after",
    "return_debit_entry",
    "return_entry",
    "sec_code",
    "settlement_entry",
]

SCHEMES = ("sepa", "ach")
CLEARING = {"sepa": "Assets:Clearing:SEPA", "ach": "Assets:Clearing:ACH"}
CURRENCY = {"sepa": "EUR", "ach": "USD"}
PM_TYPE = {"sepa": "sepa_debit", "ach": "us_bank_account"}
# The payment's `method`: also the key of billing.postings.PAYMENT_ACCOUNTS.
METHOD = {"sepa": "sepa_debit", "ach": "ach_debit"}

# Reason code → the mandate's (or bank account's) state after the return.
RETURN_STATES: dict[str, str] = {
    # SEPA (ISO 20022 external status reason codes)
    "AC01": "inactive",  # incorrect account number
    "AC04": "inactive",  # account closed
    "AC06": "inactive",  # account blocked
    "AC13": "inactive",  # debtor account is a consumer account (B2B)
    "AG01": "inactive",  # transaction forbidden on this account
    "BE05": "inactive",  # unrecognised creditor
    "MD01": "revoked",  # no valid mandate
    "MD02": "revoked",  # mandate data missing or incorrect
    "MD06": "revoked",  # refund requested by the debtor (disputes the debit)
    "MD07": "revoked",  # debtor deceased
    "SL01": "revoked",  # specific service offered by the debtor's bank (blocked creditor)
    # ACH return codes
    "R02": "inactive",  # account closed
    "R03": "inactive",  # no account / unable to locate
    "R04": "inactive",  # invalid account number
    "R05": "revoked",  # unauthorized debit to a consumer account (corporate SEC)
    "R07": "revoked",  # authorization revoked by customer
    "R10": "revoked",  # not known or not authorized
    "R16": "inactive",  # account frozen
    "R20": "inactive",  # non-transaction account
    "R29": "revoked",  # corporate customer advises not authorized
}
# Everything else (AM04 / R01 insufficient funds, MS02 / MS03 refusals, R09
# uncollected funds, R08 payment stopped, …) leaves the mandate active.


@dataclass(frozen=True, slots=True)
class ReturnOutcome:
    mandate_state: str  # active, inactive or revoked
    retry: bool  # the reopened invoice is collected by the next run


def mandate_state_after(code: str | None) -> ReturnOutcome:
    state = RETURN_STATES.get((code or "").upper(), "active")
    return ReturnOutcome(state, state == "active")


def sec_code(account_holder_type: str) -> str:
    """PPD for consumers (individual accounts), CCD for companies."""
    return "CCD" if account_holder_type == "company" else "PPD"


def collection_date(today: date, as_of: date) -> date:
    """The later of `as_of` and the next business day after today."""
    return max(as_of, add_business_days(today, 1))


def end_to_end_id(transaction_id: object) -> str:
    """`DD` and the transaction's 32 hex digits: unique, 34 characters (SEPA allows 35)."""
    return "DD" + str(transaction_id).replace("-", "").upper()


def return_entry(
    transaction_id: object,
    payment_id: object,
    customer: str,
    invoice_id: object,
    on: date,
    clearing: str,
    amount: Money,
    code: str | None,
) -> JournalEntry:
    """AR | Clearing: the collected amount is owed again, and leaves clearing.

    The AR posting is `via payment:<id>` like the payment's own, so the
    invoice's amount paid (billing/postgres/invoices.py) falls back by it."""
    return build_entry(
        on,
        f"Direct debit returned ({code or 'no reason'}) for payment {payment_id}",
        [
            Posting(
                AR, amount, customer, invoice_doc(invoice_id), {"via": f"payment:{payment_id}"}
            ),
            Posting(
                clearing,
                -amount,
                customer,
                payment_doc(payment_id),
                {"via": f"collection_return:{transaction_id}"},
            ),
        ],
        metadata={
            "kind": "collection_return",
            "payment": str(payment_id),
            "collection_transaction": str(transaction_id),
            "return_code": code or "",
        },
        idempotency_key=f"collection_return:{transaction_id}",
    )


def settlement_entry(
    key: str, on: date, clearing: str, amount: Money, reference: str, bank: str = BANK
) -> JournalEntry:
    """Bank | Clearing: the bank credited the collection (a run, or one transaction)."""
    if amount.amount <= Decimal(0):
        raise ValueError("a settlement is a credit to the bank")
    return build_entry(
        on,
        f"Direct debit collection {reference} settled",
        [Posting(bank, amount), Posting(clearing, -amount)],  # the bank's first: line 1
        metadata={"kind": "collection_settlement", "bank_reference": reference},
        idempotency_key=f"collection_settlement:{key}",
    )


def return_debit_entry(
    transaction_id: str, on: date, clearing: str, amount: Money, reference: str, bank: str = BANK
) -> JournalEntry:
    """Clearing | Bank: the bank takes back a returned debit it had already credited."""
    return build_entry(
        on,
        f"Direct debit {reference} returned by the bank",
        [Posting(bank, -amount), Posting(clearing, amount)],  # the bank's first: line 1
        metadata={"kind": "collection_return_debit", "bank_reference": reference},
        idempotency_key=f"collection_return_debit:{transaction_id}",
    )
