"""Customers' payment methods (API.md, "Payments, collections and FX").

The body is read as a plain JSON object so that a card number in any field,
known or not, is seen and refused before anything is stored.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres import payment_methods as pm_store
from billing.postgres.customers import get_customer


def payment_method_json(pm: pm_store.PaymentMethod, default: bool) -> dict[str, Any]:
    return {
        "id": str(pm.id),
        "object": "payment_method",
        "customer": str(pm.customer_id),
        "type": pm.type,
        "gateway": pm.gateway,
        "token": pm.token,
        "brand": pm.brand,
        "last4": pm.last4,
        "exp_month": pm.exp_month,
        "exp_year": pm.exp_year,
        "details": pm.details,
        "default": default,
        "created_at": pm.created_at.isoformat(),
        "detached_at": pm.detached_at.isoformat() if pm.detached_at else None,
    }


def _json(tx: Tx, customer_ref: str, pm: pm_store.PaymentMethod) -> dict[str, Any]:
    customer = get_customer(tx.conn, tx.book_id, customer_ref)
    return payment_method_json(pm, customer.default_payment_method == pm.id)


class PaymentMethodsController(Controller):
    path = "/v1/customers/{ref:str}/payment-methods"
    tags = ["payments"]

    @command("/", "attachPaymentMethod", Permission.BILLING_WRITE)
    def attach(
        self, ref: FromPath[str], data: JSONBody[dict[str, Any]], run: Run
    ) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            pm = pm_store.attach_payment_method(tx.conn, tx.book_id, ref, data, tx.today())
            return _json(tx, ref, pm)

        return run({"ref": ref, "body": data}, work)

    @get("/", operation_id="listPaymentMethods", sync_to_thread=True)
    def list_methods(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            customer = get_customer(conn, principal.book_id, ref)
            found = pm_store.list_payment_methods(conn, principal.book_id, ref)
            data = [payment_method_json(p, customer.default_payment_method == p.id) for p in found]
        return json_response({"data": data})

    @command(
        "/{pm:str}", "detachPaymentMethod", Permission.BILLING_WRITE, status=200, method="DELETE"
    )
    def detach(self, ref: FromPath[str], pm: FromPath[str], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            found = pm_store.detach_payment_method(tx.conn, tx.book_id, ref, pm)
            return _json(tx, ref, found)

        return run({"detach": [ref, pm]}, work)
