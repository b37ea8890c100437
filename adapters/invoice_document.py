"""The invoice as a document a customer receives: self-contained HTML.

It carries what an invoice legally needs in most VAT and sales-tax systems:
a unique sequential number, the issue date and the date or period of supply,
both parties (names, addresses, tax ids), each line with quantity, unit
price, net amount and tax rate, the tax breakdown per rate, the totals, the
due date, and the mention "Reverse charge" or "Exempt" when no tax is
charged for that reason. A draft says it is not a valid invoice; a voided
invoice says it is void (and keeps its number).

HTML only: a PDF would need a new runtime dependency (fpdf2 is the pure-Python
candidate) and a shipped Unicode font for non-Latin names; a browser prints
this page to PDF as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from billing.postgres.invoices import Invoice, Totals
from ledger.money import minor_unit_text as _money

__all__ = ["DocumentParty", "render_invoice_html"]

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


def _period(start: date | None, end: date | None) -> str:
    """A half-open service period [start, end) shown with its last day included."""
    if start is None or end is None:
        return ""
    return f"{start.isoformat()} – {(end - timedelta(days=1)).isoformat()}"


def render_invoice_html(
    invoice: Invoice,
    seller: DocumentParty,
    buyer: DocumentParty,
    tax_treatment: str,
    preview: Totals | None = None,
) -> str:
    """The invoice document; a draft is rendered with `preview` figures and a warning."""
    c = invoice.currency
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
        title = f"Invoice {invoice.number}"
        banner = "VOID — this invoice has been cancelled." if invoice.status == "void" else ""

    facts = [("Invoice number", invoice.number or "(assigned at finalization)")]
    facts.append(("Issue date", invoice.issue_date.isoformat() if invoice.issue_date else "—"))
    if invoice.supply_start and invoice.supply_end:
        facts.append(("Supply period", _period(invoice.supply_start, invoice.supply_end)))
    else:
        facts.append(
            ("Date of supply", invoice.issue_date.isoformat() if invoice.issue_date else "—")
        )
    facts.append(("Due date", invoice.due_date.isoformat() if invoice.due_date else "—"))
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
            f"<br><small>discount −{_money(line.discount_amount, c)}</small>"
            if line.discount_amount
            else ""
        )
        line_rows.append(
            "<tr>"
            f"<td>{line.line_no}</td>"
            f"<td>{escape(line.description)}{discount_note}</td>"
            f"<td>{escape(_period(line.service_start, line.service_end))}</td>"
            f'<td class="num">{escape(str(line.quantity))}</td>'
            f'<td class="num">{escape(str(line.unit_amount))}</td>'
            f'<td class="num">{_money(net, c)}</td>'
            f'<td class="num">{escape(_rate(line_rate))}</td>'
            f'<td class="num">{_money(line_tax, c)}</td>'
            "</tr>"
        )
    mention = MENTIONS.get(tax_treatment, "")
    breakdown_rows = "".join(
        "<tr>"
        f"<td>{escape(_rate(rate))}"
        f"{' (' + escape(tax_treatment.replace('_', ' ')) + ')' if mention else ''}</td>"
        f'<td class="num">{_money(base, c)}</td>'
        f'<td class="num">{_money(taxed, c)}</td>'
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
    totals_html = "".join(
        f'<tr><th>{escape(k)}</th><td class="num">{_money(v, c)} {escape(c)}</td></tr>'
        for k, v in totals
    )
    treatment_line = [f"Tax treatment: {tax_treatment.replace('_', ' ')}"]
    memo = f"<p class='memo'>{escape(invoice.memo)}</p>" if invoice.memo else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ padding: .3em .6em; text-align: left; vertical-align: top; }}
table.lines th, table.lines td {{ border-bottom: 1px solid #ddd; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.parties {{ display: flex; gap: 4em; }}
.banner {{ font-weight: bold; color: #a00; border: 2px solid #a00; padding: .5em; }}
.mention {{ font-weight: bold; }}
</style>
</head>
<body>
<h1>{escape(title)}</h1>
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
<h2>Tax breakdown</h2>
<table class="tax">
<thead><tr><th>Rate</th><th class="num">Taxable amount</th><th class="num">Tax</th></tr></thead>
<tbody>{breakdown_rows}</tbody>
</table>
<table class="totals">{totals_html}</table>
{f'<p class="mention">{escape(mention)}</p>' if mention else ""}
{memo}
</body>
</html>
"""
