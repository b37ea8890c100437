"""Invoices: one-off drafts, finalizing, voiding, deleting drafts, and the document.

An invoice's amount paid, credited, written off and due are read from the
ledger's postings; a draft shows what finalizing it now would compute.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.gateways import collection
from adapters.http.billing_fields import MAX_PAGE, decimal_field, opt_date, rate_text
from adapters.http.cursors import decode_sort_key, encode_sort_key
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.invoice_document import document_parties, render_invoice_html
from adapters.invoice_pdf import html_to_pdf
from adapters.keys import Permission, Principal
from adapters.locale_format import book_locale
from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres import catalog
from billing.postgres import customers as customer_store
from billing.postgres import invoices as invoice_store
from billing.rating import ChargeModel
from ledger.money import minor_unit_text as money
from ledger.postgres.unit_of_work import unit_of_work

STATUSES = ("draft", "open", "paid", "void", "uncollectible")


class InvoiceLineIn(msgspec.Struct, forbid_unknown_fields=True):
    description: str | None = None
    quantity: str | int = 1
    unit_amount: str | None = None
    price: str | None = None
    service_start: date | None = None
    service_end: date | None = None
    revenue_account: str | None = None


class InvoiceIn(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    lines: list[InvoiceLineIn]
    memo: str = ""
    metadata: dict[str, Any] = {}
    auto_finalize: bool = False
    # A one-off invoice in another currency than the customer's (multi-currency
    # customers); the customer's currency when left out.
    currency: str | None = None


def invoice_json(
    invoice: invoice_store.Invoice, preview: invoice_store.Totals | None = None
) -> dict[str, Any]:
    """The invoice; a draft shows what finalizing it now would compute (`preview`)."""
    c = invoice.currency
    subtotal, discount, tax, total = (
        invoice.subtotal,
        invoice.discount_total,
        invoice.tax_total,
        invoice.total,
    )
    line_tax = {line.line_no: line.tax_amount for line in invoice.lines}
    line_rate = {line.line_no: line.tax_rate for line in invoice.lines}
    if preview is not None:
        subtotal, discount = preview.subtotal.amount, preview.discount.amount
        tax, total = preview.tax.amount, preview.total.amount
        line_tax = {f.line_no: f.tax.amount for f in preview.finals}
        line_rate = {f.line_no: preview.rate.percent / 100 for f in preview.finals}
    return {
        "id": str(invoice.id),
        "object": "invoice",
        "number": invoice.number,
        "status": invoice.status,
        "customer": str(invoice.customer_id),
        "subscription": str(invoice.subscription_id) if invoice.subscription_id else None,
        "currency": c,
        "issue_date": opt_date(invoice.issue_date),
        "due_date": opt_date(invoice.due_date),
        "supply_start": opt_date(invoice.supply_start),
        "supply_end": opt_date(invoice.supply_end),
        "subtotal": money(subtotal, c),
        "discount_total": money(discount, c),
        "tax_total": money(tax, c),
        "total": money(total, c),
        "amount_paid": money(invoice.amount_paid, c),
        "amount_credited": money(invoice.amount_credited, c),
        "amount_written_off": money(invoice.amount_written_off, c),
        "amount_due": money(invoice.amount_due, c),
        "memo": invoice.memo,
        "metadata": invoice.metadata,
        "created_at": invoice.created_at.isoformat(),
        "lines": [
            {
                "line_no": line.line_no,
                "kind": line.kind,
                "description": line.description,
                "quantity": str(line.quantity),
                "unit_amount": str(line.unit_amount),
                "amount": money(line.amount, c),
                "discount_amount": money(line.discount_amount, c),
                "net_amount": money(line.amount - line.discount_amount, c),
                "tax_rate": rate_text(line_rate.get(line.line_no, line.tax_rate)),
                "tax_amount": money(line_tax.get(line.line_no, line.tax_amount), c),
                "service_start": opt_date(line.service_start),
                "service_end": opt_date(line.service_end),
                "price": str(line.price_id) if line.price_id else None,
                "revenue_account": line.revenue_account,
            }
            for line in invoice.lines
        ],
    }


def invoice_view(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice: invoice_store.Invoice
) -> dict[str, Any]:
    """An invoice with its preview (drafts) and its collection: attempts, next action."""
    preview = (
        invoice_store.preview_totals(conn, book_id, invoice) if invoice.status == "draft" else None
    )
    still_due = invoice.status == "open" and invoice.amount_due > 0
    return {
        **invoice_json(invoice, preview),
        **collection.collection_view(conn, book_id, invoice.id, still_due),
    }


def collect_after_commit(runtime: Runtime, principal: Principal, ref: str) -> dict[str, Any] | None:
    """Execute the auto-collection attempt a finalization queued, in its own transaction
    after the finalization's commit; the invoice as it now stands, or None if none ran."""
    with unit_of_work(runtime.connection) as uow:
        ran = collection.collect_pending(uow.conn, principal.book_id, ref)
        if not ran:
            return None
        body = invoice_view(
            uow.conn, principal.book_id, invoice_store.get_invoice(uow.conn, principal.book_id, ref)
        )
        uow.commit()
    return body


class PayIn(msgspec.Struct, forbid_unknown_fields=True):
    payment_method: str | None = None
    amount: str | None = None  # a partial capture; default: all that is due


@dataclass(frozen=True, slots=True)
class LineInput:
    """An invoice line as given by a caller (HTTP or CLI), before prices are resolved."""

    description: str | None
    quantity: Decimal
    unit_amount: Decimal | None = None
    price: str | None = None
    service_start: date | None = None
    service_end: date | None = None
    revenue_account: str | None = None


def line_input(index: int, line: InvoiceLineIn) -> LineInput:
    where = f"lines[{index}]"
    return LineInput(
        description=line.description,
        quantity=decimal_field(str(line.quantity), f"{where}.quantity"),
        unit_amount=None
        if line.unit_amount is None
        else decimal_field(line.unit_amount, f"{where}.unit_amount"),
        price=line.price,
        service_start=line.service_start,
        service_end=line.service_end,
        revenue_account=line.revenue_account,
    )


def resolve_lines(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer: customer_store.Customer,
    lines: Sequence[LineInput],
    currency: str | None = None,
) -> list[invoice_store.LineSpec]:
    """Line specs for a one-off draft; a line naming a price takes its amount (the
    customer's own override when there is one) and its product's revenue account."""
    if not lines:
        raise InvalidBillingRequest("an invoice needs at least one line")
    billed_in = currency or customer.currency
    specs: list[invoice_store.LineSpec] = []
    for index, line in enumerate(lines):
        where = f"lines[{index}]"
        description = line.description
        unit_amount = line.unit_amount
        revenue_account = line.revenue_account
        price_id: uuid.UUID | None = None
        if line.price is not None:
            if unit_amount is not None:
                raise InvalidBillingRequest(
                    f"{where}: give either price or unit_amount, not both", line=index
                )
            price = catalog.get_price(conn, book_id, line.price)
            if price.customer_id is not None and price.customer_id != customer.id:
                raise InvalidBillingRequest(
                    f"{where}: price {line.price} is another customer's override", line=index
                )
            price = catalog.price_for_customer(conn, book_id, price, customer.id)
            if price.currency != billed_in:
                raise InvalidBillingRequest(
                    f"{where}: the invoice is in {billed_in}, price {price.id} is"
                    f" in {price.currency}",
                    line=index,
                    customer_currency=billed_in,
                    price_currency=price.currency,
                )
            if price.charge_model not in (ChargeModel.FLAT, ChargeModel.PER_UNIT):
                raise InvalidBillingRequest(
                    f"{where}: a one-off line can use a flat or per_unit price; this one is"
                    f" {price.charge_model.value} (give unit_amount instead)",
                    line=index,
                )
            assert price.unit_amount is not None  # flat and per_unit prices have one
            product = catalog.get_product(conn, book_id, str(price.product_id))
            unit_amount = price.unit_amount
            description = description or product.name
            revenue_account = revenue_account or product.revenue_account
            price_id = price.id
        if unit_amount is None:
            raise InvalidBillingRequest(f"{where}: unit_amount (or price) is required", line=index)
        account = revenue_account or "Income:Services"
        if not account.startswith(("Income:", "Liabilities:")):
            raise InvalidBillingRequest(
                f"{where}: revenue_account must be an Income (or deferred Liabilities) account",
                line=index,
            )
        specs.append(
            invoice_store.LineSpec(
                description=description or "",
                quantity=line.quantity,
                unit_amount=unit_amount,
                service_start=line.service_start,
                service_end=line.service_end,
                revenue_account=account,
                price_id=price_id,
            )
        )
    return specs


def create_one_off(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_ref: str,
    lines: Sequence[LineInput],
    *,
    memo: str = "",
    metadata: dict[str, Any] | None = None,
    finalize_on: date | None = None,
    currency: str | None = None,
) -> invoice_store.Invoice:
    """A one-off draft (finalized at once when `finalize_on` is given), in `currency`
    when given, else the customer's."""
    customer = customer_store.get_customer(conn, book_id, customer_ref)
    specs = resolve_lines(conn, book_id, customer, lines, currency)
    draft = invoice_store.create_draft(
        conn, book_id, str(customer.id), specs, memo=memo, metadata=metadata, currency=currency
    )
    assert draft is not None  # only subscription periods can already have an invoice
    if finalize_on is None:
        return draft
    return invoice_store.finalize_invoice(conn, book_id, str(draft.id), finalize_on)


def render_document(conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str) -> str:
    return invoice_document(conn, book_id, invoice_ref)[1]


def invoice_document(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str
) -> tuple[invoice_store.Invoice, str]:
    """The invoice and its HTML document, in the book's locale."""
    invoice = invoice_store.get_invoice(conn, book_id, invoice_ref)
    seller, buyer, tax_treatment = document_parties(conn, book_id, invoice.customer_id)
    preview = (
        invoice_store.preview_totals(conn, book_id, invoice) if invoice.status == "draft" else None
    )
    locale = book_locale(conn, book_id)
    return invoice, render_invoice_html(invoice, seller, buyer, tax_treatment, preview, locale)


class InvoicesController(Controller):
    path = "/v1/invoices"
    tags = ["billing"]

    @command("/", "createInvoice", Permission.BILLING_WRITE)
    def create_invoice(self, data: JSONBody[InvoiceIn], run: Run) -> Response[bytes]:
        if len(data.lines) > 1000:
            raise InvalidBillingRequest("an invoice may have at most 1000 lines")
        lines = [line_input(i, line) for i, line in enumerate(data.lines)]

        def work(tx: Tx) -> dict[str, Any]:
            invoice = create_one_off(
                tx.conn,
                tx.book_id,
                data.customer,
                lines,
                memo=data.memo,
                metadata=data.metadata,
                finalize_on=tx.today() if data.auto_finalize else None,
                currency=data.currency,
            )
            if data.auto_finalize:
                collection.queue_auto_collection(tx.conn, tx.book_id, str(invoice.id), tx.today())
            return invoice_view(tx.conn, tx.book_id, invoice)

        response = run(data, work)
        return _collected(response, run)

    @get("/", operation_id="listInvoices", sync_to_thread=True)
    def list_invoices(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        customer: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
        order: Annotated[
            str,
            QueryParameter(
                description="number (drafts last, then by creation) or date (issue date,"
                " then number); each item carries its lines"
            ),
        ] = "number",
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[bytes]:
        if status is not None and status not in STATUSES:
            raise ApiError(400, "invalid_status", f"status must be one of {', '.join(STATUSES)}")
        if order not in invoice_store.INVOICE_ORDERS:
            raise ApiError(400, "invalid_order", "order must be number or date")
        after = decode_sort_key(cursor)
        with Reader(runtime, principal) as conn:
            customer_id = (
                customer_store.get_customer(conn, principal.book_id, customer).id
                if customer
                else None
            )
            found = invoice_store.list_invoices(
                conn,
                principal.book_id,
                customer_id=customer_id,
                status=status,
                date_from=date_from,
                date_to=date_to,
                order=order,
                after=after,
                limit=limit,
            )
        last = invoice_store.invoice_sort_key(found[-1], order) if len(found) == limit else None
        return json_response(
            {
                "data": [invoice_json(i) for i in found],
                "next_cursor": encode_sort_key(last) if last is not None else None,
            }
        )

    @get("/{ref:str}", operation_id="getInvoice", sync_to_thread=True)
    def get_invoice(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            invoice = invoice_store.get_invoice(conn, principal.book_id, ref)
            body = invoice_view(conn, principal.book_id, invoice)
        return json_response(body)

    @get("/{ref:str}/document", operation_id="getInvoiceDocument", sync_to_thread=True)
    def document(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        format: FromQuery[str] = "html",
    ) -> Response[Any]:
        if format not in ("html", "pdf"):
            raise ApiError(400, "invalid_format", "format must be html or pdf")
        with Reader(runtime, principal) as conn:
            invoice, html = invoice_document(conn, principal.book_id, ref)
        if format == "html":
            return Response(content=html, media_type="text/html")  # Litestar adds the charset
        # Rendered after the read transaction ended: layout takes a while.
        name = invoice.number or f"draft-{invoice.id}"
        return Response(
            content=html_to_pdf(html),
            media_type="application/pdf",
            headers={"content-disposition": f'inline; filename="{name}.pdf"'},
        )

    @command("/{ref:str}/finalize", "finalizeInvoice", Permission.BILLING_WRITE, status=200)
    def finalize(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            invoice = invoice_store.finalize_invoice(tx.conn, tx.book_id, ref, tx.today())
            collection.queue_auto_collection(tx.conn, tx.book_id, str(invoice.id), tx.today())
            return invoice_view(tx.conn, tx.book_id, invoice)

        return _collected(run({"finalize": ref}, work), run)

    @command("/{ref:str}/pay", "payInvoice", Permission.BILLING_WRITE, status=200)
    def pay(self, ref: FromPath[str], data: JSONBody[PayIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            amount = None if data.amount is None else decimal_field(data.amount, "amount")
            collection.pay_invoice(
                tx.conn, tx.book_id, ref, data.payment_method, tx.today(), amount
            )
            return invoice_view(
                tx.conn, tx.book_id, invoice_store.get_invoice(tx.conn, tx.book_id, ref)
            )

        return run({"pay": ref, "body": data}, work)

    @command("/{ref:str}/void", "voidInvoice", Permission.BILLING_WRITE, status=200)
    def void(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"void": ref},
            lambda tx: invoice_json(
                invoice_store.void_invoice(tx.conn, tx.book_id, ref, tx.today())
            ),
        )

    @command(
        "/{ref:str}", "deleteDraftInvoice", Permission.BILLING_WRITE, status=200, method="DELETE"
    )
    def delete_draft(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            invoice_store.delete_draft(tx.conn, tx.book_id, ref)
            return {"id": ref, "object": "invoice", "deleted": True}

        return run({"delete": ref}, work)


def _collected(response: Response[bytes], run: Run) -> Response[bytes]:
    """The answer of a finalization, after its queued auto-collection ran (if any)."""
    status = response.status_code or 200
    if status >= 300 or response.headers.get("idempotent-replayed"):
        return response
    body = msgspec.json.decode(response.content)
    if not isinstance(body, dict) or body.get("object") != "invoice":
        return response
    after = collect_after_commit(run.runtime, run.principal, str(body["id"]))
    if after is None:
        return response
    return json_response(after, status)
