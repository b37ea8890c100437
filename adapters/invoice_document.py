"""The invoice as a document a customer receives: self-contained HTML.

It carries what an invoice legally needs in most VAT and sales-tax systems:
a unique sequential number, the issue date and the date or period of supply,
both parties (names, addresses, tax ids), each line with quantity, unit
price, net amount and tax rate, the tax breakdown per rate, the totals, the
due date, and the mention "Reverse charge" or "Exempt" when no tax is
charged for that reason. A draft says it is not a valid invoice; a voided
invoice carries a VOID mark (and keeps its number), a paid one a PAID mark.
The seller is the book's settings (`legal_name`, `address`, `tax_id`,
`email.from`, `payment_instructions`), the book's name when no legal name is set.

Periods. The API's periods are half-open, [start, end): a month of January is
2026-01-01 to 2026-02-01. The document prints the days of supply, first and
last included ("Jan 1 – Jan 31, 2026"), and says so under the lines. Unit
prices keep their own precision, never fewer places than the currency's
minor unit ("9.90", "0.0125"); amounts have exactly the minor unit's places.

A credit note (CN series) is its own document, titled "Credit note": the
invoice it credits, the lines it takes back with their net and tax at the
invoice's rates, and where the credit went (the invoice's amount due,
customer credit, or a refund). An invoice that totals below zero (only
issued before credits became credit notes) is titled a credit note too.

Locale. Given the book's `locale` (render_document passes it; en_US when the
book sets none), dates, periods and money are formatted by babel for that
locale (`$1,234.50`, `1.234,50 €`, `Jan 1 – 31, 2026`); without one (the
pure renderers' default) figures print plain (`1234.50 USD`, ISO dates).

The PDF (adapters/invoice_pdf.py) is rendered from this same HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from html import escape
from typing import Any
from uuid import UUID

import psycopg
from babel.dates import format_interval

from adapters import locale_format
from billing.postgres.credit_notes import CreditNote, get_credit_note
from billing.postgres.customers import get_customer
from billing.postgres.invoices import Invoice, Totals, get_invoice
from ledger.money import minor_unit_text as _money
from ledger.money import price_text

__all__ = [
    "DocumentParty",
    "credit_note_document",
    "document_parties",
    "render_credit_note_html",
    "render_invoice_html",
    "seller_party",
]

_ADDRESS_ORDER = ("line1", "line2", "postal_code", "city", "state", "country")

MENTIONS = {
    "reverse_charge": "Reverse charge: no tax is charged on this invoice; the customer is liable"
    " to account for the tax on this supply.",
    "exempt": "Exempt: this supply is exempt from tax; no tax is charged.",
}


@dataclass(frozen=True, slots=True)
class DocumentParty:
    name: str
    address: Mapping[str, Any] | str | None = None
    tax_id: str | None = None
    email: str | None = None
    payment_instructions: str | None = None  # the seller's, printed under the totals


def seller_party(book_name: str, settings: Mapping[str, Any]) -> DocumentParty:
    """The seller as the book's settings describe it (billing/settings.py has their shapes)."""
    email = settings.get("email")
    instructions = settings.get("payment_instructions")
    return DocumentParty(
        name=str(settings.get("legal_name") or book_name),
        address=settings.get("address"),
        tax_id=settings.get("tax_id"),
        email=email.get("from") if isinstance(email, dict) else None,
        payment_instructions=instructions if isinstance(instructions, str) else None,
    )


@dataclass(frozen=True, slots=True)
class _Format:
    """Figures in `locale` (babel), or plain when None. Every result is HTML-escaped."""

    locale: str | None = None

    def money(self, amount: Decimal, c: str) -> str:
        text = _money(amount, c)
        return escape(text if self.locale is None else locale_format.money(text, c, self.locale))

    def price(self, amount: Decimal, c: str) -> str:
        text = price_text(amount, c)
        return escape(text if self.locale is None else locale_format.money(text, c, self.locale))

    def total(self, amount: Decimal, c: str) -> str:
        return self.money(amount, c) + (f" {escape(c)}" if self.locale is None else "")

    def day(self, day: date | None) -> str:
        if day is None:
            return "—"
        return day.isoformat() if self.locale is None else locale_format.day(day, self.locale)

    def period(self, start: date | None, end: date | None) -> str:
        if self.locale is None or start is None or end is None:
            return _period(start, end)
        last = end - timedelta(days=1)
        if last <= start:
            return locale_format.day(start, self.locale)
        return str(format_interval(start, last, "yMMMd", locale=self.locale))

    @property
    def lang(self) -> str:
        return (self.locale or "en").split("_")[0]


def _rate(fraction: Decimal) -> str:
    percent = (Decimal(fraction) * 100).normalize()
    return f"{percent:f} %"


def _address_lines(address: Mapping[str, Any] | str | None) -> list[str]:
    if not address:
        return []
    if isinstance(address, str):
        return [line for line in address.splitlines() if line.strip()]
    others = [str(v) for k, v in address.items() if k not in _ADDRESS_ORDER and v]
    city = " ".join(str(address[k]) for k in ("postal_code", "city") if address.get(k))
    lines = [str(address[k]) for k in ("line1", "line2") if address.get(k)]
    if city:
        lines.append(city)
    lines += [str(address[k]) for k in ("state", "country") if address.get(k)]
    return lines + others


def _party(title: str, party: DocumentParty, extra: list[str]) -> str:
    rows = [f"<strong>{escape(party.name)}</strong>"]
    rows += [escape(line) for line in _address_lines(party.address)]
    if party.tax_id:
        rows.append(f"Tax ID: {escape(str(party.tax_id))}")
    if party.email:
        rows.append(escape(party.email))
    rows += [escape(line) for line in extra]
    return f'<section class="party"><h2>{escape(title)}</h2><p>{"<br>".join(rows)}</p></section>'


def _day(day: date, *, year: bool = True) -> str:
    text = f"{day:%b} {day.day}"
    return f"{text}, {day.year}" if year else text


def _period(start: date | None, end: date | None) -> str:
    """A half-open period [start, end) as its first and last day: [Jan 1, Feb 1) is
    "Jan 1 – Jan 31, 2026"; a single day is that day."""
    if start is None or end is None:
        return ""
    last = end - timedelta(days=1)
    if last <= start:
        return _day(start)
    return f"{_day(start, year=start.year != last.year)} – {_day(last)}"


def render_invoice_html(
    invoice: Invoice,
    seller: DocumentParty,
    buyer: DocumentParty,
    tax_treatment: str,
    preview: Totals | None = None,
    locale: str | None = None,
) -> str:
    """The invoice document; a draft is rendered with `preview` figures and a warning."""
    c = invoice.currency
    f = _Format(locale)
    tax_of = {line.line_no: line.tax_amount for line in invoice.lines}
    rate_of = {line.line_no: line.tax_rate for line in invoice.lines}
    subtotal, discount, tax, total = (
        invoice.subtotal,
        invoice.discount_total,
        invoice.tax_total,
        invoice.total,
    )
    if preview is not None:
        tax_of = {f.line_no: f.tax.amount for f in preview.finals}
        rate_of = {f.line_no: preview.rate.percent / 100 for f in preview.finals}
        subtotal, discount = preview.subtotal.amount, preview.discount.amount
        tax, total = preview.tax.amount, preview.total.amount

    if invoice.status == "draft":
        title = "Draft invoice"
        banner = "DRAFT — not a valid invoice: it has no number yet."
    else:
        kind = "Credit note" if invoice.total < 0 else "Invoice"
        title = f"{kind} {invoice.number}"
        banner = "VOID — this invoice has been cancelled." if invoice.status == "void" else ""
    mark = {"void": "VOID", "paid": "PAID"}.get(invoice.status, "")

    facts = [("Invoice number", invoice.number or "(assigned at finalization)")]
    facts.append(("Issue date", f.day(invoice.issue_date)))
    if invoice.supply_start and invoice.supply_end:
        facts.append(("Supply period", f.period(invoice.supply_start, invoice.supply_end)))
    else:
        facts.append(("Date of supply", f.day(invoice.issue_date)))
    facts.append(("Due date", f.day(invoice.due_date)))
    facts.append(("Currency", c))
    facts_html = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)

    line_rows = []
    breakdown: dict[Decimal, tuple[Decimal, Decimal]] = {}
    for line in invoice.lines:
        net = line.amount - line.discount_amount
        line_tax = tax_of.get(line.line_no, line.tax_amount)
        line_rate = Decimal(rate_of.get(line.line_no, line.tax_rate)).normalize()
        base, taxed = breakdown.get(line_rate, (Decimal(0), Decimal(0)))
        breakdown[line_rate] = (base + net, taxed + line_tax)
        discount_note = (
            f"<br><small>discount −{f.money(line.discount_amount, c)}</small>"
            if line.discount_amount
            else ""
        )
        line_rows.append(
            "<tr>"
            f"<td>{line.line_no}</td>"
            f"<td>{escape(line.description)}{discount_note}</td>"
            f"<td>{escape(f.period(line.service_start, line.service_end))}</td>"
            f'<td class="num">{escape(str(line.quantity))}</td>'
            f'<td class="num">{f.price(line.unit_amount, c)}</td>'
            f'<td class="num">{f.money(net, c)}</td>'
            f'<td class="num">{escape(_rate(line_rate))}</td>'
            f'<td class="num">{f.money(line_tax, c)}</td>'
            "</tr>"
        )
    mention = MENTIONS.get(tax_treatment, "")
    breakdown_rows = "".join(
        "<tr>"
        f"<td>{escape(_rate(rate))}"
        f"{' (' + escape(tax_treatment.replace('_', ' ')) + ')' if mention else ''}</td>"
        f'<td class="num">{f.money(base, c)}</td>'
        f'<td class="num">{f.money(taxed, c)}</td>'
        "</tr>"
        for rate, (base, taxed) in sorted(breakdown.items())
    )
    totals = [("Subtotal", subtotal)]
    if discount:
        totals.append(("Discounts", -discount))
    totals += [("Tax", tax), ("Total", total)]
    if invoice.status != "draft":
        totals += [("Amount paid", invoice.amount_paid)]
        if invoice.amount_credited:
            totals.append(("Credited", invoice.amount_credited))
        totals.append(("Amount due", invoice.amount_due))
    totals_html = _totals_rows(totals, c, f)
    treatment_line = [f"Tax treatment: {tax_treatment.replace('_', ' ')}"]
    memo = f"<p class='memo'>{escape(invoice.memo)}</p>" if invoice.memo else ""
    instructions = (
        '<section class="payment"><h2>Payment</h2><p>'
        + "<br>".join(escape(line) for line in seller.payment_instructions.splitlines())
        + "</p></section>"
        if seller.payment_instructions and invoice.status != "void"
        else ""
    )
    periods_note = (
        '<p class="note">Periods include their first and last day.</p>'
        if invoice.supply_start or any(line.service_start for line in invoice.lines)
        else ""
    )
    return f"""{_opening(title, f)}
{f'<p class="mark {mark.lower()}">{mark}</p>' if mark else ""}
{f'<p class="banner">{escape(banner)}</p>' if banner else ""}
<table class="facts">{facts_html}</table>
<div class="parties">
{_party("From", seller, [])}
{_party("Bill to", buyer, treatment_line)}
</div>
<table class="lines">
<thead><tr><th>#</th><th>Description</th><th>Service period</th><th class="num">Quantity</th>
<th class="num">Unit price</th><th class="num">Net amount</th><th class="num">Tax rate</th>
<th class="num">Tax</th></tr></thead>
<tbody>
{"".join(line_rows)}
</tbody>
</table>
{periods_note}
<h2>Tax breakdown</h2>
<table class="tax">
<thead><tr><th>Rate</th><th class="num">Taxable amount</th><th class="num">Tax</th></tr></thead>
<tbody>{breakdown_rows}</tbody>
</table>
<table class="totals">{totals_html}</table>
{f'<p class="mention">{escape(mention)}</p>' if mention else ""}
{instructions}
{memo}
</body>
</html>
"""


_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: .3em .6em; text-align: left; vertical-align: top; }
table.lines th, table.lines td { border-bottom: 1px solid #ddd; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.parties { display: flex; gap: 4em; }
.banner { font-weight: bold; color: #a00; border: 2px solid #a00; padding: .5em; }
.mention { font-weight: bold; }
.mark { display: inline-block; font-size: 2em; font-weight: bold; letter-spacing: .2em;
  border: 4px solid; padding: 0 .4em; transform: rotate(-8deg); }
.mark.paid { color: #070; }
.mark.void { color: #a00; }
.note { font-size: .9em; color: #555; }
</style>"""


def _opening(title: str, f: _Format) -> str:
    return f"""<!DOCTYPE html>
<html lang="{escape(f.lang)}">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
{_STYLE}
</head>
<body>
<h1>{escape(title)}</h1>"""


def _totals_rows(totals: list[tuple[str, Decimal]], c: str, f: _Format) -> str:
    return "".join(
        f'<tr><th>{escape(k)}</th><td class="num">{f.total(v, c)}</td></tr>' for k, v in totals
    )


_CREDITED_TO = {
    "receivable": "Deducted from the amount due on invoice {invoice}.",
    "customer_credit": "Kept as credit on your account, applied to your open invoices.",
    "refund": "Refunded to you.",
}


def render_credit_note_html(
    note: CreditNote,
    invoice: Invoice,
    seller: DocumentParty,
    buyer: DocumentParty,
    tax_treatment: str,
    locale: str | None = None,
) -> str:
    """The credit note: what it takes back from which invoice's lines, and where it went."""
    c = note.currency
    f = _Format(locale)
    by_no = {line.line_no: line for line in invoice.lines}
    facts = [
        ("Credit note number", note.number),
        ("Issue date", f.day(note.issue_date)),
        ("Credits invoice", invoice.number or str(invoice.id)),
        ("Currency", c),
    ]
    facts_html = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    rows = []
    for part in note.lines:
        line = by_no.get(int(part["line_no"]))
        rows.append(
            "<tr>"
            f"<td>{int(part['line_no'])}</td>"
            f"<td>{escape(line.description if line else '')}</td>"
            f"<td>{escape(f.period(line.service_start, line.service_end) if line else '')}</td>"
            f'<td class="num">{f.money(Decimal(part["net"]), c)}</td>'
            f'<td class="num">{escape(_rate(line.tax_rate)) if line else ""}</td>'
            f'<td class="num">{f.money(Decimal(part["tax"]), c)}</td>'
            "</tr>"
        )
    totals = [("Net", note.net_amount), ("Tax", note.tax_amount), ("Total credited", note.total)]
    totals_html = _totals_rows(totals, c, f)
    went = _CREDITED_TO.get(note.credit_to, "").format(invoice=invoice.number or invoice.id)
    reason = f"<p class='memo'>{escape(note.reason)}</p>" if note.reason else ""
    title = f"Credit note {note.number}"
    return f"""{_opening(title, f)}
<table class="facts">{facts_html}</table>
<div class="parties">
{_party("From", seller, [])}
{_party("Credit to", buyer, [f"Tax treatment: {tax_treatment.replace('_', ' ')}"])}
</div>
<table class="lines">
<thead><tr><th>Invoice line</th><th>Description</th><th>Service period</th>
<th class="num">Net credited</th><th class="num">Tax rate</th><th class="num">Tax credited</th>
</tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
<table class="totals">{totals_html}</table>
<p class="mention">{escape(went)}</p>
{reason}
</body>
</html>
"""


def document_parties(
    conn: psycopg.Connection, book_id: UUID, customer_id: UUID
) -> tuple[DocumentParty, DocumentParty, str]:
    """Seller (the book's settings), buyer (the customer) and the customer's tax treatment."""
    customer = get_customer(conn, book_id, str(customer_id))
    row = conn.execute("select name, settings from books where id = %s", (book_id,)).fetchone()
    assert row is not None
    seller = seller_party(str(row[0]), dict(row[1] or {}))
    buyer = DocumentParty(
        name=customer.name,
        address=customer.address or None,
        tax_id=customer.metadata.get("tax_id") if isinstance(customer.metadata, dict) else None,
        email=customer.email,
    )
    return seller, buyer, customer.tax_treatment


def credit_note_document(conn: psycopg.Connection, book_id: UUID, ref: str) -> str:
    note = get_credit_note(conn, book_id, ref)
    invoice = get_invoice(conn, book_id, str(note.invoice_id))
    seller, buyer, treatment = document_parties(conn, book_id, note.customer_id)
    locale = locale_format.book_locale(conn, book_id)
    return render_credit_note_html(note, invoice, seller, buyer, treatment, locale)
