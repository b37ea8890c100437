"""API keys (admin only): `GET /v1/api-keys` lists a book's keys, `POST /v1/api-keys`
makes one (its secret shown once), `POST /v1/api-keys/{id}/rotate` replaces one by a
new key of the same role and label, `DELETE /v1/api-keys/{id}` revokes one. A revoked
key is refused (401) at once by the process that revoked it and within
auth.CACHE_SECONDS by the other worker processes; a rotated key with a grace period
is refused from the end of it (a cache never keeps a key past its revoked_at).
`GET /v1/audit-log` (admins and auditors) reads the audit log with filters."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.audit import audit_json, audit_rows, parse_filter
from adapters.http.auth import KeyCache
from adapters.http.billing_fields import MAX_PAGE
from adapters.http.commands import require
from adapters.http.cursors import decode_sort_key, encode_sort_key
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, command, json_response
from adapters.keys import (
    GRANTS,
    Permission,
    Principal,
    create_key,
    list_keys,
    parse_role,
    revoke_key,
    rotate_key,
)
from adapters.runtime import Runtime


class ApiKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    label: str = ""


class RotateIn(msgspec.Struct, forbid_unknown_fields=True):
    # Seconds the old key keeps working (0: refused at once), up to keys.MAX_GRACE_SECONDS.
    grace_seconds: int = 0


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

    @command("/", "createApiKey", Permission.MANAGE_KEYS)
    def create(self, data: JSONBody[ApiKeyIn], run: Run) -> Response[bytes]:
        role = parse_role(data.role)
        if not GRANTS[role] <= GRANTS[run.principal.role]:  # no key hands out more than it has
            raise ApiError(403, "forbidden", f"the {run.principal.role} role may not grant {role}")

        def work(tx: Tx) -> dict[str, Any]:
            key_id, secret = create_key(tx.conn, tx.book_id, role, data.label)
            made = next(k for k in list_keys(tx.conn, tx.book_id) if k.key_id == key_id)
            return {**made.json(), "id": str(key_id), "api_key": secret}

        return run({"role": data.role, "label": data.label}, work)

    @command("/{key_id:str}/rotate", "rotateApiKey", Permission.MANAGE_KEYS)
    def rotate(
        self, key_id: FromPath[str], state: State, run: Run, data: JSONBody[RotateIn | None] = None
    ) -> Response[bytes]:
        """Replace an API key by a new one (the old one refused now or after a grace)."""
        grace = data.grace_seconds if data is not None else 0
        cache: KeyCache = state.key_cache
        rotated: list[Any] = []

        def work(tx: Tx) -> dict[str, Any]:
            rotation = rotate_key(tx.conn, tx.book_id, key_id, grace)
            rotated.append(rotation.old.key_id)
            return {**rotation.json(), "id": str(rotation.new.key_id)}

        response = run({"rotate": key_id, "grace_seconds": grace}, work)
        if grace == 0:
            for found in rotated:  # committed: this process refuses the old key from now on
                cache.forget(found)
        return response

    @command("/{key_id:str}", "revokeApiKey", Permission.MANAGE_KEYS, status=200, method="DELETE")
    def revoke(self, key_id: FromPath[str], state: State, run: Run) -> Response[bytes]:
        cache: KeyCache = state.key_cache
        revoked: list[Any] = []

        def work(tx: Tx) -> dict[str, Any]:
            key = revoke_key(tx.conn, tx.book_id, key_id)
            revoked.append(key.key_id)
            return key.json()

        response = run({"revoke": key_id}, work)
        for found in revoked:  # committed: this process refuses the key from now on
            cache.forget(found)
        return response


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
        since: Annotated[str | None, QueryParameter(name="from")] = None,
        until: Annotated[str | None, QueryParameter(name="to")] = None,
        key_id: FromQuery[str | None] = None,
        method: FromQuery[str | None] = None,
        path: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        require(principal, Permission.READ_AUDIT)
        # Parsed here, not by the framework: a bad value is a 422 naming the parameter.
        where = parse_filter(
            {
                "from": since,
                "to": until,
                "key_id": key_id,
                "method": method,
                "path": path,
                "status": status,
            }
        )
        key = decode_sort_key(cursor)
        if key is not None and (len(key) != 1 or not isinstance(key[0], int)):
            raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
        with Reader(runtime, principal) as conn:
            rows = audit_rows(
                conn, principal.book_id, where, before=key[0] if key else None, limit=limit
            )
        return json_response(
            {
                "data": [audit_json(r) for r in rows],
                "next_cursor": encode_sort_key([rows[-1]["id"]]) if len(rows) == limit else None,
            }
        )
