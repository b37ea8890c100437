"""Webhook endpoints, their deliveries' attempts, and redelivery, in PostgreSQL.

Deliveries are queued by a trigger on `events` (migration 0010) in the
event's own transaction; the worker (adapters/webhooks/worker.py) sends them.
"""

from __future__ import annotations

import secrets
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from billing.events import EVENT_TYPES
from billing.postgres.events import get_event
from billing.webhooks import InvalidWebhook, check_url, is_public_address, wanted_types
from ledger.errors import NotFound

Resolve = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    """Every address the host resolves to (any one of them may be dialled)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise InvalidWebhook(f"the webhook host {host!r} does not resolve") from None
    return sorted({str(info[4][0]) for info in infos})


def refused_address(url: str, allow_private_network: bool, resolve: Resolve) -> str | None:
    """Why the URL may not be dialled (SSRF), or None when it may."""
    host = check_url(url)
    if allow_private_network:
        return None
    private = [a for a in resolve(host) if not is_public_address(a)]
    if private:
        return (
            f"{host} resolves to a loopback, private or reserved address ({', '.join(private)});"
            " only an admin may allow such a target (allow_private_network)"
        )
    return None


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: uuid.UUID
    url: str
    enabled_events: list[str]
    allow_private_network: bool
    status: str
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime

    def json(self, secret: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "object": "webhook_endpoint",
            "url": self.url,
            "enabled_events": self.enabled_events,
            "allow_private_network": self.allow_private_network,
            "status": self.status,
            "disabled_reason": self.disabled_reason,
            "consecutive_failures": self.consecutive_failures,
            "created_at": self.created_at.isoformat(),
        }
        if secret is not None:
            out["secret"] = secret
        return out


_COLUMNS = (
    "id, url, enabled_events, allow_private_network, status, disabled_reason,"
    " consecutive_failures, created_at"
)


def create_endpoint(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    url: str,
    events: Sequence[str],
    allow_private_network: bool,
) -> tuple[Endpoint, str]:
    """A new endpoint and its signing secret (shown to the caller once). The
    address check (refused_address) is made before, outside the transaction."""
    check_url(url)
    types = wanted_types(events, EVENT_TYPES)
    secret = f"whsec_{secrets.token_hex(24)}"
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "insert into webhook_endpoints (book_id, id, url, enabled_events, secret,"
            " allow_private_network) values (%s, %s, %s, %s, %s, %s)"
            f" returning {_COLUMNS}",
            (book_id, uuid.uuid4(), url, types, secret, allow_private_network),
        ).fetchone()
    assert row is not None
    return Endpoint(**row), secret


def _endpoint_id(ref: str) -> uuid.UUID:
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise NotFound(f"webhook endpoint {ref!r} does not exist in this book") from None


def get_endpoint(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Endpoint:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_COLUMNS} from webhook_endpoints where book_id = %s and id = %s"
            " and status <> 'deleted'",
            (book_id, _endpoint_id(ref)),
        ).fetchone()
    if row is None:
        raise NotFound(f"webhook endpoint {ref!r} does not exist in this book")
    return Endpoint(**row)


def list_endpoints(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Endpoint]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_COLUMNS} from webhook_endpoints where book_id = %s"
            " and status <> 'deleted' order by created_at, id",
            (book_id,),
        ).fetchall()
    return [Endpoint(**r) for r in rows]


def delete_endpoint(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Endpoint:
    """Stop sending to the endpoint; its delivery log stays."""
    found = get_endpoint(conn, book_id, ref)
    conn.execute(
        "update webhook_endpoints set status = 'deleted' where book_id = %s and id = %s",
        (book_id, found.id),
    )
    return get_endpoint_any(conn, book_id, found.id)


def get_endpoint_any(
    conn: psycopg.Connection, book_id: uuid.UUID, endpoint_id: uuid.UUID
) -> Endpoint:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_COLUMNS} from webhook_endpoints where book_id = %s and id = %s",
            (book_id, endpoint_id),
        ).fetchone()
    assert row is not None
    return Endpoint(**row)


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    delivery_id: uuid.UUID
    event_id: str
    attempted_at: datetime
    status: str
    response_code: int | None
    error: str | None

    def json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "object": "webhook_delivery_attempt",
            "delivery": str(self.delivery_id),
            "event": self.event_id,
            "attempted_at": self.attempted_at.isoformat(),
            "status": self.status,
            "response_code": self.response_code,
            "error": self.error,
        }


def list_attempts(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    endpoint_ref: str,
    *,
    before: int | None,
    limit: int,
) -> list[Attempt]:
    """The endpoint's delivery log, newest attempt first."""
    endpoint = get_endpoint(conn, book_id, endpoint_ref)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select id, delivery_id, event_id, attempted_at, status, response_code, error"
            " from webhook_attempts where book_id = %s and endpoint_id = %s"
            " and (%s::bigint is null or id < %s) order by id desc limit %s",
            (book_id, endpoint.id, before, before, limit),
        ).fetchall()
    return [Attempt(**r) for r in rows]


def redeliver(
    conn: psycopg.Connection, book_id: uuid.UUID, event_ref: str, endpoint_ref: str | None
) -> list[uuid.UUID]:
    """Queue the event again for the endpoint named, or for every enabled endpoint
    that wants its type; returns the new deliveries' ids."""
    event = get_event(conn, book_id, event_ref)
    endpoint_id = None if endpoint_ref is None else get_endpoint(conn, book_id, endpoint_ref).id
    rows = conn.execute(
        "insert into webhook_deliveries (book_id, id, endpoint_id, event_id, event_sequence,"
        " object_id)"
        " select %(book)s, gen_random_uuid(), w.id, %(event)s, %(sequence)s, %(object)s"
        "   from webhook_endpoints w"
        "  where w.book_id = %(book)s and w.status = 'enabled'"
        "    and (%(endpoint)s::uuid is null or w.id = %(endpoint)s)"
        "    and (%(endpoint)s::uuid is not null or w.enabled_events = '{}'"
        "         or %(type)s = any (w.enabled_events) or '*' = any (w.enabled_events)"
        "         or split_part(%(type)s, '.', 1) || '.*' = any (w.enabled_events))"
        " returning id",
        {
            "book": book_id,
            "event": event.id,
            "sequence": event.sequence,
            "object": event.object_id,
            "endpoint": endpoint_id,
            "type": event.type,
        },
    ).fetchall()
    if endpoint_ref is not None and not rows:
        raise InvalidWebhook(f"webhook endpoint {endpoint_ref} is disabled: nothing to redeliver")
    return [r[0] for r in rows]
