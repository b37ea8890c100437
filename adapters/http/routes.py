"""How an HTTP route is written: a read uses a `Reader`, a write is a `command`.

A write route is its domain call and its JSON shape; the permission check, the
unit of work and the Idempotency-Key (adapters/http/commands.py) come with it:

    @command("/products", "createProduct", Permission.BILLING_WRITE)
    def create_product(self, data: JSONBody[ProductIn], run: Run) -> Response[bytes]:
        return run(data, lambda tx: product_json(catalog.create_product(tx.conn, ...)))

`run(payload, work)` calls `work(tx)` inside one transaction and answers the
route's status code (201 unless the decorator says otherwise) with what work
returned as JSON; work returns `Reply(status, body)` when the status depends on
the outcome (an upsert's 200 or 201). `payload` is what an Idempotency-Key is
fingerprinted with, beside the method and path. A new route's answer shape is
a Struct in schemas.py named in openapi.SUCCESS (tests/integration/
test_http_openapi.py fails until it is).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple, TypeAlias

import psycopg
from litestar import Request, Response, delete, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.params import BodyKwarg

from adapters.http.commands import JSON, encode, require, run_command
from adapters.http.problems import ApiError
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from ledger.postgres import books as book_store


def book_today(conn: psycopg.Connection, runtime: Runtime, principal: Principal) -> date:
    """The book's date: its simulated clock when set, else the wall clock."""
    return book_store.get_book(conn, principal.book_id).today(runtime.today())


def json_response(payload: Any, status: int = 200) -> Response[bytes]:
    return Response(content=encode(payload), status_code=status, media_type=JSON)


class Reader:
    """A read-only connection for GET handlers, returned to the pool afterwards.

    It comes from the read replica when DATABASE_READ_URL is set, under the
    runtime's consistency rule (Runtime.read_connection); it is rolled back.
    `logs_access=True` takes the primary, for reads that commit an access-log row.
    """

    def __init__(
        self, runtime: Runtime, principal: Principal, *, logs_access: bool = False
    ) -> None:
        require(principal, Permission.READ)
        self.runtime = runtime
        # A read that must record itself (the PHI access log) commits a row: the primary.
        self.logs_access = logs_access

    def __enter__(self) -> psycopg.Connection:
        self._read = (
            self.runtime.connection() if self.logs_access else self.runtime.read_connection()
        )
        return self._read.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._read.__exit__(*exc)


@dataclass(frozen=True, slots=True)
class Tx:
    """What a command's work sees: its transaction's connection and who asked."""

    conn: psycopg.Connection
    principal: Principal
    runtime: Runtime

    @property
    def book_id(self) -> uuid.UUID:
        return self.principal.book_id

    def today(self) -> date:
        return book_today(self.conn, self.runtime, self.principal)


class Reply(NamedTuple):
    """A command's answer whose status is not the route's usual one."""

    status: int
    body: Any


class Command:
    """A write route's runner, given to the handler as its `run` dependency."""

    __slots__ = ("principal", "request", "runtime", "status")

    def __init__(
        self, request: Request[Any, Any, Any], principal: Principal, runtime: Runtime, status: int
    ) -> None:
        self.request = request
        self.principal = principal
        self.runtime = runtime
        self.status = status

    def __call__(self, payload: Any, work: Callable[[Tx], Any]) -> Response[bytes]:
        def unit(conn: psycopg.Connection) -> tuple[int, Any]:
            answer = work(Tx(conn, self.principal, self.runtime))
            if isinstance(answer, Reply):
                return answer.status, answer.body
            return self.status, answer

        return run_command(self.runtime, self.request, self.principal, payload, unit)


Run: TypeAlias = NamedDependency[Command]


def provide_run(
    request: Request[Any, Any, Any], principal: NamedDependency[Principal], state: State
) -> Command:
    """The `run` dependency: checks the route's permission before anything is read."""
    handler = request.route_handler
    require(principal, handler.opt["permission"])
    return Command(request, principal, state.runtime, handler.status_code or 201)


_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def _json_media(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _takes_json(handler: HTTPRouteHandler) -> bool:
    if handler.opt.get("raw_json"):  # reads its JSON body itself (RawBody)
        return True
    data = handler.parsed_fn_signature.parameters.get("data")
    kwarg = data.kwarg_definition if data is not None else None
    return isinstance(kwarg, BodyKwarg) and kwarg.media_type == RequestEncodingType.JSON


async def json_bodies_only(request: Request[Any, Any, Any]) -> None:
    """Refuse a non-JSON body on a JSON route with 415 before anything parses it.

    A body sent as text/plain (or form data) is not read as JSON because it
    happens to look like it; a request without a Content-Type is taken as JSON.
    """
    if request.method in _BODYLESS:
        return
    content_type = request.headers.get("content-type")
    if content_type is None or _json_media(content_type):
        return
    if request.headers.get("content-length") == "0" or not _takes_json(request.route_handler):
        return
    raise ApiError(
        415,
        "unsupported_media_type",
        f"this endpoint takes application/json, not {content_type.partition(';')[0].strip()}",
    )


def command(
    path: str,
    operation_id: str,
    permission: Permission,
    *,
    status: int = 201,
    method: str = "POST",
    raw_json: bool = False,
) -> HTTPRouteHandler:
    """The decorator of a write route: POST (or DELETE) answering `status`.
    `raw_json`: the route takes a JSON body as bytes (RawBody) and decodes it itself."""
    route = delete if method == "DELETE" else post
    return route(
        path,
        operation_id=operation_id,
        sync_to_thread=True,
        status_code=status,
        opt={"permission": permission, "raw_json": raw_json},
    )
