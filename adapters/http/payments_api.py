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
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.gateways.collection import refund_through_gateway
from adapters.http.cursors import decode_cursor, id_page
from adapters.http.invoices_api import invoice_json
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.invoice_document import credit_note_document
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

    @command("/payments", "createPayment", Permission.BILLING_WRITE)
    def create_payment(self, data: JSONBody[PaymentIn], run: Run) -> Response[bytes]:
        amount = parse_amount(data.amount)
        allocations = [(a.invoice, parse_amount(a.amount)) for a in data.allocations or []]
        if data.allocations is not None and not allocations:
            raise ApiError(422, "invalid_request", "allocations, when given, must not be empty")

        def work(tx: Tx) -> dict[str, Any]:
            payment = payment_store.create_payment(
                tx.conn,
                tx.book_id,
                data.customer,
                amount,
                data.currency,
                data.method,
                data.received_on or tx.today(),
                invoice_ref=data.invoice,
                allocations=allocations or None,
                reference=data.reference,
                metadata=data.metadata,
            )
            return payment_json(payment)

        return run(data, work)

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
        return json_response(id_page(payments, limit, payment_json))

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

    @command("/refunds", "createRefund", Permission.BILLING_WRITE)
    def create_refund(self, data: JSONBody[RefundIn], run: Run) -> Response[bytes]:
        amount = parse_amount(data.amount)

        def work(tx: Tx) -> dict[str, Any]:
            refund = payment_store.create_refund(
                tx.conn,
                tx.book_id,
                amount,
                data.refunded_on or tx.today(),
                payment_ref=data.payment,
                customer_ref=data.customer,
                currency=data.currency,
                method=data.method,
                reason=data.reason,
            )
            refund_through_gateway(tx.conn, tx.book_id, refund)
            return refund_json(refund)

        return run(data, work)

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

    @command("/credit-notes", "createCreditNote", Permission.BILLING_WRITE)
    def create_credit_note(self, data: JSONBody[CreditNoteIn], run: Run) -> Response[bytes]:
        amount = parse_amount(data.amount) if data.amount is not None else None
        lines = [(line.line_no, parse_amount(line.amount)) for line in data.lines or []]

        def work(tx: Tx) -> dict[str, Any]:
            note = credit_note_store.create_credit_note(
                tx.conn,
                tx.book_id,
                data.invoice,
                tx.today(),
                amount=amount,
                lines=lines or None,
                reason=data.reason,
                credit_to=data.credit_to,
            )
            return credit_note_json(note)

        return run(data, work)

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
        return json_response(id_page(notes, limit, credit_note_json))

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

    @get(
        "/credit-notes/{ref:str}/document",
        operation_id="getCreditNoteDocument",
        sync_to_thread=True,
    )
    def credit_note_html(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[str]:
        with Reader(runtime, principal) as conn:
            html = credit_note_document(conn, principal.book_id, ref)
        return Response(content=html, media_type="text/html")  # Litestar adds the charset

    @command(
        "/invoices/{ref:str}/apply-credit", "applyCredit", Permission.BILLING_WRITE, status=200
    )
    def apply_credit(
        self, ref: FromPath[str], run: Run, data: JSONBody[ApplyCreditIn | None] = None
    ) -> Response[bytes]:
        body = data or ApplyCreditIn()
        amount = parse_amount(body.amount) if body.amount is not None else None
        if amount is not None and amount <= 0:
            raise ApiError(422, "invalid_request", "amount must be greater than zero")

        def work(tx: Tx) -> dict[str, Any]:
            applied = invoice_store.apply_credit(tx.conn, tx.book_id, ref, tx.today(), amount)
            invoice = invoice_store.get_invoice(tx.conn, tx.book_id, ref)
            return {"applied": money(applied, invoice.currency), **invoice_json(invoice)}

        return run({"apply_credit": ref, "body": body}, work)

    @command(
        "/invoices/{ref:str}/mark-uncollectible",
        "markInvoiceUncollectible",
        Permission.BILLING_WRITE,
        status=200,
    )
    def mark_uncollectible(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"mark_uncollectible": ref},
            lambda tx: invoice_json(
                write_offs.mark_uncollectible(tx.conn, tx.book_id, ref, tx.today())
            ),
        )
