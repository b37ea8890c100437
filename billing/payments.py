"""Payments and refunds, as pure rules: where a payment goes, what a refund
takes back, and the entries they post (ACCOUNTING.md).

Allocation of a payment: to the invoices named (up to what each still
owes), else over the customer's open invoices, oldest due date first (then
oldest issue date, then number). Whatever is left becomes customer credit.
Invoices marked uncollectible are only paid when named: a payment on one is
a recovery (AR | Credit-Losses for the recovered amount, then the normal
payment), up to what was written off and not yet recovered.

Refund of a payment, in this order:

1. the payment's unapplied part (what it left as customer credit), as far
   as the customer still has that credit: Customer-Credit | cash;
2. then the invoices the payment settled, newest first (issue date, then
   number), each up to what the payment put on it less what its earlier
   refunds took back, and never more than the invoice still has to give
   (credit notes may have taken some already). Each invoice part is split
   like a credit note (billing.credit_notes): unearned → Deferred-Revenue,
   earned → Income:Contra:Refunds, tax → Tax-Payable | cash.

A refund never reopens the receivable: the invoice stays paid (its amount
paid and amount due do not change); the refund is money back, booked
against revenue and tax, not against AR.

Refund of a customer's credit balance: Customer-Credit | cash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from billing.credit_notes import (
    LineCredit,
    LineState,
    available,
    split_amount,
    split_postings,
    total_of,
)
from billing.errors import DocumentState, ExceedsAvailable, InvalidBillingRequest
from billing.postings import (
    AR,
    CONTRA_REFUNDS,
    CREDIT_LOSSES,
    CUSTOMER_CREDIT,
    PAYMENT_ACCOUNTS,
    Allocation,
    invoice_doc,
    refund_doc,
)
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money

METHODS = tuple(PAYMENT_ACCOUNTS)


def cash_account_of(method: str) -> str:
    """The account a manual method's money lands in (card recorded as paid → clearing)."""
    try:
        return PAYMENT_ACCOUNTS[method]
    except KeyError:
        raise InvalidBillingRequest(
            f"unknown payment method {method!r}: use one of {', '.join(METHODS)}",
            method=method,
        ) from None


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """A customer's invoice as a payment sees it."""

    invoice_id: str
    number: str
    issue_date: date
    due_date: date
    amount_due: Money
    uncollectible: bool = False
    recoverable: Money | None = None  # written off and not yet recovered

    @property
    def capacity(self) -> Money:
        """The most a payment can put on this invoice now."""
        if self.uncollectible:
            return self.recoverable or Money.zero(self.amount_due.currency)
        return self.amount_due


def allocate_payment(
    amount: Money,
    invoices: Sequence[OpenInvoice],
    requested: Sequence[tuple[str, Money | None]] | None = None,
) -> list[Allocation]:
    """Where a payment goes. `requested` names invoices, each with an amount or
    None ("as much as it owes, from what is left"); without it, the open
    invoices are paid oldest due date first. The rest is customer credit."""
    if amount.amount <= 0:
        raise InvalidBillingRequest("a payment amount must be greater than zero")
    by_id = {i.invoice_id: i for i in invoices}
    left = amount
    allocations: list[Allocation] = []
    if requested:
        seen: set[str] = set()
        for invoice_id, wanted in requested:
            invoice = by_id.get(invoice_id)
            if invoice is None:
                raise DocumentState(
                    f"invoice {invoice_id} is not open for this customer", invoice=invoice_id
                )
            if invoice_id in seen:
                raise InvalidBillingRequest(
                    f"invoice {invoice.number} is named twice", invoice=invoice_id
                )
            seen.add(invoice_id)
            capacity = invoice.capacity
            if capacity.amount <= 0:
                raise DocumentState(
                    f"invoice {invoice.number} has nothing left to pay", invoice=invoice_id
                )
            if wanted is None:
                take = left if left <= capacity else capacity
            else:
                if wanted.amount <= 0:
                    raise InvalidBillingRequest(
                        "allocation amounts must be greater than zero", invoice=invoice_id
                    )
                if capacity < wanted:
                    raise ExceedsAvailable(
                        f"{wanted} is more than the {capacity} invoice {invoice.number} owes",
                        invoice=invoice_id,
                        available=str(capacity.amount),
                    )
                if left < wanted:
                    raise ExceedsAvailable(
                        f"the allocations add up to more than the payment of {amount}",
                        amount=str(amount.amount),
                    )
                take = wanted
            if take.amount > 0:
                allocations.append(Allocation(invoice_id, take))
                left = left - take
        return allocations
    ordered = sorted(
        (i for i in invoices if not i.uncollectible and i.amount_due.amount > 0),
        key=lambda i: (i.due_date, i.issue_date, i.number),
    )
    for invoice in ordered:
        if left.is_zero():
            break
        take = left if left <= invoice.amount_due else invoice.amount_due
        allocations.append(Allocation(invoice.invoice_id, take))
        left = left - take
    return allocations


def recovery_entry(
    payment_id: object, customer: str, on: date, recoveries: Sequence[Allocation]
) -> JournalEntry:
    """Recovery after a write-off: AR | Credit-Losses, before the payment settles AR."""
    via = {"via": f"recovery:{payment_id}"}
    postings: list[Posting] = []
    for r in recoveries:
        doc = invoice_doc(r.invoice_id)
        postings.append(Posting(AR, r.amount, customer, doc, via))
        postings.append(Posting(CREDIT_LOSSES, -r.amount, customer, doc, via))
    return build_entry(
        on,
        f"Recovery of written-off invoices by payment {payment_id}",
        postings,
        metadata={"kind": "recovery", "payment": str(payment_id)},
        idempotency_key=f"payment:{payment_id}:recovery",
    )


@dataclass(frozen=True, slots=True)
class RefundableInvoice:
    """An invoice a payment settled, as a refund of that payment sees it."""

    invoice_id: str
    number: str
    issue_date: date
    paid_by_payment: Money  # what the payment put on it, less its earlier refunds
    lines: Sequence[LineState]


@dataclass(frozen=True, slots=True)
class RefundPlan:
    from_credit: Money
    invoices: tuple[tuple[str, tuple[LineCredit, ...]], ...]

    def total(self, currency: str) -> Money:
        return sum((total_of(credits, currency) for _, credits in self.invoices), self.from_credit)


def refund_capacity(invoice: RefundableInvoice) -> Money:
    if not invoice.lines:
        return Money.zero(invoice.paid_by_payment.currency)
    most = available(invoice.lines)
    return invoice.paid_by_payment if invoice.paid_by_payment <= most else most


def plan_dispute_loss(
    amount: Money, unapplied: Money, credit: Money, invoices: Sequence[RefundableInvoice]
) -> tuple[RefundPlan, Money]:
    """A lost dispute returns `amount` to the cardholder whatever the books say is left
    of the payment: the card network has decided. Split it as a refund (unapplied
    credit, then the invoices' refundable lines); what the invoices no longer hold
    because a credit note kept it as customer credit comes out of the customer's
    credit balance (`credit`, at most); anything beyond is unrecovered, a loss to
    contra-revenue without a tax split. Returns (plan, unrecovered)."""
    zero = Money.zero(amount.currency)
    unapplied = unapplied if unapplied.amount > 0 else zero
    capacity = sum((refund_capacity(i) for i in invoices), unapplied)
    if amount <= capacity:
        return plan_refund(amount, unapplied, invoices), zero
    spare = credit - unapplied if credit > unapplied else zero
    extra = amount - capacity if amount - capacity <= spare else spare
    covered = capacity + extra
    if covered.amount <= 0:
        return RefundPlan(zero, ()), amount
    return plan_refund(covered, unapplied + extra, invoices), amount - covered


def plan_refund(
    amount: Money, unapplied: Money, invoices: Sequence[RefundableInvoice]
) -> RefundPlan:
    """Unapplied credit first, then invoices newest first (see the module docstring)."""
    if amount.amount <= 0:
        raise InvalidBillingRequest("a refund amount must be greater than zero")
    zero = Money.zero(amount.currency)
    unapplied = unapplied if unapplied.amount > 0 else zero
    ordered = sorted(invoices, key=lambda i: (i.issue_date, i.number), reverse=True)
    capacities = [refund_capacity(i) for i in ordered]
    most = sum(capacities, unapplied)
    if most < amount:
        raise ExceedsAvailable(
            f"{amount} is more than the {most} this payment can still refund",
            amount=str(amount.amount),
            available=str(most.amount),
        )
    from_credit = amount if amount <= unapplied else unapplied
    left = amount - from_credit
    parts: list[tuple[str, tuple[LineCredit, ...]]] = []
    for invoice, capacity in zip(ordered, capacities, strict=True):
        if left.is_zero():
            break
        if capacity.amount <= 0:
            continue
        take = left if left <= capacity else capacity
        parts.append((invoice.invoice_id, tuple(split_amount(take, invoice.lines))))
        left = left - take
    return RefundPlan(from_credit, tuple(parts))


def refund_entry(
    refund_id: object,
    customer: str,
    on: date,
    cash_account: str,
    plan: RefundPlan,
    *,
    payment_id: object | None = None,
    reason: str = "",
) -> JournalEntry:
    """Customer-Credit (unapplied part) and the split of each invoice part | cash."""
    currency = plan.from_credit.currency
    doc = refund_doc(refund_id)
    via = doc
    postings: list[Posting] = []
    if not plan.from_credit.is_zero():
        postings.append(Posting(CUSTOMER_CREDIT, plan.from_credit, customer, doc, {"via": via}))
    for invoice_id, credits in plan.invoices:
        postings.extend(split_postings(invoice_id, customer, credits, CONTRA_REFUNDS, via))
    postings.append(Posting(cash_account, -plan.total(currency), customer, doc, {"via": via}))
    metadata = {"kind": "refund", "refund": str(refund_id)}
    if payment_id is not None:
        metadata["payment"] = str(payment_id)
    if reason:
        metadata["reason"] = reason[:500]
    return build_entry(
        on,
        f"Refund {refund_id}" + (f" of payment {payment_id}" if payment_id else ""),
        postings,
        metadata=metadata,
        idempotency_key=f"refund:{refund_id}",
    )
