"""Running a POST as one unit of work, with Stripe's Idempotency-Key semantics.

The key is claimed by inserting it in the same transaction as the work. A
concurrent request with the same key waits on the unique index until the
first commits, then replays its stored response; if the first fails, nothing
was stored (Stripe does not store failures either) and the retry runs anew.
The same key with a different request is a 409.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec
import psycopg
from litestar import Request, Response

from adapters.http.problems import ApiError
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from ledger.postgres.unit_of_work import unit_of_work

JSON = "application/json"
MAX_KEY_LENGTH = 255

Work = Callable[[psycopg.Connection], tuple[int, Any]]


def encode(payload: Any) -> bytes:
    return msgspec.json.encode(payload)


def require(principal: Principal, permission: Permission) -> None:
    if not principal.may(permission):
        raise ApiError(
            403,
            "forbidden",
            f"the {principal.role} role may not do this (needs {permission})",
            role=principal.role.value,
        )


def run_command(
    runtime: Runtime,
    request: Request[Any, Any, Any],
    principal: Principal,
    payload: Any,
    work: Work,
) -> Response[bytes]:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + encode(payload)
    ).hexdigest()
    with unit_of_work(runtime.connection) as uow:
        if key is not None:
            stored = _claim(uow.conn, principal, key, fingerprint, request)
            if stored is not None:
                status, body = stored
                return Response(
                    content=body,
                    status_code=status,
                    media_type=JSON,
                    headers={"Idempotent-Replayed": "true"},
                )
        status, result = work(uow.conn)
        body = encode(result)
        if key is not None:
            uow.conn.execute(
                "update idempotency_keys set status_code = %s, response_body = %s"
                " where book_id = %s and key = %s",
                (status, body, principal.book_id, key),
            )
        uow.commit()
    return Response(content=body, status_code=status, media_type=JSON)


def _claim(
    conn: psycopg.Connection,
    principal: Principal,
    key: str,
    fingerprint: str,
    request: Request[Any, Any, Any],
) -> tuple[int, bytes] | None:
    claimed = conn.execute(
        "insert into idempotency_keys (book_id, key, request_hash, method, path)"
        " values (%s, %s, %s, %s, %s) on conflict (book_id, key) do nothing returning 1",
        (principal.book_id, key, fingerprint, request.method, request.url.path),
    ).fetchone()
    if claimed:
        return None
    row = conn.execute(
        "select request_hash, status_code, response_body from idempotency_keys"
        " where book_id = %s and key = %s",
        (principal.book_id, key),
    ).fetchone()
    assert row is not None  # the conflicting row has committed, or we would still wait
    if row[0] != fingerprint:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request; "
            "use a new key for a new request",
        )
    return int(row[1]), bytes(row[2])
