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
from psycopg import OperationalError

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


def problem(
    status: int, code: str, title: str, detail: str, extra: dict[str, Any] | None = None
) -> Response[bytes]:
    body: dict[str, Any] = {"code": code}
    body.update({k: v for k, v in (extra or {}).items() if v is not None})
    body.update({"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail})
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=MEDIA_TYPE)


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


def ledger_error(_: Request[Any, Any, Any], exc: LedgerError) -> Response[bytes]:
    return problem(exc.status, exc.code, _title(exc.code), exc.message, exc.fields)


def api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    return problem(exc.status, exc.code, _title(exc.code), exc.message, exc.fields)


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
    log.error("database unavailable: %s", exc)
    return problem(503, "database_unavailable", "Database unavailable", "try again shortly")


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
    Exception: internal_error,
}
