"""Pure rules of invoices: line totals, due dates, tax, numbering, derived status."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, localcontext

from billing.errors import InvalidBillingRequest
from billing.postings import FinalLine
from billing.tax import TaxableLine, TaxLevel, TaxRate, TaxTreatment, compute_tax
from ledger.money import Money, Rounding


@dataclass(frozen=True, slots=True)
class DraftLine:
    line_no: int
    description: str
    quantity: Decimal
    unit_amount: Decimal
    amount: Money  # quantity times unit amount, rounded to the minor unit
    revenue_account: str
    service_start: date | None = None
    service_end: date | None = None
    discount: Money | None = None

    @property
    def net(self) -> Money:
        return self.amount - self.discount if self.discount is not None else self.amount


def line_amount(
    quantity: Decimal, unit_amount: Decimal, currency: str, rounding: Rounding = Rounding.HALF_UP
) -> Money:
    with localcontext(prec=60):
        return Money(quantity * unit_amount, currency).round_to_minor(rounding)


def check_line(description: str, quantity: Decimal, start: date | None, end: date | None) -> None:
    if not description.strip():
        raise InvalidBillingRequest("every invoice line needs a description")
    if not quantity.is_finite() or quantity < 0:
        raise InvalidBillingRequest(f"quantity must be zero or more, got {quantity}")
    if (start is None) != (end is None):
        raise InvalidBillingRequest("give both service_start and service_end, or neither")
    if start is not None and end is not None and end <= start:
        raise InvalidBillingRequest(
            "service_end must be after service_start (periods are [start, end))"
        )


def due_date(issue: date, terms: str, days: int) -> date:
    """Net N days; due on receipt; or end of the issue month plus N days."""
    if terms == "due_on_receipt":
        return issue
    if terms == "end_of_month":
        last = calendar.monthrange(issue.year, issue.month)[1]
        return date(issue.year, issue.month, last) + timedelta(days=days)
    return issue + timedelta(days=days)


def tax_rate_of(rate: Decimal, treatment: str) -> TaxRate:
    """The customer's rate ("0.10") as the tax module's percent (10), with a code per rate."""
    percent = (rate * 100).normalize()
    kind = TaxTreatment(treatment)
    code = (
        "exempt"
        if kind is TaxTreatment.EXEMPT
        else ("reverse-charge" if kind is TaxTreatment.REVERSE_CHARGE else f"{percent:f}%")
    )
    return TaxRate(code, percent if kind is TaxTreatment.TAXABLE else Decimal(0), kind)


def final_lines(
    lines: Sequence[DraftLine],
    rate: TaxRate,
    *,
    per_invoice: bool = False,
    inclusive: bool = False,
) -> list[FinalLine]:
    """Tax each line (per line by default, or per invoice and rate) and freeze it."""
    if not lines:
        return []
    taxed = compute_tax(
        [TaxableLine(line.net, rate) for line in lines],
        inclusive=inclusive,
        level=TaxLevel.PER_INVOICE_RATE if per_invoice else TaxLevel.PER_LINE,
    )
    return [
        FinalLine(
            line_no=line.line_no,
            net=result.net,
            tax=result.tax,
            tax_code=rate.code,
            revenue_account=line.revenue_account,
            service_start=line.service_start,
            service_end=line.service_end,
        )
        for line, result in zip(lines, taxed.lines, strict=True)
    ]


def document_number(prefix: str, year: int, value: int) -> str:
    return f"{prefix}-{year:04d}-{value:06d}"


def derived_status(stored: str, amount_due: Decimal) -> str:
    """Open invoices whose receivable is settled read as paid."""
    if stored == "open" and amount_due <= 0:
        return "paid"
    return stored
