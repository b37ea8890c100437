"""Taking money off an invoice: the split of ACCOUNTING.md, and the entries
of credit notes and write-offs.

A credit note, a refund of a paid invoice and a write-off all take a gross
amount off an invoice's lines. What they take is split the same way:

1. over the lines, in proportion to what each line still has to give
   (its net and tax not yet taken by an earlier credit, refund or
   write-off), by largest remainder;
2. on a line, into tax and net at the line's original ratio (tax was
   computed on the net at the invoice's rate, so the tax part is credited
   pro rata to the net at that rate) — never from today's catalog price;
3. the net part, into the *unearned* part (still in Deferred-Revenue for
   that line: debit Deferred-Revenue) and the *earned* part (already
   recognized: contra-revenue, or Credit-Losses for a write-off).
   The unearned part goes first: a partial credit on a line takes away
   service still to come before it takes back revenue already recognized.
   Refunding the unused half of an annual plan thus debits Deferred-Revenue
   and books no contra-revenue; crediting more than is still deferred books
   the rest as contra-revenue. The recognition run then recognizes what is
   left deferred ratably over the service days from the credit's date
   (prospective: billing.recognition.scheduled_through), so the line's
   revenue is its total less every credit.

Every posting these entries make on an invoice carries
`document = invoice:<id>`, `dimensions["line"]` and `dimensions["via"]`
(`credit_note:<id>`, `refund:<id>`, `write_off`); tax parts also carry
`dimensions["tax"]` (the tax code), which is how the split tells a line's
tax taken from its net taken when it reads them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from billing.errors import ExceedsAvailable, InvalidBillingRequest
from billing.postings import (
    AR,
    CONTRA_CREDIT_NOTES,
    CREDIT_LOSSES,
    CUSTOMER_CREDIT,
    DEFERRED,
    TAX,
    credit_note_doc,
    invoice_doc,
)
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money, allocate

CREDIT_TO = ("receivable", "customer_credit", "refund")


@dataclass(frozen=True, slots=True)
class LineState:
    """One invoice line as the ledger has it now (all amounts ≥ 0 for a charge line).

    `net` and `tax` are the originally posted amounts; `earned` is what was
    recognized (finalization straight to income, or recognition runs) less
    what earlier credits took as earned; `unearned` is the line's balance in
    Deferred-Revenue; `tax_left` is the line's tax not yet taken back.
    """

    line_no: int
    net: Money
    tax: Money
    tax_code: str
    earned: Money
    unearned: Money
    tax_left: Money

    @property
    def net_left(self) -> Money:
        return self.earned + self.unearned

    @property
    def gross_left(self) -> Money:
        return self.net_left + self.tax_left


@dataclass(frozen=True, slots=True)
class LineCredit:
    """What one credit takes from one line."""

    line_no: int
    tax_code: str
    earned: Money
    unearned: Money
    tax: Money

    @property
    def net(self) -> Money:
        return self.earned + self.unearned

    @property
    def gross(self) -> Money:
        return self.net + self.tax


def available(lines: Sequence[LineState]) -> Money:
    """The most that can still be taken off these lines (never below zero)."""
    currency = lines[0].net.currency
    positive = sum(
        (line.gross_left for line in lines if line.gross_left.amount > 0), Money.zero(currency)
    )
    # Credit lines (negative) lower what the invoice as a whole can give back.
    overall = sum((line.gross_left for line in lines), Money.zero(currency))
    best = min(positive.amount, overall.amount)
    return Money(max(best, Money.zero(currency).amount), currency)


def _net_split(line: LineState, net: Money) -> tuple[Money, Money]:
    """(earned, unearned) of a net amount taken from a line: unearned first."""
    unearned = net if net <= line.unearned else line.unearned
    if unearned.amount < 0:
        unearned = Money.zero(net.currency)
    return net - unearned, unearned


def _credit_gross(line: LineState, gross: Money) -> LineCredit:
    if gross == line.gross_left:
        net, tax = line.net_left, line.tax_left
    elif line.tax.is_zero() or line.tax_left.is_zero():
        net, tax = gross, Money.zero(gross.currency)
    else:
        net, tax = allocate(gross, [line.net.amount, line.tax.amount])
        if line.tax_left < tax:  # rounding at the edge: never more tax than is left
            net, tax = net + tax - line.tax_left, line.tax_left
        if line.net_left < net:
            net, tax = line.net_left, gross - line.net_left
    earned, unearned = _net_split(line, net)
    return LineCredit(line.line_no, line.tax_code, earned, unearned, tax)


def split_amount(gross: Money, lines: Sequence[LineState]) -> list[LineCredit]:
    """Take a gross amount (tax included) off an invoice, over its lines pro rata."""
    if gross.amount <= 0:
        raise InvalidBillingRequest("the amount must be greater than zero", amount=str(gross))
    most = available(lines) if lines else Money.zero(gross.currency)
    if most < gross:
        raise ExceedsAvailable(
            f"{gross} is more than the {most} that can still be credited on this invoice",
            amount=str(gross.amount),
            available=str(most.amount),
        )
    open_lines = [line for line in lines if line.gross_left.amount > 0]
    parts = allocate(gross, [line.gross_left.amount for line in open_lines])
    return [
        _credit_gross(line, part)
        for line, part in zip(open_lines, parts, strict=True)
        if not part.is_zero()
    ]


def split_lines(
    requests: Sequence[tuple[int, Money]], lines: Sequence[LineState]
) -> list[LineCredit]:
    """Take net amounts off named lines; each line's tax follows at its original ratio."""
    by_no = {line.line_no: line for line in lines}
    seen: set[int] = set()
    credits = []
    for line_no, net in requests:
        line = by_no.get(line_no)
        if line is None:
            raise InvalidBillingRequest(f"the invoice has no line {line_no}", line_no=line_no)
        if line_no in seen:
            raise InvalidBillingRequest(f"line {line_no} is named twice", line_no=line_no)
        seen.add(line_no)
        if net.amount <= 0:
            raise InvalidBillingRequest(
                f"the amount for line {line_no} must be greater than zero", line_no=line_no
            )
        if line.net_left < net:
            raise ExceedsAvailable(
                f"line {line_no} has only {line.net_left} net left to credit, not {net}",
                line_no=line_no,
                available=str(line.net_left.amount),
            )
        if net == line.net_left:
            tax = line.tax_left
        elif line.net.is_zero():
            tax = Money.zero(net.currency)
        else:
            ratio = net.amount * line.tax.amount / line.net.amount
            tax = Money(ratio, net.currency).round_to_minor()
            tax = tax if tax <= line.tax_left else line.tax_left
        earned, unearned = _net_split(line, net)
        credits.append(LineCredit(line_no, line.tax_code, earned, unearned, tax))
    return credits


def total_of(credits: Sequence[LineCredit], currency: str) -> Money:
    return sum((c.gross for c in credits), Money.zero(currency))


def split_postings(
    invoice_id: object,
    customer: str,
    credits: Sequence[LineCredit],
    earned_account: str,
    via: str,
) -> list[Posting]:
    """The debit side of a split: earned → `earned_account`, unearned →
    Deferred-Revenue, tax → Tax-Payable."""
    return _split_postings(invoice_id, customer, credits, earned_account, TAX, via)


def _split_postings(
    invoice_id: object,
    customer: str,
    credits: Sequence[LineCredit],
    earned_account: str,
    tax_account: str,
    via: str,
) -> list[Posting]:
    doc = invoice_doc(invoice_id)
    postings = []
    for credit in credits:
        dims = {"line": str(credit.line_no), "via": via}
        if not credit.earned.is_zero():
            postings.append(Posting(earned_account, credit.earned, customer, doc, dims))
        if not credit.unearned.is_zero():
            postings.append(Posting(DEFERRED, credit.unearned, customer, doc, dims))
        if not credit.tax.is_zero():
            postings.append(
                Posting(tax_account, credit.tax, customer, doc, {**dims, "tax": credit.tax_code})
            )
    return postings


def credit_note_entry(
    credit_note_id: object,
    number: str,
    invoice_id: object,
    invoice_number: str,
    customer: str,
    issue_date: date,
    credits: Sequence[LineCredit],
    credit_to: str,
    cash_account: str | None = None,
) -> JournalEntry:
    """Split | AR (receivable), Customer-Credit (customer_credit) or cash (refund).

    The earned part goes to Income:Contra:Credit-Notes.
    """
    if credit_to not in CREDIT_TO:
        raise InvalidBillingRequest(f"credit_to must be one of {', '.join(CREDIT_TO)}")
    currency = credits[0].tax.currency
    via = credit_note_doc(credit_note_id)
    postings = split_postings(invoice_id, customer, credits, CONTRA_CREDIT_NOTES, via)
    total = total_of(credits, currency)
    if credit_to == "receivable":
        postings.append(Posting(AR, -total, customer, invoice_doc(invoice_id), {"via": via}))
    elif credit_to == "customer_credit":
        postings.append(Posting(CUSTOMER_CREDIT, -total, customer, via, {"via": via}))
    else:
        if cash_account is None:
            raise InvalidBillingRequest("a refund credit note needs the cash account it pays from")
        postings.append(Posting(cash_account, -total, customer, via, {"via": via}))
    return build_entry(
        issue_date,
        f"Credit note {number} on {invoice_number}",
        postings,
        metadata={
            "kind": "credit_note",
            "credit_note": str(credit_note_id),
            "number": number,
            "invoice": str(invoice_id),
            "credit_to": credit_to,
        },
        idempotency_key=f"credit_note:{credit_note_id}",
    )


def write_off_entry(
    invoice_id: object,
    invoice_number: str,
    customer: str,
    on: date,
    credits: Sequence[LineCredit],
    amount_due: Money,
) -> JournalEntry:
    """Invoice marked uncollectible: Credit-Losses (earned part and its tax),
    Deferred-Revenue (unearned part) | AR.

    The tax stays payable (no bad-debt relief by default), so the tax part of
    the receivable is a loss too: it is debited to Credit-Losses with the
    `tax` dimension, which keeps it apart from the line's earned part. Any
    part of `amount_due` the lines cannot take (credit notes kept as customer
    credit took them) is a plain loss, without a line.
    """
    via = "write_off"
    doc = invoice_doc(invoice_id)
    postings = _split_postings(invoice_id, customer, credits, CREDIT_LOSSES, CREDIT_LOSSES, via)
    rest = amount_due - total_of(credits, amount_due.currency)
    if not rest.is_zero():
        postings.append(Posting(CREDIT_LOSSES, rest, customer, doc, {"via": via}))
    postings.append(Posting(AR, -amount_due, customer, doc, {"via": via}))
    return build_entry(
        on,
        f"Invoice {invoice_number} written off as uncollectible",
        postings,
        metadata={"kind": "write_off", "invoice": str(invoice_id), "number": invoice_number},
        idempotency_key=f"invoice:{invoice_id}:write-off",
    )
