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
        ("/top-ups", {"amount": "5", "valid_days": 0}, 422),
        ("/top-ups", {"amount": "5", "valid_days": 3661}, 422),
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


def test_a_recharge_valid_30_days_lapses_to_breakage_after_it(
    client: Any, book: BookFixture, database_url: str
) -> None:
    """A top-up good for 30 days from Mar 1 is usable through Mar 30; a reservation
    on Mar 31 first lapses the value (Breakage dated Mar 31) and is refused 402."""
    h = auth(book.admin_key)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update books set clock_mode = 'simulated', clock_date = '2026-03-01' where id = %s",
            (book.id,),
        )
    wallet = _wallet(client, book)
    base = f"/v1/wallets/{wallet['id']}"
    topped = client.post(f"{base}/top-ups", json={"amount": "10.00", "valid_days": 30}, headers=h)
    assert topped.status_code == 201, topped.text
    assert topped.json()["wallet"]["valid_until"] == "2026-03-30"
    with psycopg.connect(database_url) as conn:
        conn.execute("update books set clock_date = '2026-03-30' where id = %s", (book.id,))
    still = client.post(f"{base}/reservations", json={"amount": "1.00"}, headers=h)
    assert still.status_code == 201, still.text
    client.post(f"{base}/reservations/{still.json()['id']}/release", json={}, headers=h)
    with psycopg.connect(database_url) as conn:
        conn.execute("update books set clock_date = '2026-03-31' where id = %s", (book.id,))
    late = client.post(f"{base}/reservations", json={"amount": "1.00"}, headers=h)
    assert (late.status_code, late.json()["code"]) == (402, "insufficient_funds")
    assert "lapsed on 2026-03-31" in late.json()["detail"]
    # The refused hold wrote nothing; the next top-up posts the lapse before adding.
    assert client.get(base, headers=h).json()["balance"] == "10.00"
    again = client.post(f"{base}/top-ups", json={"amount": "2.00"}, headers=h)
    assert again.status_code == 201, again.text
    got = client.get(base, headers=h).json()
    assert (got["balance"], got["available"], got["valid_until"]) == ("2.00", "2.00", None)
    with psycopg.connect(database_url) as conn:
        posted = conn.execute(
            "select e.effective_date::text, a.name, p.amount::text from journal_entries e"
            " join postings p on p.book_id = e.book_id and p.entry_id = e.id"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where e.book_id = %s and e.memo like 'Wallet value expired%%' order by p.amount",
            (book.id,),
        ).fetchall()
        conn.execute(
            "update books set clock_mode = 'real', clock_date = null where id = %s", (book.id,)
        )
    assert posted == [
        ("2026-03-31", "Income:Breakage", "-10.00"),
        ("2026-03-31", wallet["account"], "10.00"),
    ]
