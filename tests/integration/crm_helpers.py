"""Shared steps of the CRM tests: settings, a recurring price, the worker and its queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from adapters.crm.outbound import CrmWorker
from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import auth


def post(client: Any, book: BookFixture, path: str, body: Any, status: int = 201) -> Any:
    r = client.post(path, json=body, headers=auth(book.admin_key))
    assert r.status_code == status, r.text
    return r.json()


def settings(client: Any, book: BookFixture, **values: Any) -> dict[str, Any]:
    r = client.patch("/v1/book/settings", json=values, headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()["settings"]
    return found


def monthly_price(client: Any, book: BookFixture, amount: str) -> str:
    product = post(client, book, "/v1/products", {"name": f"Plan {amount}"})
    price = post(
        client,
        book,
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "USD",
            "charge_model": "flat",
            "unit_amount": amount,
            "interval": "month",
        },
    )
    return str(price["id"])


def customer(client: Any, book: BookFixture, ref: str) -> dict[str, Any]:
    r = client.get(f"/v1/customers/{ref}", headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=5)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


def worker(runtime: Runtime, book: BookFixture, clock: Clock | None = None) -> CrmWorker:
    return CrmWorker(runtime.connection, clock=clock or Clock(), books=[book.id])


def deliveries(conn: psycopg.Connection, book_id: uuid.UUID) -> list[tuple[str, int]]:
    """(status, attempts) of the book's CRM deliveries, in the order of their events."""
    rows = conn.execute(
        "select d.status, d.attempts from crm_deliveries d left join events e"
        " on e.book_id = d.book_id and e.id = d.event_id where d.book_id = %s"
        " order by e.sequence nulls last, d.created_at",
        (book_id,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def log_kinds(conn: psycopg.Connection, book_id: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "select record_id, field, crm_value, billing_value, resolution, message"
        " from crm_sync_log where book_id = %s and kind = %s order by id",
        (book_id, kind),
    ).fetchall()
    names = ("record_id", "field", "crm_value", "billing_value", "resolution", "message")
    return [dict(zip(names, r, strict=True)) for r in rows]
