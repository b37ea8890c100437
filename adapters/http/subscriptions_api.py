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
from uuid import UUID

import msgspec
import psycopg
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.gateways.collection import collect_unattempted
from adapters.http.commands import require
from adapters.http.cursors import decode_cursor, id_page
from adapters.http.invoices_api import invoice_view
from adapters.http.payments_api import credit_note_json
from adapters.http.routes import Reader, Run, Tx, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres import billing_runs, telecom_billing
from billing.postgres import subscriptions as store
from ledger.errors import InvalidMoney
from ledger.money import minor_unit_text as money
from ledger.money import parse_amount
from ledger.postgres import books as book_store


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    price: str | None = None
    quantity: str | int = 1
    # A postpaid telecom item (instead of `price`): the subscription's `subscriber`'s
    # rated CDRs are billed in arrears (billing.postgres.telecom_billing).
    rate_plan: str | None = None


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    items: list[ItemIn]
    start_date: date | None = None
    trial_end: date | None = None
    billing_anchor: date | None = None
    coupon: str | None = None
    metadata: dict[str, Any] = {}
    subscriber: str | None = None  # the MSISDN or account a rate_plan item's CDRs name


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
    specs = []
    for n, i in enumerate(items):
        if i.rate_plan is not None or i.price is None:
            raise InvalidBillingRequest(
                f"items[{n}]: give a price"
                + (
                    " (rate plans are set when the subscription is created)"
                    if i.rate_plan is not None
                    else ""
                ),
                item=n,
            )
        specs.append(store.ItemSpec(i.price, _quantity(n, i.quantity)))
    return specs


def _rate_plan_of(data: SubscriptionIn) -> str | None:
    """The subscription's rate-plan item, checked against its `subscriber`."""
    plans = [(n, i) for n, i in enumerate(data.items) if i.rate_plan is not None]
    for n, i in plans:
        if i.price is not None:
            raise InvalidBillingRequest(f"items[{n}]: give price or rate_plan, not both", item=n)
    if len(plans) > 1:
        raise InvalidBillingRequest("a subscription has at most one rate_plan item")
    if plans and not data.subscriber:
        raise InvalidBillingRequest("subscriber: required with a rate_plan item")
    if data.subscriber is not None and not plans:
        raise InvalidBillingRequest("subscriber: only with a rate_plan item")
    if plans and len(plans) == len(data.items):
        raise InvalidBillingRequest(
            "a subscription with a rate_plan item also needs a recurring price item (its"
            " fee, 0.00 if none): the price sets the billing cycle"
        )
    return plans[0][1].rate_plan if plans else None


def _with_rate_plan(
    conn: psycopg.Connection, book_id: UUID, body: dict[str, Any]
) -> dict[str, Any]:
    found = telecom_billing.rate_plan_items(conn, book_id, [UUID(body["id"])])
    item = found.get(UUID(body["id"]))
    if item is None:
        return body
    return {
        **body,
        "subscriber": item.subscriber,
        "items": [
            *body["items"],
            {
                "id": body["id"],
                "price": None,
                "quantity": "1",
                "effective_from": body["start_date"],
                "effective_to": None,
                "rate_plan": item.rate_plan,
            },
        ],
    }


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


def issued_json(conn: psycopg.Connection, book_id: UUID, issued: store.Issued) -> dict[str, Any]:
    """What a change or cancellation issued: an invoice (a charge) or credit notes."""
    if isinstance(issued, tuple):
        return {"invoice": None, "credit_notes": [credit_note_json(n) for n in issued]}
    invoice = invoice_view(conn, book_id, issued) if issued is not None else None
    return {"invoice": invoice, "credit_notes": []}


def _with_invoice(tx: Tx, sub: store.Subscription, issued: store.Issued) -> dict[str, Any]:
    return {**subscription_json(sub), **issued_json(tx.conn, tx.book_id, issued)}


def run_json(run: billing_runs.BillingRun) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "object": "billing_run",
        "as_of": run.as_of.isoformat(),
        "status": run.status,
        "invoices_created": run.invoices_created,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "heartbeat_at": run.heartbeat_at.isoformat(),
        "failures": [
            {"subscription": str(f.subscription_id), "reason": f.reason} for f in run.failures
        ],
    }


class SubscriptionsController(Controller):
    path = "/v1/subscriptions"
    tags = ["billing"]

    @command("/", "createSubscription", Permission.BILLING_WRITE)
    def create(self, data: JSONBody[SubscriptionIn], run: Run) -> Response[bytes]:
        rate_plan = _rate_plan_of(data)
        spec = store.SubscriptionSpec(
            data.customer,
            item_specs([i for i in data.items if i.rate_plan is None]),
            data.start_date,
            data.trial_end,
            data.billing_anchor,
            data.coupon,
            data.metadata,
        )

        def work(tx: Tx) -> dict[str, Any]:
            sub = store.create_subscription(tx.conn, tx.book_id, spec, tx.today())
            if rate_plan is not None and data.subscriber is not None:
                telecom_billing.attach_rate_plan(
                    tx.conn,
                    tx.book_id,
                    sub.id,
                    sub.customer_id,
                    sub.currency,
                    data.subscriber,
                    rate_plan,
                )
            return _with_rate_plan(tx.conn, tx.book_id, subscription_json(sub))

        return run(data, work)

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
        return json_response(id_page(subs, limit, subscription_json))

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
            body = _with_rate_plan(conn, principal.book_id, subscription_json(sub))
        return json_response(body)

    @command("/{ref:str}/change", "changeSubscription", Permission.BILLING_WRITE, status=200)
    def change(self, ref: FromPath[str], data: JSONBody[ChangeIn], run: Run) -> Response[bytes]:
        items = item_specs(data.items)

        def work(tx: Tx) -> dict[str, Any]:
            sub, invoice = store.change_subscription(
                tx.conn, tx.book_id, ref, items, data.effective_date, data.proration, tx.today()
            )
            return _with_invoice(tx, sub, invoice)

        return run({"ref": ref, "body": data}, work)

    @command("/{ref:str}/cancel", "cancelSubscription", Permission.BILLING_WRITE, status=200)
    def cancel(
        self, ref: FromPath[str], run: Run, data: JSONBody[CancelIn | None] = None
    ) -> Response[bytes]:
        at = data.at if data is not None else "now"

        def work(tx: Tx) -> dict[str, Any]:
            sub, invoice = store.cancel_subscription(tx.conn, tx.book_id, ref, at, tx.today())
            return _with_invoice(tx, sub, invoice)

        return run({"ref": ref, "at": at}, work)

    @command("/{ref:str}/pause", "pauseSubscription", Permission.BILLING_WRITE, status=200)
    def pause(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"pause": ref},
            lambda tx: subscription_json(
                store.pause_subscription(tx.conn, tx.book_id, ref, tx.today())
            ),
        )

    @command("/{ref:str}/resume", "resumeSubscription", Permission.BILLING_WRITE, status=200)
    def resume(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"resume": ref},
            lambda tx: subscription_json(
                store.resume_subscription(tx.conn, tx.book_id, ref, tx.today())
            ),
        )


class BillingRunsController(Controller):
    path = "/v1"
    tags = ["billing"]

    @command("/coupons", "createCoupon", Permission.BILLING_WRITE)
    def create_coupon(self, data: JSONBody[CouponIn], run: Run) -> Response[bytes]:
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

        def work(tx: Tx) -> dict[str, Any]:
            coupon_id = store.create_coupon(tx.conn, tx.book_id, spec)
            return {
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

        return run(data, work)

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
        # Auto-collection of the run's invoices, each after the run's commits.
        collect_unattempted(runtime.connection, principal.book_id, today)
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
