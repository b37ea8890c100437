"""Dunning (API.md): `POST /v1/dunning-runs` runs the book's dunning policy for a
day (adapters/dunning.py); `GET /v1/messages` lists the outbox of reminders."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter

from adapters.dunning import run_dunning
from adapters.http.commands import require
from adapters.http.cursors import decode_keyset, encode_keyset
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, json_response
from adapters.keys import Permission, Principal
from adapters.messages.smtp import list_messages
from adapters.runtime import Runtime
from ledger.postgres.books import get_book

STATUSES = ("queued", "sending", "sent", "failed")


class DunningRunIn(msgspec.Struct, forbid_unknown_fields=True):
    as_of: date | None = None  # default: the book's today


def message_json(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(m["id"]),
        "object": "message",
        "customer": str(m["customer_id"]),
        "invoice": str(m["invoice_id"]) if m["invoice_id"] else None,
        "kind": m["kind"],
        "recipient": m["recipient"],
        "subject": m["subject"],
        "body": m["body"],
        "status": m["status"],
        "attempts": m["attempts"],
        "next_attempt_at": m["next_attempt_at"].isoformat(),
        "last_error": m["last_error"],
        "sent_at": m["sent_at"].isoformat() if m["sent_at"] else None,
        "created_at": m["created_at"].isoformat(),
    }


class DunningController(Controller):
    path = "/v1"
    tags = ["payments"]

    @post("/dunning-runs", operation_id="createDunningRun", sync_to_thread=True)
    def create_run(
        self,
        data: JSONBody[DunningRunIn],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        """A transaction per invoice (adapters/dunning.py): safe to repeat by
        construction, like a billing run, so no idempotency answer is stored."""
        require(principal, Permission.BILLING_WRITE)
        with runtime.connection() as conn:
            today = get_book(conn, principal.book_id).today(runtime.today())
            conn.rollback()
        done = run_dunning(runtime.connection, principal.book_id, data.as_of or today, today)
        return json_response(done, 201)

    @get("/messages", operation_id="listMessages", sync_to_thread=True)
    def list_messages(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        invoice: FromQuery[uuid.UUID | None] = None,
        status: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> Response[bytes]:
        if status is not None and status not in STATUSES:
            raise ApiError(422, "invalid_request", f"status must be one of {', '.join(STATUSES)}")
        with Reader(runtime, principal) as conn:
            found = list_messages(
                conn,
                principal.book_id,
                invoice_id=invoice,
                status=status,
                after=decode_keyset(cursor),
                limit=limit,
            )
        last = found[-1] if len(found) == limit else None
        return json_response(
            {
                "data": [message_json(m) for m in found],
                "next_cursor": encode_keyset(last["created_at"], last["id"]) if last else None,
            }
        )
