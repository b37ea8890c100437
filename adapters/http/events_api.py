"""Events and webhook endpoints (API.md, "Insight, events and the console").

`GET /v1/events` lists the outbox newest first (cursor-paginated, `type`
filter); `POST /v1/webhook-endpoints` answers the signing secret once. The
target's address is checked (SSRF) before the transaction: a DNS lookup never
runs inside it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.http.billing_fields import MAX_PAGE
from adapters.http.commands import require
from adapters.http.cursors import decode_sort_key, encode_sort_key
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from adapters.webhooks import store as webhooks
from billing.postgres import events as event_store
from billing.webhooks import InvalidWebhook


class WebhookEndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    events: list[str] = []  # empty: every event type
    allow_private_network: bool = False


class RedeliverIn(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: str | None = None  # default: every enabled endpoint wanting the type


def _before(cursor: str | None) -> int | None:
    key = decode_sort_key(cursor)
    if key is None:
        return None
    if len(key) != 1 or not isinstance(key[0], int) or isinstance(key[0], bool):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    return key[0]


def _next(items: list[Any], limit: int, key: Any) -> str | None:
    return encode_sort_key([key(items[-1])]) if len(items) == limit else None


class EventsController(Controller):
    path = "/v1"
    tags = ["events"]

    @get("/events", operation_id="listEvents", sync_to_thread=True)
    def list_events(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
        type: FromQuery[str | None] = None,
        object: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        types = [t for t in type.split(",") if t] if type else None
        with Reader(runtime, principal) as conn:
            found = event_store.list_events(
                conn,
                principal.book_id,
                before=_before(cursor),
                limit=limit,
                types=types,
                object_id=object,
            )
        return json_response(
            {
                "data": [e.json() for e in found],
                "next_cursor": _next(found, limit, lambda e: e.sequence),
            }
        )

    @get("/events/{ref:str}", operation_id="getEvent", sync_to_thread=True)
    def get_event(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = event_store.get_event(conn, principal.book_id, ref)
        return json_response(found.json())

    @command("/events/{ref:str}/redeliver", "redeliverEvent", Permission.BILLING_WRITE)
    def redeliver(
        self, ref: FromPath[str], run: Run, data: JSONBody[RedeliverIn | None] = None
    ) -> Response[bytes]:
        endpoint = data.endpoint if data is not None else None

        def work(tx: Tx) -> dict[str, Any]:
            queued = webhooks.redeliver(tx.conn, tx.book_id, ref, endpoint)
            return {"event": ref, "deliveries": [str(d) for d in queued]}

        return run({"ref": ref, "body": data}, work)


class WebhookEndpointsController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["events"]

    @command("/", "createWebhookEndpoint", Permission.BILLING_WRITE)
    def create(
        self,
        data: JSONBody[WebhookEndpointIn],
        run: Run,
        principal: NamedDependency[Principal],
    ) -> Response[bytes]:
        if data.allow_private_network:  # a way into the service's own network: admins only
            require(principal, Permission.MANAGE_BOOK)
        refused = webhooks.refused_address(
            data.url, data.allow_private_network, webhooks.resolve_host
        )
        if refused is not None:
            raise InvalidWebhook(refused, url=data.url)

        def work(tx: Tx) -> dict[str, Any]:
            endpoint, secret = webhooks.create_endpoint(
                tx.conn,
                tx.book_id,
                url=data.url,
                events=data.events,
                allow_private_network=data.allow_private_network,
            )
            return endpoint.json(secret)

        return run(data, work)

    @get("/", operation_id="listWebhookEndpoints", sync_to_thread=True)
    def list_endpoints(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = webhooks.list_endpoints(conn, principal.book_id)
        return json_response({"data": [e.json() for e in found]})

    @get("/{ref:str}", operation_id="getWebhookEndpoint", sync_to_thread=True)
    def get_endpoint(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = webhooks.get_endpoint(conn, principal.book_id, ref)
        return json_response(found.json())

    @command(
        "/{ref:str}", "deleteWebhookEndpoint", Permission.BILLING_WRITE, status=200, method="DELETE"
    )
    def delete(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        return run(
            {"delete": ref}, lambda tx: webhooks.delete_endpoint(tx.conn, tx.book_id, ref).json()
        )

    @get("/{ref:str}/deliveries", operation_id="listWebhookDeliveries", sync_to_thread=True)
    def deliveries(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = webhooks.list_attempts(
                conn, principal.book_id, ref, before=_before(cursor), limit=limit
            )
        return json_response(
            {"data": [a.json() for a in found], "next_cursor": _next(found, limit, lambda a: a.id)}
        )
