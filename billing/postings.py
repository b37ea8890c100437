"""What each billing event posts (ACCOUNTING.md), as pure entry builders.

Conventions every billing module relies on, so that every billing figure is
a query over postings:

- `Posting.customer` is the customer id on every receivable, customer-credit
  and revenue posting.
- `Posting.document` names the document the posting belongs to:
  `invoice:<id>`, `payment:<id>`, `credit_note:<id>`, `refund:<id>`.
  Receivable postings always carry the *invoice* they settle.
- `dimensions["line"]` is the invoice line number on revenue and
  deferred-revenue postings; `dimensions["via"]` says what moved the money:
  `finalization`, `payment:<id>`, `credit:<source document>`,
  `credit_note:<id>`, `write_off`, `recognition`, `refund:<id>`.

So an invoice's amount due is the sum of its receivable postings; its amount
paid is minus the sum of those `via` a payment or applied credit; a
customer's credit balance is minus the sum of their Customer-Credit postings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money

AR = "Assets:Receivable:Trade"
DEFERRED = "Liabilities:Deferred-Revenue"
CUSTOMER_CREDIT = "Liabilities:Customer-Credit"
TAX = "Liabilities:Tax-Payable"
BANK = "Assets:Bank:Operating"
CONTRA_REFUNDS = "Income:Contra:Refunds"
CONTRA_CREDIT_NOTES = "Income:Contra:Credit-Notes"
CREDIT_LOSSES = "Expenses:Credit-Losses"

PAYMENT_ACCOUNTS = {
    "bank_transfer": BANK,
    "check": BANK,
    "cash": BANK,
    "card": "Assets:Clearing:Manual",
    # Charges through a gateway land in its clearing account (ACCOUNTING.md 1010).
    "fake": "Assets:Clearing:Fake",
    "stripe": "Assets:Clearing:Stripe",
    # Direct debits collected by a collection run (billing.direct_debit).
    "sepa_debit": "Assets:Clearing:SEPA",
    "ach_debit": "Assets:Clearing:ACH",
}


# The documents billing writes; postings naming one are billing's alone
# (ACCOUNTING.md, "Manual journals and billing documents").
# Revision 0009's postings trigger holds the same list (0011 adds `contract`:
# retainer draw-down and breakage postings; 0015 the healthcare documents).
BILLING_DOCUMENT_KINDS = (
    "invoice",
    "payment",
    "credit_note",
    "refund",
    "contract",
    # healthcare
    "encounter",
    "claim",
    "remittance",
    "patient_payment",
)


def document_kind(document: str) -> str | None:
    """`invoice` for `invoice:<id>`; None when the text has no `<kind>:` prefix."""
    kind, sep, _ = document.partition(":")
    return kind if sep else None


def invoice_doc(invoice_id: object) -> str:
    return f"invoice:{invoice_id}"


def payment_doc(payment_id: object) -> str:
    return f"payment:{payment_id}"


def credit_note_doc(credit_note_id: object) -> str:
    return f"credit_note:{credit_note_id}"


def refund_doc(refund_id: object) -> str:
    return f"refund:{refund_id}"


@dataclass(frozen=True, slots=True)
class FinalLine:
    """An invoice line as finalized: net after discount, its tax, where revenue goes."""

    line_no: int
    net: Money
    tax: Money
    tax_code: str
    revenue_account: str
    service_start: date | None = None
    service_end: date | None = None  # exclusive

    def deferred_at(self, issue_date: date) -> bool:
        """Revenue waits in Deferred-Revenue while any of the service is still to come."""
        return self.service_end is not None and self.service_end > issue_date


def finalization_entry(
    invoice_id: object,
    number: str,
    customer: str,
    issue_date: date,
    lines: Sequence[FinalLine],
) -> JournalEntry | None:
    """AR for the total; revenue (or deferred revenue) per line; tax per code.

    A zero invoice moves no money and posts nothing. A negative total (more
    credits than charges) becomes customer credit instead of a negative AR.
    """
    doc = invoice_doc(invoice_id)
    currency = lines[0].net.currency
    total = sum((line.net + line.tax for line in lines), Money.zero(currency))
    postings: list[Posting] = []
    for line in lines:
        if line.net.is_zero():
            continue
        account = DEFERRED if line.deferred_at(issue_date) else line.revenue_account
        postings.append(
            Posting(
                account,
                -line.net,
                customer,
                doc,
                {"line": str(line.line_no), "via": "finalization"},
            )
        )
    taxes: dict[str, Money] = {}
    for line in lines:
        taxes[line.tax_code] = taxes.get(line.tax_code, Money.zero(currency)) + line.tax
    for code, tax in sorted(taxes.items()):
        if not tax.is_zero():
            postings.append(Posting(TAX, -tax, customer, doc, {"tax": code, "via": "finalization"}))
    if total.is_zero() and not postings:
        return None
    receiving = AR if total.amount >= 0 else CUSTOMER_CREDIT
    if not total.is_zero():
        postings.insert(0, Posting(receiving, total, customer, doc, {"via": "finalization"}))
    return build_entry(
        issue_date,
        f"Invoice {number}",
        postings,
        metadata={"kind": "invoice", "invoice": str(invoice_id), "number": number},
        idempotency_key=f"invoice:{invoice_id}:finalize",
    )


# Stand-ins for what differs between invoices of one shape (finalization_template).
_ANY_INVOICE = "\x00invoice"
_ANY_NUMBER = "\x00number"
_ANY_CUSTOMER = "\x00customer"


@dataclass(frozen=True, slots=True)
class FinalizationTemplate:
    """`finalization_entry` of one invoice shape (issue date and final lines), built and
    checked once: a billing run's invoices come in a handful of shapes, and only the
    invoice id, number and customer differ between the entries of one shape."""

    issue_date: date
    lines: tuple[FinalLine, ...]
    entry: JournalEntry | None  # with stand-ins for the invoice, number and customer

    def entry_for(self, invoice_id: object, number: str, customer: str) -> JournalEntry | None:
        """The same entry `finalization_entry` builds for this invoice."""
        template = self.entry
        if template is None:
            return None
        memo = f"Invoice {number}"
        if len(memo) > 1000:  # build_entry refuses it: let it say so
            return finalization_entry(invoice_id, number, customer, self.issue_date, self.lines)
        doc = invoice_doc(invoice_id)
        return JournalEntry(
            effective_date=template.effective_date,
            memo=memo,
            postings=tuple(
                Posting(p.account, p.money, customer, doc, p.dimensions) for p in template.postings
            ),
            metadata={"kind": "invoice", "invoice": str(invoice_id), "number": number},
            idempotency_key=f"invoice:{invoice_id}:finalize",
        )


def finalization_template(issue_date: date, lines: Sequence[FinalLine]) -> FinalizationTemplate:
    """The template of `finalization_entry(…, issue_date, lines)` for any invoice,
    number and customer (balance, accounts and amounts depend on the lines alone)."""
    return FinalizationTemplate(
        issue_date,
        tuple(lines),
        finalization_entry(_ANY_INVOICE, _ANY_NUMBER, _ANY_CUSTOMER, issue_date, lines),
    )


def credit_application_entry(
    invoice_id: object, number: str, customer: str, on: date, amount: Money, source: str
) -> JournalEntry:
    """Customer credit applied to an invoice: Customer-Credit → AR."""
    doc = invoice_doc(invoice_id)
    via = f"credit:{source}"
    return build_entry(
        on,
        f"Customer credit applied to {number}",
        [
            Posting(CUSTOMER_CREDIT, amount, customer, doc, {"via": via}),
            Posting(AR, -amount, customer, doc, {"via": via}),
        ],
        metadata={"kind": "credit_application", "invoice": str(invoice_id), "number": number},
        idempotency_key=f"invoice:{invoice_id}:apply-credit:{source}",
    )


@dataclass(frozen=True, slots=True)
class Allocation:
    invoice_id: str
    amount: Money


def payment_entry(
    payment_id: object,
    customer: str,
    received_on: date,
    amount: Money,
    cash_account: str,
    allocations: Sequence[Allocation],
    reference: str | None = None,
    *,
    invoice_numbers: Sequence[str] = (),
    customer_name: str | None = None,
) -> JournalEntry:
    """Cash in; AR settled per invoice; what is left becomes customer credit.

    The metadata carries what a bank line may echo back (reference, invoice
    numbers, the payer's name), so reconciliation can match it.
    """
    doc = payment_doc(payment_id)
    via = {"via": f"payment:{payment_id}"}
    postings = [Posting(cash_account, amount, customer, doc, via)]
    applied = Money.zero(amount.currency)
    for allocation in allocations:
        postings.append(
            Posting(AR, -allocation.amount, customer, invoice_doc(allocation.invoice_id), via)
        )
        applied = applied + allocation.amount
    left = amount - applied
    if not left.is_zero():
        postings.append(Posting(CUSTOMER_CREDIT, -left, customer, doc, via))
    metadata: dict[str, object] = {"kind": "payment", "payment": str(payment_id)}
    if reference:
        metadata["bank_reference"] = reference
    if invoice_numbers:
        metadata["invoice_numbers"] = list(invoice_numbers)
    if customer_name:
        metadata["customer_name"] = customer_name
    return build_entry(
        received_on,
        f"Payment {payment_id}",
        postings,
        metadata=metadata,
        idempotency_key=f"payment:{payment_id}",
    )
