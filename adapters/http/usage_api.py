"""Usage events, meters and a customer's metered usage (API.md, "Usage and telecom").

`POST /v1/usage-events` takes a JSON array of events or `{"events": [...]}`
(up to 10,000; more is a 413 problem and nothing is stored) and answers 200
with `{"accepted", "duplicates", "rejected": [{"id", "reason", "message"}]}`:
an event refused for itself does not stop the rest of its batch.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import URL
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter, RawBody

from adapters.http.routes import Reader, Run, Tx, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres import customers as customer_store
from billing.postgres import usage as usage_store
from billing.postgres.upcoming import Upcoming, upcoming_invoice
from billing.usage import group_label
from ledger.money import minor_unit_text as money


class UsageBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    events: list[Any]


class MeterIn(msgspec.Struct, forbid_unknown_fields=True):
    metric: str
    aggregation: str
    property: str | None = None
    filters: dict[str, Any] | None = None
    group_by: list[Any] | None = None


_BATCH = list[Any] | UsageBatchIn
_AT = re.compile(r"`\$\.(.+)`$")  # where msgspec says the error is


def batch_of(request: Request[Any, Any, Any], body: bytes) -> list[Any]:
    """The events of a body as plain JSON, refused as `data: JSONBody[list[Any] |
    UsageBatchIn]` refused it (the same problems) when it is no batch."""
    where = URL.from_components(path=request.url.path, query=request.url.query)
    failed = f"Validation failed for {request.method} {where}"
    if not body:
        raise ValidationException(
            failed, extra=[{"message": "'data'", "key": "data", "source": "body"}]
        )
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ClientException(str(exc)) from None
    try:
        data = msgspec.convert(document, _BATCH, strict=False)
    except msgspec.ValidationError as exc:
        at = _AT.search(str(exc))
        error = {
            "message": str(exc).split(" - ", maxsplit=1)[0],
            "key": at.group(1) if at else "data",
            "source": "body",
        }
        raise ValidationException(failed, extra=[error]) from None
    return usage_store.check_batch(data.events if isinstance(data, UsageBatchIn) else data)


def ingest_json(result: usage_store.IngestResult) -> dict[str, Any]:
    return {
        "object": "usage_ingest",
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": [
            {"id": r.id, "reason": r.reason, "message": r.message} for r in result.rejected
        ],
    }


def meter_json(meter: usage_store.Meter) -> dict[str, Any]:
    spec = meter.spec
    return {
        "id": str(meter.id) if meter.id else None,
        "object": "meter",
        "metric": spec.metric,
        "aggregation": spec.aggregation.value,
        "property": spec.property,
        "filters": usage_store.meters_json_filters(spec),
        "group_by": list(spec.group_by),
        "created_at": meter.created_at.isoformat() if meter.created_at else None,
    }


def upcoming_json(up: Upcoming) -> dict[str, Any]:
    c = up.currency
    return {
        "object": "upcoming_invoice",
        "customer": str(up.customer_id),
        "subscription": str(up.subscription_id),
        "currency": c,
        "issue_date": up.issue_date.isoformat(),
        "period_start": up.period.start.isoformat(),
        "period_end": up.period.end.isoformat(),
        "subtotal": money(up.subtotal.amount, c),
        "discount_total": money(up.discount.amount, c),
        "tax_total": money(up.tax.amount, c),
        "total": money(up.total.amount, c),
        "lines": [
            {
                "line_no": final.line_no,
                "kind": line.kind,
                "description": line.description,
                "quantity": format(line.quantity, "f"),
                "unit_amount": format(line.unit_amount, "f"),
                "amount": money(line.amount.amount, c),
                "discount_amount": money(line.discount.amount if line.discount else Decimal(0), c),
                "tax_amount": money(final.tax.amount, c),
                "service_start": line.service.start.isoformat(),
                "service_end": line.service.end.isoformat(),
                "price": line.price_id,
                "revenue_account": line.revenue_account,
            }
            for line, final in zip(up.lines, up.finals, strict=True)
        ],
    }


def _quantity_text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


class UsageController(Controller):
    path = "/v1"
    tags = ["usage"]

    @command(
        "/usage-events", "ingestUsageEvents", Permission.BILLING_WRITE, status=200, raw_json=True
    )
    def ingest_events(
        self, request: Request[Any, Any, Any], body: RawBody, run: Run
    ) -> Response[bytes]:
        """A batch of well-formed events is decoded straight into typed events and
        stored from them; any other body is decoded as plain JSON and goes the event
        by event way (`batch_of` answers a body that is no batch as Litestar would)."""
        typed = usage_store.decode_batch(body)
        # An Idempotency-Key fingerprints the events as plain JSON, as it always did.
        keyed = request.headers.get("idempotency-key") is not None
        plain = batch_of(request, body) if typed is None or keyed else None

        def work(tx: Tx) -> dict[str, Any]:
            done = None if typed is None else usage_store.ingest_decoded(tx.conn, tx.book_id, typed)
            if done is None:
                events = plain if plain is not None else batch_of(request, body)
                done = usage_store.ingest(tx.conn, tx.book_id, events)
            return ingest_json(done)

        return run(plain, work)

    @command("/meters", "createMeter", Permission.BILLING_WRITE)
    def create_meter(self, data: JSONBody[MeterIn], run: Run) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            meter = usage_store.create_meter(
                tx.conn,
                tx.book_id,
                data.metric,
                data.aggregation,
                data.property,
                data.filters,
                data.group_by,
            )
            return meter_json(meter)

        return run(data, work)

    @get("/meters", operation_id="listMeters", sync_to_thread=True)
    def list_meters(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = usage_store.list_meters(conn, principal.book_id)
        return json_response({"data": [meter_json(m) for m in found]})

    @get("/invoices/upcoming", operation_id="getUpcomingInvoice", sync_to_thread=True)
    def upcoming(
        self,
        customer: FromQuery[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        subscription: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        """The next subscription invoice as it would be issued now; nothing is written."""
        with Reader(runtime, principal) as conn:
            found = upcoming_invoice(conn, principal.book_id, customer, subscription)
        return json_response(upcoming_json(found))

    @get("/customers/{ref:str}/usage", operation_id="getCustomerUsage", sync_to_thread=True)
    def customer_usage(
        self,
        ref: FromPath[str],
        metric: FromQuery[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        """The metered quantity over `[from, to)` (defaults: this month to tomorrow)."""
        with Reader(runtime, principal) as conn:
            customer = customer_store.get_customer(conn, principal.book_id, ref)
            today = book_today(conn, runtime, principal)
            start = date_from or today.replace(day=1)
            end = date_to or date.fromordinal(today.toordinal() + 1)
            if end <= start:
                raise InvalidBillingRequest(
                    f"to ({end}) must be after from ({start}); the range is [from, to)"
                )
            meter = usage_store.meter_for(conn, principal.book_id, metric)
            rows = usage_store.aggregate(
                conn, principal.book_id, customer.id, meter.spec, start, end
            )
        total = sum((q for _, q in rows), Decimal(0))
        return json_response(
            {
                "object": "customer_usage",
                "customer": str(customer.id),
                "metric": metric,
                "aggregation": meter.spec.aggregation.value,
                "from": start.isoformat(),
                "to": end.isoformat(),
                "quantity": _quantity_text(total),
                "groups": [
                    {"group": g, "label": group_label(g), "quantity": _quantity_text(q)}
                    for g, q in rows
                    if meter.spec.group_by
                ],
            }
        )
