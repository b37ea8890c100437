"""API keys: `GET /v1/api-keys` lists a book's keys, `DELETE /v1/api-keys/{id}` revokes
one (admin only). A revoked key is refused (401) at once by the process that revoked
it and within auth.CACHE_SECONDS by the other worker processes."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from litestar import Controller, Request, Response, delete, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from adapters.http.auth import KeyCache
from adapters.http.billing_fields import MAX_PAGE
from adapters.http.commands import require, run_command
from adapters.http.cursors import decode_sort_key, encode_sort_key
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, json_response
from adapters.keys import Permission, Principal, audit_log, list_keys, revoke_key
from adapters.runtime import Runtime


class ApiKeysController(Controller):
    path = "/v1/api-keys"
    tags = ["keys"]

    @get("/", operation_id="listApiKeys", summary="List the book's API keys", sync_to_thread=True)
    def list_api_keys(
        self, principal: NamedDependency[Principal], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        require(principal, Permission.MANAGE_KEYS)
        with Reader(runtime, principal) as conn:
            keys = list_keys(conn, principal.book_id)
        return json_response({"data": [k.json() for k in keys]})

    @delete(
        "/{key_id:str}",
        operation_id="revokeApiKey",
        summary="Revoke an API key",
        sync_to_thread=True,
        status_code=200,
    )
    def revoke(
        self,
        key_id: FromPath[str],
        request: Request[Any, Any, Any],
        state: State,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.MANAGE_KEYS)
        cache: KeyCache = state.key_cache
        revoked: list[Any] = []

        def work(conn: psycopg.Connection) -> tuple[int, Any]:
            key = revoke_key(conn, principal.book_id, key_id)
            revoked.append(key.key_id)
            return 200, key.json()

        response = run_command(runtime, request, principal, {"revoke": key_id}, work)
        for found in revoked:  # committed: this process refuses the key from now on
            cache.forget(found)
        return response


def audit_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "at": row["at"].isoformat(),
        "key_id": str(row["key_id"]),
        "role": row["role"],
        "method": row["method"],
        "path": row["path"],
        "status": row["status"],
        "idempotency_key": row["idempotency_key"],
        "request_id": row["request_id"],
        "created": list(row["created"]),
    }


class AuditLogController(Controller):
    path = "/v1/audit-log"
    tags = ["keys"]

    @get(
        "/",
        operation_id="listAuditLog",
        summary="Who changed what, newest first",
        sync_to_thread=True,
    )
    def list_audit_log(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[bytes]:
        require(principal, Permission.READ_AUDIT)
        key = decode_sort_key(cursor)
        if key is not None and (len(key) != 1 or not isinstance(key[0], int)):
            raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
        with Reader(runtime, principal) as conn:
            rows = audit_log(conn, principal.book_id, before=key[0] if key else None, limit=limit)
        return json_response(
            {
                "data": [audit_json(r) for r in rows],
                "next_cursor": encode_sort_key([rows[-1]["id"]]) if len(rows) == limit else None,
            }
        )
