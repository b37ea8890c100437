"""Subscription endpoints, coupons and billing runs.

- `POST /v1/subscriptions`, `GET /v1/subscriptions[/{id}]`,
  `POST /v1/subscriptions/{id}/change|cancel|pause|resume`
- `POST /v1/coupons`
- `POST /v1/billing-runs` (`{"as_of": date}`, default the book's today),
  `GET /v1/billing-runs/{id}`

A billing run is many transactions (one per batch), so it does not go through
`run_command`'s single unit of work; it is safe to repeat by construction
(each subscription period is invoiced once), which is what an
Idempotency-Key would give. A run with `as_of` after the book's today (real
or simulated clock) is refused with 422: billing in advance never runs ahead
of the clock.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.http.billing_api import invoice_view
from adapters.http.commands import require, run_command
from adapters.http.cursors import decode_cursor, next_cursor
from adapters.http.ledger_api import Reader, book_today, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres import billing_runs
from billing.postgres import subscriptions as store
from billing.postgres.invoices import Invoice
from ledger.errors import InvalidMoney
from ledger.money import minor_unit_text as money
from ledger.money import parse_amount
from ledger.postgres import books as book_store


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    price: str
    quantity: str | int = 1


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    items: list[ItemIn]
    start_date: date | None = None
    trial_end: date | None = None
    billing_anchor: date | None = None
    coupon: str | None = None
    metadata: dict[str, Any] = {}


class ChangeIn(msgspec.Struct, forbid_unknown_fields=True):
    items: list[ItemIn]
    effective_date: date | None = None
    proration: str = "invoice_now"


class CancelIn(msgspec.Struct, forbid_unknown_fields=True):
    at: str = "now"


class CouponIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    duration: str
    percent_off: str | None = None
    amount_off: str | None = None
    currency: str | None = None
    duration_in_periods: int | None = None


class BillingRunIn(msgspec.Struct, forbid_unknown_fields=True):
    as_of: date | None = None


def _quantity(index: int, value: str | int) -> Decimal:
    try:
        return parse_amount(value)
    except InvalidMoney as exc:
        raise InvalidBillingRequest(f"items[{index}].quantity: {exc.message}", item=index) from None


def item_specs(items: list[ItemIn]) -> list[store.ItemSpec]:
    return [store.ItemSpec(i.price, _quantity(n, i.quantity)) for n, i in enumerate(items)]


def _d(value: date | None) -> str | None:
    return value.isoformat() if value else None


def subscription_json(sub: store.Subscription) -> dict[str, Any]:
    return {
        "id": str(sub.id),
        "object": "subscription",
        "customer": str(sub.customer_id),
        "status": sub.status.value,
        "currency": sub.currency,
        "start_date": sub.start_date.isoformat(),
        "billing_anchor": sub.billing_anchor.isoformat(),
        "interval": sub.interval,
        "interval_count": sub.interval_count,
        "trial_end": _d(sub.trial_end),
        "current_period_start": _d(sub.current_period.start if sub.current_period else None),
        "current_period_end": _d(sub.current_period.end if sub.current_period else None),
        "next_period_start": sub.next_period_start.isoformat(),
        "periods_billed": sub.periods_billed,
        "cancel_at": _d(sub.cancel_at),
        "canceled_on": _d(sub.canceled_on),
        "paused_on": _d(sub.paused_on),
        "coupon": str(sub.coupon_id) if sub.coupon_id else None,
        "metadata": sub.metadata,
        "items": [
            {
                "id": str(i.id),
                "price": str(i.price_id),
                "quantity": str(i.quantity),
                "effective_from": i.effective_from.isoformat(),
                "effective_to": _d(i.effective_to),
            }
            for i in sub.items
        ],
    }


def _with_invoice(
    conn: psycopg.Connection, principal: Principal, sub: store.Subscription, inv: Invoice | None
) -> dict[str, Any]:
    body = subscription_json(sub)
    body["invoice"] = invoice_view(conn, principal.book_id, inv) if inv is not None else None
    return body


def run_json(run: billing_runs.BillingRun) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "object": "billing_run",
        "as_of": run.as_of.isoformat(),
        "status": run.status,
        "invoices_created": run.invoices_created,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


class SubscriptionsController(Controller):
    path = "/v1/subscriptions"
    tags = ["billing"]

    @post("/", operation_id="createSubscription", sync_to_thread=True)
    def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[SubscriptionIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        spec = store.SubscriptionSpec(
            data.customer,
            item_specs(data.items),
            data.start_date,
            data.trial_end,
            data.billing_anchor,
            data.coupon,
            data.metadata,
        )

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            today = book_today(conn, runtime, principal)
            return 201, subscription_json(
                store.create_subscription(conn, principal.book_id, spec, today)
            )

        return run_command(runtime, request, principal, data, work)

    @get("/", operation_id="listSubscriptions", sync_to_thread=True)
    def list(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        customer: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> Response[bytes]:
        after = decode_cursor(cursor)
        with Reader(runtime, principal) as conn:
            today = book_today(conn, runtime, principal)
            customer_id = None
            if customer is not None:
                from billing.postgres.customers import get_customer

                customer_id = get_customer(conn, principal.book_id, customer).id
            subs = store.list_subscriptions(
                conn, principal.book_id, today, customer_id=customer_id, after=after, limit=limit
            )
        return json_response(
            {
                "data": [subscription_json(s) for s in subs],
                "next_cursor": next_cursor(subs, limit, lambda s: s.id),
            }
        )

    @get("/{ref:str}", operation_id="getSubscription", sync_to_thread=True)
    def get_one(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            today = book_today(conn, runtime, principal)
            sub = store.get_subscription(conn, principal.book_id, ref, today)
        return json_response(subscription_json(sub))

    @post("/{ref:str}/change", operation_id="changeSubscription", sync_to_thread=True)
    def change(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        data: JSONBody[ChangeIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        items = item_specs(data.items)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            today = book_today(conn, runtime, principal)
            sub, invoice = store.change_subscription(
                conn, principal.book_id, ref, items, data.effective_date, data.proration, today
            )
            return 200, _with_invoice(conn, principal, sub, invoice)

        return run_command(runtime, request, principal, {"ref": ref, "body": data}, work)

    @post("/{ref:str}/cancel", operation_id="cancelSubscription", sync_to_thread=True)
    def cancel(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        data: JSONBody[CancelIn | None] = None,
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        at = data.at if data is not None else "now"

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            today = book_today(conn, runtime, principal)
            sub, invoice = store.cancel_subscription(conn, principal.book_id, ref, at, today)
            return 200, _with_invoice(conn, principal, sub, invoice)

        return run_command(runtime, request, principal, {"ref": ref, "at": at}, work)

    @post("/{ref:str}/pause", operation_id="pauseSubscription", sync_to_thread=True)
    def pause(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            today = book_today(conn, runtime, principal)
            return 200, subscription_json(
                store.pause_subscription(conn, principal.book_id, ref, today)
            )

        return run_command(runtime, request, principal, {"pause": ref}, work)

    @post("/{ref:str}/resume", operation_id="resumeSubscription", sync_to_thread=True)
    def resume(
        self,
        ref: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            today = book_today(conn, runtime, principal)
            return 200, subscription_json(
                store.resume_subscription(conn, principal.book_id, ref, today)
            )

        return run_command(runtime, request, principal, {"resume": ref}, work)


class BillingRunsController(Controller):
    path = "/v1"
    tags = ["billing"]

    @post("/coupons", operation_id="createCoupon", sync_to_thread=True)
    def create_coupon(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CouponIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)

        def amount(value: str | None, name: str) -> Decimal | None:
            if value is None:
                return None
            try:
                return parse_amount(value)
            except InvalidMoney as exc:
                raise InvalidBillingRequest(f"{name}: {exc.message}") from None

        spec = store.CouponSpec(
            data.name,
            data.duration,
            amount(data.percent_off, "percent_off"),
            amount(data.amount_off, "amount_off"),
            data.currency,
            data.duration_in_periods,
        )

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            coupon_id = store.create_coupon(conn, principal.book_id, spec)
            body: dict[str, Any] = {
                "id": str(coupon_id),
                "object": "coupon",
                "name": spec.name,
                "duration": spec.duration,
                "duration_in_periods": spec.duration_in_periods,
                "percent_off": data.percent_off,
                "amount_off": money(spec.amount_off, spec.currency)
                if spec.amount_off is not None and spec.currency
                else None,
                "currency": spec.currency,
            }
            return 201, body

        return run_command(runtime, request, principal, data, work)

    @post("/billing-runs", operation_id="createBillingRun", sync_to_thread=True)
    def create_run(
        self,
        data: JSONBody[BillingRunIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        with runtime.connection() as conn:
            today = book_store.get_book(conn, principal.book_id).today(runtime.today())
            conn.rollback()
        run = billing_runs.run_billing(
            runtime.connection, principal.book_id, data.as_of or today, today
        )
        return json_response(run_json(run), 201)

    @get("/billing-runs/{ref:str}", operation_id="getBillingRun", sync_to_thread=True)
    def get_run(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            run = billing_runs.get_run(conn, principal.book_id, ref)
        return json_response(run_json(run))


SUBSCRIPTION_CONTROLLERS = [SubscriptionsController, BillingRunsController]
