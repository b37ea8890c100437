"""CRM sync (issue 13): mappings, a sync on demand, the sync log, and the CRMs' webhooks.

`POST /v1/crm/mappings` sets a provider's field, outbound and product mappings
(billing/crm.py names the fields; anything else is a 422). `POST /v1/crm/sync`
runs a full or incremental sync (adapters/crm/sync.py): many transactions, each
safe to repeat, so an Idempotency-Key is accepted but no answer is stored.
`POST /v1/webhooks/hubspot/{book_id}` and `/salesforce/{book_id}` take the CRMs'
own notifications, authenticated by their schemes (adapters/crm/signatures.py)
instead of a bearer key; a refused one is a 401 and changes nothing, an
accepted one re-reads each changed account from the CRM and upserts it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter, RawBody

from adapters.crm import store
from adapters.crm.factory import check_provider
from adapters.crm.signatures import (
    ACK,
    parse_outbound_message,
    verify_hubspot,
    verify_salesforce_org,
    verify_salesforce_token,
)
from adapters.crm.sync import run_sync, sync_deal_record, sync_record
from adapters.http.billing_fields import MAX_PAGE
from adapters.http.commands import require
from adapters.http.events_api import _before, _next
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres.settings import read_settings
from ledger.errors import LedgerError, NotFound


class CrmMappingIn(msgspec.Struct, forbid_unknown_fields=True):
    provider: str
    fields: dict[str, Any] | None = None  # CRM field → customer field
    outbound: dict[str, Any] | None = None  # billing status field → CRM field
    products: dict[str, Any] | None = None  # CRM product id → price id


class CrmSyncIn(msgspec.Struct, forbid_unknown_fields=True):
    provider: str
    since: str | None = None  # ISO 8601; default: the cursor the last sync saved
    full: bool = False


class CrmController(Controller):
    path = "/v1/crm"
    tags = ["crm"]

    @command("/mappings", "setCrmMapping", Permission.MANAGE_BOOK, status=200)
    def set_mapping(self, data: JSONBody[CrmMappingIn], run: Run) -> Response[bytes]:
        provider = check_provider(data.provider)

        def work(tx: Tx) -> dict[str, Any]:
            return store.set_mapping(
                tx.conn,
                tx.book_id,
                provider,
                fields=data.fields,
                outbound=data.outbound,
                products=data.products,
            ).json()

        return run(data, work)

    @get("/mappings/{provider:str}", operation_id="getCrmMapping", sync_to_thread=True)
    def get_mapping(
        self,
        provider: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            if provider not in ("salesforce", "hubspot"):
                raise NotFound(f"CRM provider {provider!r} does not exist")
            return json_response(store.get_mapping(conn, principal.book_id, provider).json())

    @post("/sync", operation_id="runCrmSync", sync_to_thread=True, status_code=200)
    def sync(
        self,
        data: JSONBody[CrmSyncIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        summary = run_sync(
            runtime.connection,
            principal.book_id,
            check_provider(data.provider),
            since=data.since,
            full=data.full,
        )
        return json_response(summary.json())

    @get("/sync-log", operation_id="listCrmSyncLog", sync_to_thread=True)
    def sync_log(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        provider: FromQuery[str | None] = None,
        kind: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            found = store.list_log(
                conn, principal.book_id, provider=provider, kind=kind,
                before=_before(cursor), limit=limit,
            )  # fmt: skip
        return json_response(
            {"data": found, "next_cursor": _next(found, limit, lambda r: int(r["id"]))}
        )


def _settings(runtime: Runtime, book_id: uuid.UUID, provider: str) -> dict[str, Any]:
    with runtime.connection() as conn:
        try:
            settings = read_settings(conn, book_id)
        except NotFound:
            raise ApiError(401, "invalid_signature", "no such book takes CRM webhooks") from None
        conn.rollback()
    config = settings.get(provider)
    return config if isinstance(config, dict) else {}


class CrmWebhookController(Controller):
    """The CRMs' notifications for a book: no bearer key, their own schemes authenticate."""

    path = "/v1/webhooks"
    tags = ["crm"]

    @post(
        "/hubspot/{book_id:uuid}",
        operation_id="receiveHubSpotWebhook",
        sync_to_thread=True,
        status_code=200,
    )
    def hubspot(
        self,
        request: Request[Any, Any, Any],
        book_id: FromPath[uuid.UUID],
        body: RawBody,
        state: State,
        signature: Annotated[str | None, HeaderParameter(name="X-HubSpot-Signature-v3")] = None,
        timestamp: Annotated[
            str | None, HeaderParameter(name="X-HubSpot-Request-Timestamp")
        ] = None,
    ) -> Response[bytes]:
        runtime: Runtime = state.runtime
        secret = _settings(runtime, book_id, "hubspot").get("app_secret")
        if not secret:
            raise ApiError(401, "invalid_signature", "set the book setting hubspot.app_secret")
        why = verify_hubspot(
            secret, request.method, str(request.url), body, signature, timestamp,
            int(time.time() * 1000),
        )  # fmt: skip
        if why is not None:
            raise ApiError(401, "invalid_signature", why)
        try:
            events = json.loads(body)
        except ValueError:
            raise ApiError(400, "invalid_webhook", "the body is not a JSON array") from None
        if not isinstance(events, list):
            raise ApiError(400, "invalid_webhook", "the body is not a JSON array of events")
        changed = {
            (str(e.get("subscriptionType", "")).partition(".")[0], str(e["objectId"]))
            for e in events
            if isinstance(e, dict) and e.get("objectId") is not None
        }
        companies = sorted(r for kind, r in changed if kind == "company")
        deals = sorted(r for kind, r in changed if kind == "deal")
        return json_response(_upsert(runtime, book_id, "hubspot", companies, deals, len(events)))

    @post(
        "/salesforce/{book_id:uuid}",
        operation_id="receiveSalesforceOutboundMessage",
        sync_to_thread=True,
        status_code=200,
    )
    def salesforce(
        self,
        book_id: FromPath[uuid.UUID],
        body: RawBody,
        state: State,
        token: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        runtime: Runtime = state.runtime
        config = _settings(runtime, book_id, "salesforce")
        why = verify_salesforce_token(config.get("outbound_token"), token)
        if why is not None:
            raise ApiError(401, "invalid_signature", why)
        try:
            message = parse_outbound_message(body)
        except ValueError as exc:
            raise ApiError(400, "invalid_webhook", str(exc)) from None
        why = verify_salesforce_org(config.get("organization_id"), message)
        if why is not None:
            raise ApiError(401, "invalid_signature", why)
        accounts = sorted({rid for kind, rid in message.records if kind == "Account"})
        deals = sorted({rid for kind, rid in message.records if kind == "Opportunity"})
        _upsert(runtime, book_id, "salesforce", accounts, deals, len(message.records))
        return Response(content=ACK.encode(), status_code=200, media_type="text/xml")


def _upsert(
    runtime: Runtime,
    book_id: uuid.UUID,
    provider: str,
    accounts: list[str],
    deals: list[str],
    received: int,
) -> dict[str, Any]:
    """Each changed account upserted, then each changed deal's subscription if it is won."""
    synced: dict[str, str] = {}
    work = [(r, sync_record) for r in accounts] + [(r, sync_deal_record) for r in deals]
    for record, sync in work:
        try:
            synced[record] = sync(runtime.connection, book_id, provider, record)
        except LedgerError as exc:  # logged; the CRM's retry would not fix it
            synced[record] = f"error: {exc.message}"
            with runtime.connection() as conn:
                store.log(conn, book_id, provider, "error", record_id=record, message=exc.message)
                conn.commit()
    return {"object": "crm_webhook", "received": received, "synced": synced}
