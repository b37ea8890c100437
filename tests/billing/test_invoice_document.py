"""The invoice document: the seller from the book's settings, payment instructions,
PAID / VOID marks, half-open periods printed as their days, unit prices at their
own precision (issue 7 item 22)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from adapters.invoice_document import DocumentParty, render_invoice_html, seller_party
from billing.postgres.invoices import Invoice, InvoiceLine

SETTINGS = {
    "legal_name": "Acme Cloud AG",
    "address": {"line1": "Bahnhofstrasse 1", "postal_code": "8001", "city": "Zürich"},
    "tax_id": "CHE-123.456.789 MWST",
    "email": {"from": "billing@acme.example", "host": "smtp.acme.example"},
    "payment_instructions": "IBAN CH93 0076 2011 6238 5295 7\nReference: your invoice number",
}


def line(no: int, unit: str, quantity: str, start: date | None, end: date | None) -> InvoiceLine:
    amount = (Decimal(unit) * Decimal(quantity)).quantize(Decimal("0.01"))
    return InvoiceLine(
        line_no=no,
        kind="subscription",
        description=f"line {no}",
        quantity=Decimal(quantity),
        unit_amount=Decimal(unit),
        amount=amount,
        discount_amount=Decimal(0),
        tax_rate=Decimal(0),
        tax_amount=Decimal(0),
        service_start=start,
        service_end=end,
        price_id=None,
        revenue_account="Income:Subscriptions",
    )


def invoice(status: str, *lines: InvoiceLine) -> Invoice:
    total = sum((item.amount for item in lines), Decimal(0))
    return Invoice(
        id=uuid.uuid4(),
        book_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        subscription_id=None,
        status=status,
        number="INV-2026-000007",
        currency="USD",
        issue_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
        supply_start=date(2026, 1, 1),
        supply_end=date(2026, 2, 1),
        subtotal=total,
        discount_total=Decimal(0),
        tax_total=Decimal(0),
        total=total,
        amount_paid=total if status == "paid" else Decimal(0),
        amount_credited=Decimal(0),
        amount_written_off=Decimal(0),
        amount_due=Decimal(0) if status in ("paid", "void") else total,
        memo="",
        metadata={},
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        lines=lines,
    )


BUYER = DocumentParty("Buyer Ltd")
MONTH = line(1, "9.9", "3", date(2026, 1, 1), date(2026, 2, 1))
METERED = line(2, "0.012500", "1000", date(2025, 12, 15), date(2026, 1, 15))
ONE_DAY = line(3, "120", "1", date(2026, 1, 5), date(2026, 1, 6))


def page(status: str) -> str:
    seller = seller_party("book name", SETTINGS)
    return render_invoice_html(invoice(status, MONTH, METERED, ONE_DAY), seller, BUYER, "taxable")


def test_the_seller_is_the_book_s_legal_name_address_tax_id_and_email() -> None:
    html = page("open")
    for fact in (
        "Acme Cloud AG",
        "Bahnhofstrasse 1",
        "8001 Zürich",
        "Tax ID: CHE-123.456.789 MWST",
        "billing@acme.example",
    ):
        assert fact in html, fact
    assert "book name" not in html and "smtp.acme.example" not in html
    assert seller_party("book name", {}).name == "book name"


def test_payment_instructions_are_printed_line_by_line() -> None:
    assert "IBAN CH93 0076 2011 6238 5295 7<br>Reference: your invoice number" in page("open")
    assert "IBAN" not in page("void")


def test_paid_and_void_invoices_carry_their_mark() -> None:
    assert '<p class="mark paid">PAID</p>' in page("paid")
    assert '<p class="mark void">VOID</p>' in page("void")
    assert 'class="mark' not in page("open")


def test_half_open_periods_print_their_first_and_last_day() -> None:
    html = page("open")
    assert "Jan 1 – Jan 31, 2026" in html  # [Jan 1, Feb 1): the supply period and line 1
    assert "Dec 15, 2025 – Jan 14, 2026" in html  # across a year end
    assert "<td>Jan 5, 2026</td>" in html  # [Jan 5, Jan 6): one day
    assert "Periods include their first and last day." in html
    assert "2026-02-01" not in html


def test_unit_prices_keep_their_precision_but_never_fewer_than_the_minor_unit() -> None:
    html = page("open")
    assert '<td class="num">9.90</td>' in html
    assert '<td class="num">0.0125</td>' in html
    assert '<td class="num">120.00</td>' in html
    jpy = render_invoice_html(
        replace(invoice("open", line(1, "120", "1", None, None)), currency="JPY"),
        seller_party("b", {}),
        BUYER,
        "taxable",
    )
    assert '<td class="num">120</td>' in jpy
