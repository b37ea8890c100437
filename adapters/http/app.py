"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import psycopg
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapters.database import DatabaseSettings
from adapters.http.auth import KeyCache, bearer_key
from adapters.http.billing_api import BILLING_CONTROLLERS
from adapters.http.commands import JSON, encode
from adapters.http.exports_api import ExportsController
from adapters.http.ledger_api import LedgerController
from adapters.http.payments_api import PaymentsController
from adapters.http.problems import EXCEPTION_HANDLERS, problem
from adapters.http.reconciliation_api import ReconciliationController
from adapters.http.reports_api import ReportsController
from adapters.http.revenue_api import RevenueController
from adapters.http.subscriptions_api import SUBSCRIPTION_CONTROLLERS
from adapters.keys import Principal
from adapters.runtime import Runtime

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


async def _principal(request: Request[Any, Any, Any], state: State) -> Principal:
    # A cached key costs no thread hop; only a miss goes to the database.
    cache: KeyCache = state.key_cache
    key = bearer_key(request)
    found = cache.cached(key)
    if found is not None:
        return found
    return await anyio.to_thread.run_sync(cache.principal, state.runtime, key)


@get("/health", operation_id="health", sync_to_thread=True, include_in_schema=True)
def health(state: State) -> Response[bytes]:
    runtime: Runtime = state.runtime
    try:
        with runtime.connection() as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:
        return problem(503, "database_unavailable", "Database unavailable", str(exc))
    return Response(content=encode({"status": "ok"}), media_type=JSON)


def create_app(
    runtime: Runtime | None = None, *, run_sealer: bool = True, debug: bool = False
) -> Litestar:
    """Build the app; with no runtime given, settings come from the environment."""
    owned = runtime is None
    live = runtime or Runtime(DatabaseSettings.from_environment())

    async def on_startup(app: Litestar) -> None:
        app.state.runtime = live
        app.state.key_cache = KeyCache()
        # The hot POST path runs on the event loop with its own asyncio pool.
        app.state.async_pool = await live.open_async_pool()
        if run_sealer:
            live.start_sealer()

    async def on_shutdown(app: Litestar) -> None:
        await app.state.async_pool.close()
        if owned:
            live.close()

    return Litestar(
        route_handlers=[
            health,
            LedgerController,
            RevenueController,
            ExportsController,
            ReportsController,
            ReconciliationController,
            *BILLING_CONTROLLERS,
            *SUBSCRIPTION_CONTROLLERS,
            PaymentsController,
        ],
        dependencies={
            "runtime": Provide(_runtime, sync_to_thread=False),
            "principal": Provide(_principal),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        openapi_config=OpenAPIConfig(title="Active Billing", version="0.1.0"),
        debug=debug,
    )
