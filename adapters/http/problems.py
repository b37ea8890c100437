"""RFC 9457 problem details: the one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from psycopg import DataError, OperationalError

from adapters.http.request_context import REQUEST_ID
from ledger.errors import LedgerError

log = logging.getLogger("activebilling.http")

PROBLEM_BASE = "https://activebilling.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class ApiError(Exception):
    """An error of the HTTP edge itself (authentication, permissions, bad parameters)."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields


RETRY_AFTER_SECONDS = 2  # a database outage: clients come back after this


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body: dict[str, Any] = {"code": code}
    body.update({k: v for k, v in (extra or {}).items() if v is not None})
    body.update({"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail})
    request_id = REQUEST_ID.get()
    if request_id is not None:  # the X-Request-Id of the response, for support and logs
        body["request_id"] = request_id
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def unavailable(detail: str) -> Response[bytes]:
    """503 with Retry-After: the database cannot be reached (or the pool is exhausted)."""
    return problem(
        503,
        "database_unavailable",
        "Database unavailable",
        detail,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


def ledger_error(_: Request[Any, Any, Any], exc: LedgerError) -> Response[bytes]:
    return problem(exc.status, exc.code, _title(exc.code), exc.message, exc.fields)


def api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    wait = exc.fields.get("retry_after")  # a rate limit says when to come back
    headers = {"Retry-After": str(wait)} if wait is not None else None
    return problem(exc.status, exc.code, _title(exc.code), exc.message, exc.fields, headers)


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    detail = str(exc.detail)
    extra = exc.extra if isinstance(exc.extra, list | dict) else None
    messages = " ".join(
        str(item.get("message", "")) for item in exc.extra or [] if isinstance(item, dict)
    )
    if "got `float`" in messages or "got `int`" in messages:
        detail += (
            ': amounts are decimal strings such as "12.50", never JSON numbers '
            "(a float cannot hold an exact amount)"
        )
    elif messages:
        detail += f": {messages}"
    return problem(400, "validation_error", "Invalid request", detail, {"errors": extra})


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc, NotFoundException):
        code = "not_found"
    elif isinstance(exc, MethodNotAllowedException):
        code = "method_not_allowed"
    else:
        code = "http_error"
    return problem(exc.status_code, code, _title(code), str(exc.detail))


def database_unavailable(_: Request[Any, Any, Any], exc: OperationalError) -> Response[bytes]:
    if exc.sqlstate is not None and exc.sqlstate.startswith("40"):
        # A deadlock or serialization failure is not an outage: the database rolled
        # this request back in favour of a concurrent one, and a retry will do.
        log.warning("transaction rolled back by the database: %s", exc)
        return problem(
            409,
            "concurrent_update",
            "Concurrent update",
            "a concurrent request changed the same rows and the database rolled this one"
            " back; nothing was written, retry it (with the same Idempotency-Key)",
            headers={"Retry-After": "1"},
        )
    log.error("database unavailable: %s", exc)
    return unavailable("the database cannot be reached; nothing was written, try again shortly")


def data_error(request: Request[Any, Any, Any], exc: DataError) -> Response[bytes]:
    # The edge check (adapters.input_limits) names the field; this is the
    # backstop for text that reached psycopg another way.
    if "NUL" in str(exc):
        return problem(
            422,
            "nul_character",
            "Nul character",
            "text cannot contain a NUL character (U+0000); nothing was written",
        )
    return internal_error(request, exc)


def internal_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", exc_info=exc)
    return problem(
        500, "internal_error", "Internal error", "an unexpected error occurred; nothing was written"
    )


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    LedgerError: ledger_error,
    ApiError: api_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    OperationalError: database_unavailable,
    DataError: data_error,
    Exception: internal_error,
}
