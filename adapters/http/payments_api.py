"""Payments, refunds, credit notes, applied credit and write-offs (API.md).

POST /v1/payments, GET /v1/payments[/{id}]; POST /v1/refunds, GET
/v1/refunds/{id}; POST /v1/credit-notes, GET /v1/credit-notes[/{id}];
POST /v1/invoices/{id}/apply-credit; POST /v1/invoices/{id}/mark-uncollectible.
Amounts are decimal strings; JSON numbers are refused.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.http.billing_api import invoice_json
from adapters.http.commands import require, run_command
from adapters.http.cursors import decode_cursor, next_cursor
from adapters.http.ledger_api import Reader, book_today, json_response
from adapters.http.problems import ApiError
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres import credit_notes as credit_note_store
from billing.postgres import invoices as invoice_store
from billing.postgres import payments as payment_store
from billing.postgres import write_offs
from billing.postgres.customers import get_customer
from ledger.money import minor_unit_text as money
from ledger.money import parse_amount


class AllocationIn(msgspec.Struct, forbid_unknown_fields=True):
    invoice: str
    amount: str


class PaymentIn(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    amount: str
    currency: str
    method: str
    invoice: str | None = None
    allocations: list[AllocationIn] | None = None
    received_on: date | None = None
    reference: str | None = None
    metadata: dict[str, Any] = {}


class RefundIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str
    payment: str | None = None
    customer: str | None = None
    currency: str | None = None
    method: str | None = None
    reason: str = ""
    refunded_on: date | None = None


class CreditNoteLineIn(msgspec.Struct, forbid_unknown_fields=True):
    line_no: int
    amount: str


class CreditNoteIn(msgspec.Struct, forbid_unknown_fields=True):
    invoice: str
    amount: str | None = None
    lines: list[CreditNoteLineIn] | None = None
    reason: str = ""
    credit_to: str = "receivable"


class ApplyCreditIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str | None = None


def payment_json(p: payment_store.Payment) -> dict[str, Any]:
    c = p.currency
    return {
        "id": str(p.id),
        "object": "payment",
        "customer": str(p.customer_id),
        "amount": money(p.amount, c),
        "currency": c,
        "method": p.method,
        "received_on": p.received_on.isoformat(),
        "reference": p.reference,
        "status": p.status,
        "allocations": [
            {"invoice": str(a.invoice_id), "number": a.number, "amount": money(a.amount, c)}
            for a in p.allocations
        ],
        "unapplied": money(p.unapplied, c),
        "refunded": money(p.refunded, c),
        "entry": str(p.entry_id) if p.entry_id else None,
        "metadata": p.metadata,
        "created_at": p.created_at.isoformat(),
    }


def refund_json(r: payment_store.Refund) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "object": "refund",
        "customer": str(r.customer_id),
        "payment": str(r.payment_id) if r.payment_id else None,
        "amount": money(r.amount, r.currency),
        "currency": r.currency,
        "reason": r.reason,
        "refunded_on": r.refunded_on.isoformat(),
        "entry": str(r.entry_id) if r.entry_id else None,
        "created_at": r.created_at.isoformat(),
    }


def credit_note_json(n: credit_note_store.CreditNote) -> dict[str, Any]:
    c = n.currency
    return {
        "id": str(n.id),
        "object": "credit_note",
        "number": n.number,
        "invoice": str(n.invoice_id),
        "customer": str(n.customer_id),
        "currency": c,
        "issue_date": n.issue_date.isoformat(),
        "net_amount": money(n.net_amount, c),
        "tax_amount": money(n.tax_amount, c),
        "total": money(n.total, c),
        "reason": n.reason,
        "credit_to": n.credit_to,
        "lines": n.lines,
        "entry": str(n.entry_id) if n.entry_id else None,
        "created_at": n.created_at.isoformat(),
    }


class PaymentsController(Controller):
    path = "/v1"
    tags = ["billing"]

    @post("/payments", operation_id="createPayment", sync_to_thread=True)
    def create_payment(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PaymentIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        amount = parse_amount(data.amount)
        allocations = [(a.invoice, parse_amount(a.amount)) for a in data.allocations or []]
        if data.allocations is not None and not allocations:
            raise ApiError(422, "invalid_request", "allocations, when given, must not be empty")

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            received_on = data.received_on or book_today(conn, runtime, principal)
            payment = payment_store.create_payment(
                conn,
                principal.book_id,
                data.customer,
                amount,
                data.currency,
                data.method,
                received_on,
                invoice_ref=data.invoice,
                allocations=allocations or None,
                reference=data.reference,
                metadata=data.metadata,
            )
            return 201, payment_json(payment)

        return run_command(runtime, request, principal, data, work)

    @get("/payments", operation_id="listPayments", sync_to_thread=True)
    def list_payments(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        customer: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            customer_id = get_customer(conn, principal.book_id, customer).id if customer else None
            payments = payment_store.list_payments(
                conn,
                principal.book_id,
                customer_id=customer_id,
                after=decode_cursor(cursor),
                limit=limit,
            )
        return json_response(
            {
                "data": [payment_json(p) for p in payments],
                "next_cursor": next_cursor(payments, limit, lambda p: p.id),
            }
        )

    @get("/payments/{ref:str}", operation_id="getPayment", sync_to_thread=True)
    def get_payment(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            payment = payment_store.get_payment(conn, principal.book_id, ref)
        return json_response(payment_json(payment))

    @post("/refunds", operation_id="createRefund", sync_to_thread=True)
    def create_refund(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[RefundIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        amount = parse_amount(data.amount)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            on = data.refunded_on or book_today(conn, runtime, principal)
            refund = payment_store.create_refund(
                conn,
                principal.book_id,
                amount,
                on,
                payment_ref=data.payment,
                customer_ref=data.customer,
                currency=data.currency,
                method=data.method,
                reason=data.reason,
            )
            return 201, refund_json(refund)

        return run_command(runtime, request, principal, data, work)

    @get("/refunds/{ref:str}", operation_id="getRefund", sync_to_thread=True)
    def get_refund(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            refund = payment_store.get_refund(conn, principal.book_id, ref)
        return json_response(refund_json(refund))

    @post("/credit-notes", operation_id="createCreditNote", sync_to_thread=True)
    def create_credit_note(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreditNoteIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        amount = parse_amount(data.amount) if data.amount is not None else None
        lines = [(line.line_no, parse_amount(line.amount)) for line in data.lines or []]

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            note = credit_note_store.create_credit_note(
                conn,
                principal.book_id,
                data.invoice,
                book_today(conn, runtime, principal),
                amount=amount,
                lines=lines or None,
                reason=data.reason,
                credit_to=data.credit_to,
            )
            return 201, credit_note_json(note)

        return run_command(runtime, request, principal, data, work)

    @get("/credit-notes", operation_id="listCreditNotes", sync_to_thread=True)
    def list_credit_notes(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        invoice: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            invoice_id = (
                invoice_store.get_invoice(conn, principal.book_id, invoice).id if invoice else None
            )
            notes = credit_note_store.list_credit_notes(
                conn,
                principal.book_id,
                invoice_id=invoice_id,
                after=decode_cursor(cursor),
                limit=limit,
            )
        return json_response(
            {
                "data": [credit_note_json(n) for n in notes],
                "next_cursor": next_cursor(notes, limit, lambda n: n.id),
            }
        )

    @get("/credit-notes/{ref:str}", operation_id="getCreditNote", sync_to_thread=True)
    def get_credit_note(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            note = credit_note_store.get_credit_note(conn, principal.book_id, ref)
        return json_response(credit_note_json(note))

    @post("/invoices/{ref:str}/apply-credit", operation_id="applyCredit", sync_to_thread=True)
    def apply_credit(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        data: JSONBody[ApplyCreditIn | None] = None,
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        body = data or ApplyCreditIn()
        amount = parse_amount(body.amount) if body.amount is not None else None
        if amount is not None and amount <= 0:
            raise ApiError(422, "invalid_request", "amount must be greater than zero")

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            applied = invoice_store.apply_credit(
                conn, principal.book_id, ref, book_today(conn, runtime, principal), amount
            )
            invoice = invoice_store.get_invoice(conn, principal.book_id, ref)
            return 200, {"applied": money(applied, invoice.currency), **invoice_json(invoice)}

        return run_command(runtime, request, principal, {"apply_credit": ref, "body": body}, work)

    @post(
        "/invoices/{ref:str}/mark-uncollectible",
        operation_id="markInvoiceUncollectible",
        sync_to_thread=True,
    )
    def mark_uncollectible(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            invoice = write_offs.mark_uncollectible(
                conn, principal.book_id, ref, book_today(conn, runtime, principal)
            )
            return 200, invoice_json(invoice)

        return run_command(runtime, request, principal, {"mark_uncollectible": ref}, work)
