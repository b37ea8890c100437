"""Customers and their statement (API.md).

A customer's credit balance and balance due are read from the ledger's postings.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.http.billing_fields import MAX_PAGE, decimal_field, rate_text
from adapters.http.cursors import decode_cursor, next_cursor
from adapters.http.routes import Reader, Reply, Run, Tx, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres import customers as customer_store
from ledger.money import minor_unit_text as money


class _CustomerFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A customer's optional fields: left out, a field keeps its value; `null`
    clears it (customer_store.cleared)."""

    email: str | msgspec.UnsetType | None = msgspec.UNSET
    external_id: str | msgspec.UnsetType | None = msgspec.UNSET
    payment_terms: str | msgspec.UnsetType | None = msgspec.UNSET
    payment_terms_days: int | msgspec.UnsetType | None = msgspec.UNSET
    tax_rate: str | msgspec.UnsetType | None = msgspec.UNSET
    tax_treatment: str | msgspec.UnsetType | None = msgspec.UNSET
    address: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    collection_method: str | msgspec.UnsetType | None = msgspec.UNSET
    default_payment_method: str | msgspec.UnsetType | None = msgspec.UNSET


class CustomerIn(_CustomerFields, kw_only=True, forbid_unknown_fields=True):
    """An upsert: with a known external_id it merges into that customer."""

    name: str
    currency: str


class CustomerUpdateIn(_CustomerFields, kw_only=True, forbid_unknown_fields=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    currency: str | msgspec.UnsetType = msgspec.UNSET


def _pm_id(ref: str | None) -> uuid.UUID | None:
    if ref is None:
        return None
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise InvalidBillingRequest(
            f"default_payment_method {ref!r} is not a payment method id"
        ) from None


def customer_json(
    customer: customer_store.Customer,
    credit: Decimal,
    due: Decimal,
    balances: dict[str, tuple[Decimal, Decimal]] | None = None,
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
        # every currency the customer is billed or holds credit in (its own first)
        "balances": [
            {"currency": c, "balance_due": money(d, c), "credit_balance": money(cr, c)}
            for c, (d, cr) in sorted(
                (balances or {customer.currency: (due, credit)}).items(),
                key=lambda kv: (kv[0] != customer.currency, kv[0]),
            )
        ],
        "collection_method": customer.collection_method,
        "default_payment_method": (
            str(customer.default_payment_method) if customer.default_payment_method else None
        ),
    }


def customer_with_balances(
    conn: psycopg.Connection, book_id: uuid.UUID, customer: customer_store.Customer
) -> dict[str, Any]:
    found = customer_store.balances_by_currency(conn, book_id, customer.id)
    due, credit = found.setdefault(customer.currency, (Decimal(0), Decimal(0)))
    return customer_json(customer, credit, due, found)


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


def customer_spec(body: CustomerIn) -> tuple[customer_store.CustomerSpec, set[str]]:
    """The spec of an upsert and the fields it names (the ones a merge changes)."""
    given = _changes(body)
    spec = customer_store.CustomerSpec(**customer_store.cleared(given))
    return spec, set(given)


def _changes(body: CustomerIn | CustomerUpdateIn) -> dict[str, Any]:
    changes = {
        name: getattr(body, name)
        for name in body.__struct_fields__
        if getattr(body, name) is not msgspec.UNSET
    }
    if changes.get("tax_rate") is not None:
        changes["tax_rate"] = decimal_field(changes["tax_rate"], "tax_rate")
    if "default_payment_method" in changes:
        changes["default_payment_method"] = _pm_id(changes["default_payment_method"])
    return changes


class CustomersController(Controller):
    path = "/v1"
    tags = ["billing"]

    @command("/customers", "upsertCustomer", Permission.BILLING_WRITE)
    def upsert_customer(self, data: JSONBody[CustomerIn], run: Run) -> Response[bytes]:
        spec, given = customer_spec(data)

        def work(tx: Tx) -> Reply:
            customer, created = customer_store.upsert_customer(
                tx.conn, tx.book_id, spec, given=given
            )
            return Reply(
                201 if created else 200, customer_with_balances(tx.conn, tx.book_id, customer)
            )

        return run(data, work)

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

    @command("/customers/{ref:str}", "updateCustomer", Permission.BILLING_WRITE, status=200)
    def update_customer(
        self, ref: FromPath[str], data: JSONBody[CustomerUpdateIn], run: Run
    ) -> Response[bytes]:
        changes = _changes(data)
        currency = changes.pop("currency", None)

        def work(tx: Tx) -> dict[str, Any]:
            current = customer_store.get_customer(tx.conn, tx.book_id, ref)
            if currency is not None and currency != current.currency:
                raise InvalidBillingRequest(
                    f"customer {ref!r} bills in {current.currency}; its currency cannot change"
                )
            customer = customer_store.update_customer(tx.conn, tx.book_id, str(current.id), changes)
            return customer_with_balances(tx.conn, tx.book_id, customer)

        return run({"ref": ref, "body": data}, work)

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
