"""Billing endpoints: customers (with their statement), products, prices, invoices
and the invoice document.

Every figure a customer or invoice shows beside what it stores (credit
balance, balance due, amount paid, amount due, status) is read from the
ledger's postings. Amounts are decimal strings written with the currency's
minor unit ("108.00", JPY "1000", KWD "1.500"); unit prices keep the places
they were given (up to 12).
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
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.http.commands import require, run_command
from adapters.http.cursors import decode_cursor, next_cursor
from adapters.http.ledger_api import Reader, book_today, json_response
from adapters.http.problems import ApiError
from adapters.invoice_document import DocumentParty, render_invoice_html
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres import catalog
from billing.postgres import customers as customer_store
from billing.postgres import invoices as invoice_store
from billing.rating import ChargeModel
from ledger.errors import InvalidMoney
from ledger.money import minor_unit_text as money
from ledger.money import parse_amount

STATUSES = ("draft", "open", "paid", "void", "uncollectible")
MAX_PAGE = 1000


# --- request bodies -------------------------------------------------------------------


class CustomerIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    currency: str
    email: str | None = None
    external_id: str | None = None
    payment_terms: str = "net"
    payment_terms_days: int = 30
    tax_rate: str = "0"
    tax_treatment: str = "taxable"
    address: dict[str, Any] = {}
    metadata: dict[str, Any] = {}


class CustomerUpdateIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    currency: str | msgspec.UnsetType = msgspec.UNSET
    email: str | msgspec.UnsetType | None = msgspec.UNSET
    external_id: str | msgspec.UnsetType | None = msgspec.UNSET
    payment_terms: str | msgspec.UnsetType = msgspec.UNSET
    payment_terms_days: int | msgspec.UnsetType = msgspec.UNSET
    tax_rate: str | msgspec.UnsetType = msgspec.UNSET
    tax_treatment: str | msgspec.UnsetType = msgspec.UNSET
    address: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class ProductIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str | None = None
    revenue_account: str = "Income:Subscriptions"
    metadata: dict[str, Any] = {}


class TierIn(msgspec.Struct, forbid_unknown_fields=True):
    up_to: int | None
    unit_amount: str = "0"
    flat_amount: str = "0"


class PriceIn(msgspec.Struct, forbid_unknown_fields=True):
    product: str
    currency: str
    charge_model: str
    unit_amount: str | None = None
    tiers: list[TierIn] | None = None
    package_size: int | None = None
    interval: str | None = None
    interval_count: int = 1
    metric: str | None = None
    aggregation: str | None = None
    tax_behavior: str = "exclusive"
    customer: str | None = None
    overrides_price: str | None = None
    metadata: dict[str, Any] = {}


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


# --- representations ------------------------------------------------------------------


def rate_text(value: Decimal) -> str:
    """A tax rate fraction with at least two places: "0.10", "0.075", "0.00"."""
    normalized = Decimal(value).normalize()
    if normalized.as_tuple().exponent in range(-1, 100):  # fewer than two places
        normalized = normalized.quantize(Decimal("0.01"))
    return format(normalized, "f")


def _opt_date(value: date | None) -> str | None:
    return value.isoformat() if value else None


def customer_json(
    customer: customer_store.Customer, credit: Decimal, due: Decimal
) -> dict[str, Any]:
    return {
        "id": str(customer.id),
        "object": "customer",
        "name": customer.name,
        "currency": customer.currency,
        "email": customer.email,
        "external_id": customer.external_id,
        "payment_terms": customer.payment_terms,
        "payment_terms_days": customer.payment_terms_days,
        "tax_rate": rate_text(customer.tax_rate),
        "tax_treatment": customer.tax_treatment,
        "address": customer.address,
        "metadata": customer.metadata,
        "created_at": customer.created_at.isoformat(),
        "credit_balance": money(credit, customer.currency),
        "balance_due": money(due, customer.currency),
    }


def customer_with_balances(
    conn: psycopg.Connection, book_id: uuid.UUID, customer: customer_store.Customer
) -> dict[str, Any]:
    credit = customer_store.credit_balance(conn, book_id, customer.id, customer.currency)
    due = customer_store.receivable_balance(conn, book_id, customer.id, customer.currency)
    return customer_json(customer, credit, due)


def product_json(product: catalog.Product) -> dict[str, Any]:
    return {
        "id": str(product.id),
        "object": "product",
        "name": product.name,
        "description": product.description,
        "revenue_account": product.revenue_account,
        "active": product.active,
        "metadata": product.metadata,
    }


def price_json(price: catalog.Price) -> dict[str, Any]:
    return {
        "id": str(price.id),
        "object": "price",
        "product": str(price.product_id),
        "currency": price.currency,
        "charge_model": price.charge_model.value,
        "unit_amount": None if price.unit_amount is None else str(price.unit_amount),
        "tiers": price.tiers,
        "package_size": price.package_size,
        "recurring": price.recurring,
        "interval": price.interval.value if price.interval else None,
        "interval_count": price.interval_count if price.interval else None,
        "metric": price.metric,
        "aggregation": price.aggregation,
        "tax_behavior": price.tax_behavior,
        "customer": str(price.customer_id) if price.customer_id else None,
        "overrides_price": str(price.overrides_price_id) if price.overrides_price_id else None,
        "active": price.active,
        "metadata": price.metadata,
    }


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
        "issue_date": _opt_date(invoice.issue_date),
        "due_date": _opt_date(invoice.due_date),
        "supply_start": _opt_date(invoice.supply_start),
        "supply_end": _opt_date(invoice.supply_end),
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
                "service_start": _opt_date(line.service_start),
                "service_end": _opt_date(line.service_end),
                "price": str(line.price_id) if line.price_id else None,
                "revenue_account": line.revenue_account,
            }
            for line in invoice.lines
        ],
    }


def invoice_view(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice: invoice_store.Invoice
) -> dict[str, Any]:
    preview = (
        invoice_store.preview_totals(conn, book_id, invoice) if invoice.status == "draft" else None
    )
    return invoice_json(invoice, preview)


def statement_json(
    customer: customer_store.Customer, statement: customer_store.Statement
) -> dict[str, Any]:
    c = statement.currency
    return {
        "object": "customer_statement",
        "customer": str(customer.id),
        "customer_name": customer.name,
        "currency": c,
        "from": statement.date_from.isoformat(),
        "to": statement.date_to.isoformat(),
        "opening_balance": money(statement.opening_balance, c),
        "lines": [
            {
                "date": line.effective_date.isoformat(),
                "entry_id": str(line.entry_id),
                "kind": line.kind,
                "document": line.document,
                "reference": line.reference,
                "invoices": list(line.invoices),
                "description": line.description,
                "amount": money(line.amount, c),
                "balance": money(line.balance, c),
            }
            for line in statement.lines
        ],
        "closing_balance": money(statement.closing_balance, c),
    }


# --- request parsing ------------------------------------------------------------------


def _decimal(value: str, field: str) -> Decimal:
    try:
        return parse_amount(value)
    except InvalidMoney as exc:
        exc.message = f"{field}: {exc.message}"
        exc.fields["field"] = field
        raise


def customer_spec(body: CustomerIn) -> customer_store.CustomerSpec:
    return customer_store.CustomerSpec(
        name=body.name,
        currency=body.currency,
        email=body.email,
        external_id=body.external_id,
        payment_terms=body.payment_terms,
        payment_terms_days=body.payment_terms_days,
        tax_rate=_decimal(body.tax_rate, "tax_rate"),
        tax_treatment=body.tax_treatment,
        address=body.address,
        metadata=body.metadata,
    )


def _changes(body: CustomerUpdateIn) -> dict[str, Any]:
    changes = {
        name: getattr(body, name)
        for name in body.__struct_fields__
        if getattr(body, name) is not msgspec.UNSET
    }
    if "tax_rate" in changes:
        changes["tax_rate"] = _decimal(changes["tax_rate"], "tax_rate")
    return changes


def price_spec(body: PriceIn) -> catalog.PriceSpec:
    return catalog.PriceSpec(
        product=body.product,
        currency=body.currency,
        charge_model=body.charge_model,
        unit_amount=None if body.unit_amount is None else _decimal(body.unit_amount, "unit_amount"),
        tiers=None
        if body.tiers is None
        else [
            {"up_to": t.up_to, "unit_amount": t.unit_amount, "flat_amount": t.flat_amount}
            for t in body.tiers
        ],
        package_size=body.package_size,
        interval=body.interval,
        interval_count=body.interval_count,
        metric=body.metric,
        aggregation=body.aggregation,
        tax_behavior=body.tax_behavior,
        customer=body.customer,
        overrides_price=body.overrides_price,
        metadata=body.metadata,
    )


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
        quantity=_decimal(str(line.quantity), f"{where}.quantity"),
        unit_amount=None
        if line.unit_amount is None
        else _decimal(line.unit_amount, f"{where}.unit_amount"),
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
) -> list[invoice_store.LineSpec]:
    """Line specs for a one-off draft; a line naming a price takes its amount (the
    customer's own override when there is one) and its product's revenue account."""
    if not lines:
        raise InvalidBillingRequest("an invoice needs at least one line")
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
            if price.currency != customer.currency:
                raise InvalidBillingRequest(
                    f"{where}: the customer bills in {customer.currency}, price {price.id} is"
                    f" in {price.currency}",
                    line=index,
                    customer_currency=customer.currency,
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
) -> invoice_store.Invoice:
    """A one-off draft (finalized at once when `finalize_on` is given)."""
    customer = customer_store.get_customer(conn, book_id, customer_ref)
    specs = resolve_lines(conn, book_id, customer, lines)
    draft = invoice_store.create_draft(
        conn, book_id, str(customer.id), specs, memo=memo, metadata=metadata
    )
    assert draft is not None  # only subscription periods can already have an invoice
    if finalize_on is None:
        return draft
    return invoice_store.finalize_invoice(conn, book_id, str(draft.id), finalize_on)


def render_document(conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str) -> str:
    invoice = invoice_store.get_invoice(conn, book_id, invoice_ref)
    customer = customer_store.get_customer(conn, book_id, str(invoice.customer_id))
    row = conn.execute("select name, settings from books where id = %s", (book_id,)).fetchone()
    assert row is not None
    settings: dict[str, Any] = dict(row[1] or {})
    seller = DocumentParty(
        name=str(settings.get("legal_name") or row[0]),
        address=settings.get("address"),
        tax_id=settings.get("tax_id"),
        email=settings.get("email"),
    )
    buyer = DocumentParty(
        name=customer.name,
        address=customer.address or None,
        tax_id=customer.metadata.get("tax_id") if isinstance(customer.metadata, dict) else None,
        email=customer.email,
    )
    preview = (
        invoice_store.preview_totals(conn, book_id, invoice) if invoice.status == "draft" else None
    )
    return render_invoice_html(invoice, seller, buyer, customer.tax_treatment, preview)


# --- cursors --------------------------------------------------------------------------


# --- controllers ----------------------------------------------------------------------


class CustomersController(Controller):
    path = "/v1"
    tags = ["billing"]

    @post("/customers", operation_id="upsertCustomer", sync_to_thread=True)
    def upsert_customer(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CustomerIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        spec = customer_spec(data)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            customer, created = customer_store.upsert_customer(conn, principal.book_id, spec)
            return (201 if created else 200), customer_with_balances(
                conn, principal.book_id, customer
            )

        return run_command(runtime, request, principal, data, work)

    @get("/customers", operation_id="listCustomers", sync_to_thread=True)
    def list_customers(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[bytes]:
        after = decode_cursor(cursor)
        with Reader(runtime, principal) as conn:
            found = customer_store.list_customers(conn, principal.book_id, after=after, limit=limit)
            data = [customer_with_balances(conn, principal.book_id, c) for c in found]
        return json_response(
            {"data": data, "next_cursor": next_cursor(found, limit, lambda c: c.id)}
        )

    @get("/customers/{ref:str}", operation_id="getCustomer", sync_to_thread=True)
    def get_customer(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            customer = customer_store.get_customer(conn, principal.book_id, ref)
            body = customer_with_balances(conn, principal.book_id, customer)
        return json_response(body)

    @post("/customers/{ref:str}", operation_id="updateCustomer", sync_to_thread=True)
    def update_customer(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        data: JSONBody[CustomerUpdateIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        changes = _changes(data)
        currency = changes.pop("currency", None)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            current = customer_store.get_customer(conn, principal.book_id, ref)
            if currency is not None and currency != current.currency:
                raise InvalidBillingRequest(
                    f"customer {ref!r} bills in {current.currency}; its currency cannot change"
                )
            customer = customer_store.update_customer(
                conn, principal.book_id, str(current.id), changes
            )
            return 200, customer_with_balances(conn, principal.book_id, customer)

        return run_command(runtime, request, principal, {"ref": ref, "body": data}, work)

    @get("/customers/{ref:str}/statement", operation_id="getCustomerStatement", sync_to_thread=True)
    def statement(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            customer = customer_store.get_customer(conn, principal.book_id, ref)
            end = date_to or book_today(conn, runtime, principal)
            start = date_from or end.replace(day=1)
            found = customer_store.statement(
                conn, principal.book_id, customer.id, customer.currency, start, end
            )
        return json_response(statement_json(customer, found))


class CatalogController(Controller):
    path = "/v1"
    tags = ["billing"]

    @post("/products", operation_id="createProduct", sync_to_thread=True)
    def create_product(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ProductIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            product = catalog.create_product(
                conn,
                principal.book_id,
                data.name,
                description=data.description,
                revenue_account=data.revenue_account,
                metadata=data.metadata,
            )
            return 201, product_json(product)

        return run_command(runtime, request, principal, data, work)

    @get("/products", operation_id="listProducts", sync_to_thread=True)
    def list_products(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[bytes]:
        after = decode_cursor(cursor)
        with Reader(runtime, principal) as conn:
            found = catalog.list_products(conn, principal.book_id, after=after, limit=limit)
        return json_response(
            {
                "data": [product_json(p) for p in found],
                "next_cursor": next_cursor(found, limit, lambda p: p.id),
            }
        )

    @get("/products/{ref:str}", operation_id="getProduct", sync_to_thread=True)
    def get_product(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            product = catalog.get_product(conn, principal.book_id, ref)
        return json_response(product_json(product))

    @post("/prices", operation_id="createPrice", sync_to_thread=True)
    def create_price(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PriceIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        spec = price_spec(data)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            return 201, price_json(catalog.create_price(conn, principal.book_id, spec))

        return run_command(runtime, request, principal, data, work)

    @get("/prices/{ref:str}", operation_id="getPrice", sync_to_thread=True)
    def get_price(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            price = catalog.get_price(conn, principal.book_id, ref)
        return json_response(price_json(price))


class InvoicesController(Controller):
    path = "/v1/invoices"
    tags = ["billing"]

    @post("/", operation_id="createInvoice", sync_to_thread=True)
    def create_invoice(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[InvoiceIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        if len(data.lines) > 1000:
            raise InvalidBillingRequest("an invoice may have at most 1000 lines")
        lines = [line_input(i, line) for i, line in enumerate(data.lines)]

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            book_id = principal.book_id
            invoice = create_one_off(
                conn,
                book_id,
                data.customer,
                lines,
                memo=data.memo,
                metadata=data.metadata,
                finalize_on=book_today(conn, runtime, principal) if data.auto_finalize else None,
            )
            return 201, invoice_view(conn, book_id, invoice)

        return run_command(runtime, request, principal, data, work)

    @get("/", operation_id="listInvoices", sync_to_thread=True)
    def list_invoices(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        customer: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[bytes]:
        if status is not None and status not in STATUSES:
            raise ApiError(400, "invalid_status", f"status must be one of {', '.join(STATUSES)}")
        after = decode_cursor(cursor)
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
                after=after,
                limit=limit,
            )
        return json_response(
            {
                "data": [invoice_json(i) for i in found],
                "next_cursor": next_cursor(found, limit, lambda i: i.id),
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
    ) -> Response[str]:
        with Reader(runtime, principal) as conn:
            html = render_document(conn, principal.book_id, ref)
        return Response(content=html, media_type="text/html; charset=utf-8")

    @post("/{ref:str}/finalize", operation_id="finalizeInvoice", sync_to_thread=True)
    def finalize(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            today = book_today(conn, runtime, principal)
            invoice = invoice_store.finalize_invoice(conn, principal.book_id, ref, today)
            return 200, invoice_json(invoice)

        return run_command(runtime, request, principal, {"finalize": ref}, work)

    @post("/{ref:str}/void", operation_id="voidInvoice", sync_to_thread=True)
    def void(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            today = book_today(conn, runtime, principal)
            invoice = invoice_store.void_invoice(conn, principal.book_id, ref, today)
            return 200, invoice_json(invoice)

        return run_command(runtime, request, principal, {"void": ref}, work)

    @delete("/{ref:str}", operation_id="deleteDraftInvoice", sync_to_thread=True, status_code=200)
    def delete_draft(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            invoice_store.delete_draft(conn, principal.book_id, ref)
            return 200, {"id": ref, "object": "invoice", "deleted": True}

        return run_command(runtime, request, principal, {"delete": ref}, work)


BILLING_CONTROLLERS = [CustomersController, CatalogController, InvoicesController]
