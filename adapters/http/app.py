"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import date
from typing import Any

import anyio
import psycopg
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import SerializationException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapters.console.pages import console_handlers, template_config
from adapters.database import DatabaseSettings
from adapters.http import direct_post
from adapters.http.add_ons_api import AddOnsController
from adapters.http.auth import KeyCache, bearer_key
from adapters.http.book_api import BookController
from adapters.http.catalog_api import CatalogController
from adapters.http.collection_api import CollectionController, StripeWebhookController
from adapters.http.commands import JSON, encode
from adapters.http.crm_api import CrmController, CrmWebhookController
from adapters.http.customers_api import CustomersController
from adapters.http.direct_debit_api import DirectDebitController
from adapters.http.dunning_api import DunningController
from adapters.http.events_api import EventsController, WebhookEndpointsController
from adapters.http.exports_api import ExportsController
from adapters.http.forecasts_api import ForecastsController
from adapters.http.fx_api import FxController
from adapters.http.healthcare_api import HealthcareController
from adapters.http.healthcare_patients_api import HealthcarePatientsController
from adapters.http.invoices_api import InvoicesController
from adapters.http.keys_api import ApiKeysController, AuditLogController
from adapters.http.ledger_api import LedgerController
from adapters.http.metrics_api import MetricsController
from adapters.http.openapi import docs_assets, openapi_config
from adapters.http.operations import (
    AuditWriter,
    RateLimiter,
    Telemetry,
    metrics_endpoint,
    with_operations,
)
from adapters.http.payment_methods_api import PaymentMethodsController
from adapters.http.payments_api import PaymentsController
from adapters.http.problems import EXCEPTION_HANDLERS, database_unavailable
from adapters.http.reconciliation_api import ReconciliationController
from adapters.http.reports_api import ReportsController
from adapters.http.revenue_api import RevenueController
from adapters.http.routes import json_bodies_only, provide_run
from adapters.http.services_api import ServicesController
from adapters.http.services_work_api import ServicesWorkController
from adapters.http.subscriptions_api import SUBSCRIPTION_CONTROLLERS
from adapters.http.telecom_api import TelecomController
from adapters.http.usage_api import UsageController
from adapters.http.usage_billing_api import UsageBillingController
from adapters.http.wallets_api import WalletsController
from adapters.input_limits import (
    MAX_DEPTH,
    MAX_METADATA_BYTES,
    NUL_ESCAPE,
    TooDeeplyNested,
    check_decoded,
    check_text,
    needs_decoding,
)
from adapters.keys import Principal
from adapters.runtime import Runtime
from ledger.dates import DateWindow
from ledger.postgres.books import book_window

log = logging.getLogger("activebilling.http")


class _CoalescingTransport:
    """A transport whose writes within one event-loop step leave as one send.

    uvicorn writes a response's status line and headers, then its body, as two
    writes; on loopback each is a syscall and a wake-up of the client. Joined,
    a small JSON response costs one. Closing sends what is pending first.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, sending each response in one write."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing: Any = _CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


async def _key_owner(request: Request[Any, Any, Any], state: State) -> Principal:
    # A cached key costs no thread hop; only a miss goes to the database.
    cache: KeyCache = state.key_cache
    key = bearer_key(request)
    found = cache.cached(key)
    if found is None:
        found = await anyio.to_thread.run_sync(cache.principal, state.runtime, key)
    request.scope["state"]["principal"] = found  # for the audit log and access log
    return found


async def _principal(request: Request[Any, Any, Any], state: State) -> Principal:
    """The route's principal: the key's owner, within the book's rate limit."""
    found = await _key_owner(request, state)
    limiter: RateLimiter = state.rate_limiter
    limiter.take(found)
    return found


_NOT_JSON = ("multipart/", "application/x-www-form-urlencoded")
# The date query parameters of reports, exports and lists: each must lie in the
# book's accepted window (ledger.dates), checked before a report starts, so an
# export never breaks off after its 200.
DATE_PARAMETERS = ("from", "to", "as_of")


def _window(runtime: Runtime, book_id: uuid.UUID) -> DateWindow:
    with runtime.connection() as conn:
        return book_window(conn, book_id)


async def _check_query_dates(request: Request[Any, Any, Any]) -> None:
    given: list[tuple[str, date]] = []
    for name in DATE_PARAMETERS:
        value = request.query_params.get(name)
        with contextlib.suppress(ValueError):  # not a date: the route says so
            if value is not None:
                given.append((name, date.fromisoformat(value)))
    if not given:
        return
    principal = await _key_owner(request, request.app.state)
    window = await anyio.to_thread.run_sync(_window, request.app.state.runtime, principal.book_id)
    for name, day in given:
        window.check(f"query parameter {name}", day)


async def check_input(request: Request[Any, Any, Any]) -> None:
    """Every route's parameters, headers and JSON body meet adapters.input_limits
    before the route parses them: a NUL names its field, deep nesting is refused.

    Most bodies are small and flat; they skip decoding when they cannot break a
    limit (no NUL escape, fewer brackets than the depth limit, smaller than the
    metadata limit). Multipart uploads are checked where their fields are read.
    """
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_text(f"path parameter {name}", value)
    for name, value in request.query_params.multi_items():
        check_text(f"query parameter name {name!r}", name)
        check_text(f"query parameter {name}", value)
    # Headers arrive as latin-1 bytes: only one holding a 0 byte decodes to a NUL.
    if any(b"\0" in value for _, value in request.scope["headers"]):
        for name, value in request.headers.items():
            check_text(f"header {name}", value)
    if request.method == "GET" and not request.url.path.startswith("/console"):
        # The console signs in with a cookie, not a bearer key; its pages only read.
        await _check_query_dates(request)
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    if request.headers.get("content-type", "").lower().startswith(_NOT_JSON):
        return
    body = await request.body()
    if (
        NUL_ESCAPE not in body
        and len(body) <= MAX_METADATA_BYTES
        and body.count(b"{") + body.count(b"[") <= MAX_DEPTH
    ):
        return
    if not needs_decoding(body):
        # Nothing to name inside it: the route decodes it (or reads its bytes) itself.
        return
    # Decoded once: Litestar keeps the value for the route's own `data`.
    try:
        document = await request.json()
    except SerializationException:  # malformed JSON: the route says so
        return
    except RecursionError:
        raise TooDeeplyNested(
            f"body is nested more than {MAX_DEPTH} levels deep", field="body"
        ) from None
    check_decoded(document, body, "body")


async def check_request(request: Request[Any, Any, Any]) -> None:
    """The checks every request passes before its route parses anything."""
    await json_bodies_only(request)
    await check_input(request)


@get("/health", operation_id="health", sync_to_thread=True, include_in_schema=True)
def health(state: State) -> Response[bytes]:
    """200 when the database answers; else the outage's 503 (see _database_error)."""
    runtime: Runtime = state.runtime
    with runtime.connection() as conn:
        conn.execute("select 1")
    return Response(content=encode({"status": "ok"}), media_type=JSON)


def _database_error(
    request: Request[Any, Any, Any], exc: psycopg.OperationalError
) -> Response[bytes]:
    """A lost or unreachable database: 503, and both pools drop the connections
    it broke, so the first request after it is back finds working ones."""
    # No SQLSTATE: the client lost the server (or the pool timed out); class 08
    # and 57P: the connection failed or the server is shutting down. Others
    # (a serialization failure, say) leave the connections intact.
    if exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")):
        state = request.app.state
        state.runtime.discard_broken()
        checking: asyncio.Task[None] | None = state.get("async_pool_check")
        if checking is None or checking.done():
            state.async_pool_check = asyncio.get_running_loop().create_task(
                _check_pools(state.async_pool, state.hot_pool)
            )
    return database_unavailable(request, exc)


async def _check_pools(*pools: Any) -> None:
    for pool in pools:
        await pool.check()


class ServiceApp(Litestar):
    """The app, with every HTTP request run through adapters.http.operations (request
    id, metrics, access log, audit) — around the router, so 404s and 405s count too."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # The usual posting is answered without Litestar's routing (direct_post).
        direct = direct_post.answer if scope["path"] == direct_post.PATH else None
        await with_operations(self.state, super().__call__, scope, receive, send, direct)


def create_app(
    runtime: Runtime | None = None, *, run_sealer: bool = True, debug: bool = False
) -> Litestar:
    """Build the app; with no runtime given, settings come from the environment."""
    owned = runtime is None
    live = runtime or Runtime(DatabaseSettings.from_environment())

    async def on_startup(app: Litestar) -> None:
        app.state.runtime = live
        app.state.key_cache = KeyCache()
        app.state.telemetry = Telemetry()
        app.state.rate_limiter = RateLimiter()
        app.state.audit = AuditWriter(live)
        # The hot POST path runs on the event loop with its own asyncio pool.
        # min_size 1: the usual post draws from the hot pool below, so this one
        # (the general way) keeps one idle connection, not two, on a shared server.
        app.state.async_pool = await live.open_async_pool(min_size=1)
        # The one-statement post (hot_path) in autocommit: no toggling per request.
        app.state.hot_pool = await live.open_async_pool(autocommit=True)
        if run_sealer:
            live.start_sealer()
            live.start_webhooks()

    async def on_shutdown(app: Litestar) -> None:
        await anyio.to_thread.run_sync(app.state.audit.close)
        await app.state.async_pool.close()
        await app.state.hot_pool.close()
        if owned:
            live.close()

    return ServiceApp(
        route_handlers=[
            health,
            metrics_endpoint,
            BookController,
            LedgerController,
            RevenueController,
            ExportsController,
            ReportsController,
            ReconciliationController,
            CustomersController,
            CatalogController,
            InvoicesController,
            *SUBSCRIPTION_CONTROLLERS,
            PaymentsController,
            PaymentMethodsController,
            CollectionController,
            DunningController,
            StripeWebhookController,
            CrmController,
            CrmWebhookController,
            DirectDebitController,
            docs_assets(),
            ApiKeysController,
            AuditLogController,
            WalletsController,
            TelecomController,
            ServicesController,
            ServicesWorkController,
            MetricsController,
            ForecastsController,
            *console_handlers(),
            EventsController,
            WebhookEndpointsController,
            FxController,
            UsageController,
            UsageBillingController,
            AddOnsController,
            HealthcareController,
            HealthcarePatientsController,
        ],
        template_config=template_config(),
        dependencies={
            "runtime": Provide(_runtime, sync_to_thread=False),
            "principal": Provide(_principal),
            "run": Provide(provide_run, sync_to_thread=False),
        },
        exception_handlers={**EXCEPTION_HANDLERS, psycopg.OperationalError: _database_error},
        before_request=check_request,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        openapi_config=openapi_config(),
        debug=debug,
    )
