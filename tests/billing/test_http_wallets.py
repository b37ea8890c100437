"""Wallets over HTTP: top-up, hold, capture, release, 402 on a shortfall,
expiry to breakage, and bad input answered 4xx with nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import PROBLEM, auth, counts, open_client


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _wallet(client: Any, book: BookFixture) -> dict[str, Any]:
    h = auth(book.admin_key)
    customer = client.post(
        "/v1/customers", json={"name": "Subscriber", "currency": "USD"}, headers=h
    )
    assert customer.status_code == 201
    body = {"customer": customer.json()["id"], "currency": "USD", "low_balance_threshold": "2.00"}
    created = client.post("/v1/wallets", json=body, headers=h)
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_wallet_flow(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    wallet = _wallet(client, book)
    base = f"/v1/wallets/{wallet['id']}"
    assert (wallet["balance"], wallet["available"]) == ("0.00", "0.00")
    topped = client.post(f"{base}/top-ups", json={"amount": "10.00"}, headers=h)
    assert topped.status_code == 201
    assert topped.json()["wallet"]["balance"] == "10.00"
    hold = client.post(
        f"{base}/reservations", json={"amount": "6.00", "ttl_seconds": 60}, headers=h
    )
    assert hold.status_code == 201
    assert (hold.json()["amount"], hold.json()["status"]) == ("6.00", "held")
    short = client.post(f"{base}/reservations", json={"amount": "4.01"}, headers=h)
    assert short.status_code == 402
    assert short.headers["content-type"].startswith(PROBLEM)
    assert short.json()["code"] == "insufficient_funds"
    part = client.post(f"{base}/reservations", json={"amount": "9", "partial": True}, headers=h)
    assert (part.status_code, part.json()["amount"]) == (201, "4.00")
    got = client.get(base, headers=h).json()
    assert (got["balance"], got["held"], got["available"]) == ("10.00", "10.00", "0.00")
    assert got["low_balance"] is True
    rid = hold.json()["id"]
    cap = client.post(f"{base}/reservations/{rid}/capture", json={"amount": "2.50"}, headers=h)
    assert (cap.status_code, cap.json()["status"], cap.json()["captured"]) == (
        200,
        "captured",
        "2.50",
    )
    rel = client.post(f"{base}/reservations/{part.json()['id']}/release", headers=h)
    assert (rel.status_code, rel.json()["status"]) == (200, "released")
    again = client.post(f"{base}/reservations/{rid}/capture", json={"amount": "1"}, headers=h)
    assert again.status_code == 409
    got = client.get(base, headers=h).json()
    assert (got["balance"], got["available"]) == ("7.50", "7.50")
    expired = client.post(f"{base}/expire", json={"amount": "1.50"}, headers=h)
    assert expired.status_code == 201 and expired.json()["wallet"]["balance"] == "6.00"
    kinds = [
        (t["kind"], t["amount"])
        for t in client.get(f"{base}/transactions", headers=h).json()["data"]
    ]
    assert kinds == [("top_up", "10.00"), ("usage", "-2.50"), ("breakage", "-1.50")]
    events = client.get(f"{base}/events", headers=h).json()["data"]
    assert [(e["kind"], e["available"]) for e in events] == [("low_balance", "0.00")]
    listed = client.get(f"{base}/reservations", headers=h).json()["data"]
    assert [r["status"] for r in listed] == ["captured", "released"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/reservations", {"amount": "-1"}, 422),
        ("/reservations", {"amount": "abc"}, 422),
        ("/reservations", {"amount": "1", "ttl_seconds": 0}, 422),
        ("/reservations", {"amount": "1.001"}, 422),
        ("/reservations", {"amount": "1", "extra": 1}, 400),
        ("/top-ups", {"amount": "0"}, 422),
        ("/top-ups", {"amount": "5", "payment_method": "barter"}, 422),
        ("/expire", {"amount": "100"}, 422),
    ],
)
def test_bad_input_writes_nothing(
    client: Any, book: BookFixture, database_url: str, path: str, body: dict[str, Any], status: int
) -> None:
    h = auth(book.admin_key)
    wallet = _wallet(client, book)
    base = f"/v1/wallets/{wallet['id']}"
    assert client.post(f"{base}/top-ups", json={"amount": "1.00"}, headers=h).status_code == 201
    with psycopg.connect(database_url) as conn:
        before = (
            counts(conn, book.id),
            conn.execute(
                "select count(*) from wallet_reservations where book_id = %s", (book.id,)
            ).fetchone(),
        )
        answer = client.post(base + path, json=body, headers=h)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
        after = (
            counts(conn, book.id),
            conn.execute(
                "select count(*) from wallet_reservations where book_id = %s", (book.id,)
            ).fetchone(),
        )
    assert after == before


def test_unknown_wallet_and_customer(client: Any, book: BookFixture) -> None:
    h = auth(book.admin_key)
    missing = client.get("/v1/wallets/00000000-0000-0000-0000-000000000000", headers=h)
    assert missing.status_code == 404
    body = {"customer": "nobody", "currency": "USD"}
    assert client.post("/v1/wallets", json=body, headers=h).status_code == 404
