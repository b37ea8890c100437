"""Running a POST as one unit of work, with Stripe's Idempotency-Key semantics.

The key is claimed by inserting it in the same transaction as the work. A
concurrent request with the same key waits on the unique index until the
first commits, then replays its stored response; if the first fails, nothing
was stored (Stripe does not store failures either) and the retry runs anew.
The same key with a different request is a 409.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import psycopg
from litestar import Request, Response
from psycopg_pool import AsyncConnectionPool

from adapters.http.problems import ApiError
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from ledger.postgres.unit_of_work import async_unit_of_work, unit_of_work

JSON = "application/json"
MAX_KEY_LENGTH = 255

Work = Callable[[psycopg.Connection], tuple[int, Any]]
AsyncWork = Callable[[psycopg.AsyncConnection], Awaitable[tuple[int, Any]]]


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


def request_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
    return key


def fingerprint(request: Request[Any, Any, Any], payload: Any) -> str:
    return request_fingerprint(request.method, request.url.path, payload)


def request_fingerprint(method: str, path: str, payload: Any) -> str:
    """What an Idempotency-Key's request is compared by: method, path and body."""
    return hashlib.sha256(
        method.encode() + b" " + path.encode() + b"\n" + encode(payload)
    ).hexdigest()


def _replayed(stored: tuple[int, bytes]) -> Response[bytes]:
    status, body = stored
    return Response(
        content=body,
        status_code=status,
        media_type=JSON,
        headers={"Idempotent-Replayed": "true"},
    )


_STORE = (
    "update idempotency_keys set status_code = %s, response_body = %s"
    " where book_id = %s and key = %s"
)


def run_command(
    runtime: Runtime,
    request: Request[Any, Any, Any],
    principal: Principal,
    payload: Any,
    work: Work,
) -> Response[bytes]:
    key = request_key(request)
    with unit_of_work(runtime.connection) as uow:
        if key is not None:
            digest = fingerprint(request, payload)
            stored = _claim(uow.conn, principal, key, digest, request)
            if stored is not None:
                return _replayed(stored)
        status, result = work(uow.conn)
        body = encode(result)
        if key is not None:
            uow.conn.execute(_STORE, (status, body, principal.book_id, key))
        _audit_in_transaction(uow.conn, request, principal, key, status, result)
        uow.commit()
    # Committed with its audit row: the after-response writer must not add another.
    request.scope.setdefault("state", {})["audited"] = True
    return Response(content=body, status_code=status, media_type=JSON)


_AUDIT = (
    "insert into audit_log (book_id, at, key_id, role, method, path, status,"
    " idempotency_key, request_id, created) values (%s, now(), %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _audit_in_transaction(
    conn: psycopg.Connection,
    request: Request[Any, Any, Any],
    principal: Principal,
    key: str | None,
    status: int,
    result: Any,
) -> None:
    """The audit row of a command that succeeded, in its own transaction: it commits
    with the change (an invoice, a payment, a billing run) or not at all, so a crash
    after the commit cannot lose it. Refusals and replays are logged after the
    response (adapters.http.operations), as they change nothing."""
    conn.execute(_AUDIT, _audit_row(request, principal, key, status, result))


def _audit_row(
    request: Request[Any, Any, Any],
    principal: Principal,
    key: str | None,
    status: int,
    result: Any,
) -> tuple[Any, ...]:
    made = result.get("id") if status == 201 and isinstance(result, dict) else None
    return (
        principal.book_id,
        principal.key_id,
        principal.role.value,
        request.method,
        request.url.path,
        status,
        key,
        request.scope.get("state", {}).get("request_id") or "",
        [made] if isinstance(made, str) else [],
    )


async def run_command_async(
    pool: AsyncConnectionPool,
    request: Request[Any, Any, Any],
    principal: Principal,
    payload: Any,
    work: AsyncWork,
) -> Response[bytes]:
    """run_command on the event loop: the same unit of work (its audit row in its
    transaction), without a thread hop."""
    key = request_key(request)
    async with async_unit_of_work(pool.connection) as uow:
        if key is not None:
            digest = fingerprint(request, payload)
            stored = await _claim_async(uow.conn, principal, key, digest, request)
            if stored is not None:
                return _replayed(stored)
        status, result = await work(uow.conn)
        body = encode(result)
        if key is not None:
            await uow.conn.execute(_STORE, (status, body, principal.book_id, key))
        await uow.conn.execute(_AUDIT, _audit_row(request, principal, key, status, result))
        await uow.commit()
    request.scope.setdefault("state", {})["audited"] = True
    return Response(content=body, status_code=status, media_type=JSON)


_CLAIM = (
    "insert into idempotency_keys (book_id, key, request_hash, method, path)"
    " values (%s, %s, %s, %s, %s) on conflict (book_id, key) do nothing returning 1"
)
_STORED = (
    "select request_hash, status_code, response_body from idempotency_keys"
    " where book_id = %s and key = %s"
)


def _stored(row: tuple[Any, ...] | None, fingerprint: str) -> tuple[int, bytes]:
    assert row is not None  # the conflicting row has committed, or we would still wait
    if row[0] != fingerprint:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request; "
            "use a new key for a new request",
        )
    return int(row[1]), bytes(row[2])


async def _claim_async(
    conn: psycopg.AsyncConnection,
    principal: Principal,
    key: str,
    fingerprint: str,
    request: Request[Any, Any, Any],
) -> tuple[int, bytes] | None:
    cur = await conn.execute(
        _CLAIM, (principal.book_id, key, fingerprint, request.method, request.url.path)
    )
    if await cur.fetchone():
        return None
    cur = await conn.execute(_STORED, (principal.book_id, key))
    return _stored(await cur.fetchone(), fingerprint)


def _claim(
    conn: psycopg.Connection,
    principal: Principal,
    key: str,
    fingerprint: str,
    request: Request[Any, Any, Any],
) -> tuple[int, bytes] | None:
    claimed = conn.execute(
        _CLAIM, (principal.book_id, key, fingerprint, request.method, request.url.path)
    ).fetchone()
    if claimed:
        return None
    return _stored(conn.execute(_STORED, (principal.book_id, key)).fetchone(), fingerprint)
