"""The audit log (issue 14): who changed what, append-only, read by admins and auditors.

Two writers share one table:
- HTTP: every POST, PUT, PATCH and DELETE made with a key (adapters.http.operations),
  `principal` empty (the key names who acted), `status` the HTTP status.
- The command line: every command that changes a book (adapters.cli.audit),
  `key_id` empty, `principal` "cli:<os user>", `method` "CLI", `path` the command
  ("keys rotate"), `status` its exit code (0 done, 2 refused).

Reading takes filters (`from`/`to` on `at`, `key_id`, `method`, a `path` prefix,
`status`) and pages newest first by the row id.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from ledger.errors import InvalidEntry

CLI_METHOD = "CLI"
CLI_ROLE = "cli"
_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", CLI_METHOD})


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: datetime | None = None  # `from`, inclusive
    until: datetime | None = None  # `to`, exclusive
    key_id: uuid.UUID | None = None
    method: str | None = None
    path: str | None = None  # a prefix
    status: int | None = None


def _instant(name: str, value: str) -> datetime:
    """ISO 8601 timestamp (UTC when it names no offset) or a date (its midnight UTC)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        found = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEntry(
            f"{name} {value!r} is not a date or timestamp: use ISO 8601,"
            " e.g. 2026-12-01 or 2026-12-01T09:30:00Z",
            parameter=name,
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def parse_filter(given: Mapping[str, str | None]) -> AuditFilter:
    """The filter from query parameters (or CLI options) as text; a bad value is a
    422 naming the parameter."""
    since = _instant("from", v) if (v := given.get("from")) else None
    until = _instant("to", v) if (v := given.get("to")) else None
    if since and until and until <= since:
        raise InvalidEntry("to must be after from", parameter="to")
    key_id = None
    if v := given.get("key_id"):
        try:
            key_id = uuid.UUID(v)
        except ValueError:
            raise InvalidEntry(f"key_id {v!r} is not a key id", parameter="key_id") from None
    method = None
    if v := given.get("method"):
        method = v.upper()
        if method not in _METHODS:
            raise InvalidEntry(
                f"method {v!r}: use one of {', '.join(sorted(_METHODS))}", parameter="method"
            )
    path = given.get("path") or None
    if path is not None and (len(path) > 1000 or not path.isprintable()):
        raise InvalidEntry("path must be a printable prefix of up to 1000 characters")
    status = None
    if v := given.get("status"):
        if not (v.isascii() and v.isdigit() and int(v) <= 999):
            raise InvalidEntry(
                f"status {v!r} is not a status (0-999; 0 and 2 are CLI exit codes)",
                parameter="status",
            )
        status = int(v)
    return AuditFilter(since, until, key_id, method, path, status)


_NAMES = (
    "id",
    "at",
    "key_id",
    "role",
    "method",
    "path",
    "status",
    "idempotency_key",
    "request_id",
    "created",
    "principal",
)


def audit_rows(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    where: AuditFilter = AuditFilter(),
    *,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The book's audit rows matching `where`, newest first, before the row `before`
    (a cursor)."""
    rows = conn.execute(
        f"select {', '.join(_NAMES)} from audit_log where book_id = %(book)s"
        " and (%(before)s::bigint is null or id < %(before)s)"
        " and (%(since)s::timestamptz is null or at >= %(since)s)"
        " and (%(until)s::timestamptz is null or at < %(until)s)"
        " and (%(key)s::uuid is null or key_id = %(key)s)"
        " and (%(method)s::text is null or method = %(method)s)"
        # A prefix without LIKE: no wildcards to escape in what the caller sent.
        " and (%(path)s::text is null or left(path, length(%(path)s)) = %(path)s)"
        " and (%(status)s::int is null or status = %(status)s)"
        " order by id desc limit %(limit)s",
        {
            "book": book_id,
            "before": before,
            "since": where.since,
            "until": where.until,
            "key": where.key_id,
            "method": where.method,
            "path": where.path,
            "status": where.status,
            "limit": limit,
        },
    ).fetchall()
    return [dict(zip(_NAMES, row, strict=True)) for row in rows]


def audit_json(row: dict[str, Any]) -> dict[str, Any]:
    key_id = row["key_id"]
    return {
        "id": str(row["id"]),
        "at": row["at"].isoformat(),
        "key_id": str(key_id) if key_id else None,
        "principal": row["principal"] or f"key:{key_id}",
        "role": row["role"],
        "method": row["method"],
        "path": row["path"],
        "status": row["status"],
        "idempotency_key": row["idempotency_key"],
        "request_id": row["request_id"],
        "created": list(row["created"]),
    }


def cli_principal() -> str:
    """Who runs the command: "cli:<os user>" (the uid when the system has no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def cli_request_id() -> str:
    return f"cli-{uuid.uuid4().hex}"


def record_cli(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    command: str,
    status: int,
    created: Sequence[str] = (),
    *,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> None:
    """Append a command-line mutation's row. Called inside the command's transaction
    where the command can (the row commits with the change or not at all), else
    right after it."""
    conn.execute(
        "insert into audit_log (book_id, at, key_id, role, method, path, status,"
        " idempotency_key, request_id, created, principal)"
        " values (%s, now(), null, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            CLI_ROLE,
            CLI_METHOD,
            command,
            status,
            idempotency_key,
            request_id or cli_request_id(),
            list(created),
            cli_principal(),
        ),
    )
