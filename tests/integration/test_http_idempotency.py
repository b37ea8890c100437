"""Idempotency-Key with Stripe's semantics, in-process and on a real server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from adapters.http.app import create_app
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import (
    assert_problem,
    auth,
    counts,
    entry_body,
    open_client,
)

REPLAYED = "Idempotent-Replayed"


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def keyed(book: BookFixture, key: str) -> dict[str, str]:
    return {**auth(book.admin_key), "Idempotency-Key": key}


def test_replay_returns_the_original_response(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    body = entry_body("2026-01-05", "12.34")
    first = client.post("/v1/journal-entries", json=body, headers=keyed(book, "k-1"))
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert first.json()["idempotency_key"] == "k-1"
    after_first = counts(owner_conn, book.id)
    assert after_first["journal_entries"] == 1

    second = client.post("/v1/journal-entries", json=body, headers=keyed(book, "k-1"))
    assert second.status_code == 201
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    # the same parameters in another order are the same request
    reordered = {k: body[k] for k in reversed(list(body))}
    third = client.post("/v1/journal-entries", json=reordered, headers=keyed(book, "k-1"))
    assert third.status_code == 201 and third.headers[REPLAYED] == "true"
    assert third.content == first.content
    assert counts(owner_conn, book.id) == after_first


def test_same_key_with_a_different_body_is_409(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    first = client.post("/v1/journal-entries", json=entry_body(), headers=keyed(book, "k-2"))
    assert first.status_code == 201
    before = counts(owner_conn, book.id)
    for changed in (
        entry_body(amount="10.01"),
        entry_body(effective_date="2026-01-06"),
        entry_body(memo="other"),
        entry_body(credit="Income:Usage"),
    ):
        r = client.post("/v1/journal-entries", json=changed, headers=keyed(book, "k-2"))
        problem = assert_problem(r, 409, "idempotency_key_reused")
        assert "Idempotency-Key" in problem["detail"]
    other_path = client.post(
        "/v1/accounts", json={"name": "Assets:Keyed"}, headers=keyed(book, "k-2")
    )
    assert_problem(other_path, 409, "idempotency_key_reused")
    assert counts(owner_conn, book.id) == before


def test_a_failed_request_stores_nothing_and_may_be_retried(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    bad = entry_body()
    bad["postings"][1]["amount"] = "-9.00"
    before = counts(owner_conn, book.id)
    r = client.post("/v1/journal-entries", json=bad, headers=keyed(book, "k-3"))
    assert_problem(r, 422, "unbalanced_entry")
    assert counts(owner_conn, book.id) == before
    fixed = client.post("/v1/journal-entries", json=entry_body(), headers=keyed(book, "k-3"))
    assert fixed.status_code == 201, fixed.text
    assert REPLAYED not in fixed.headers


def test_keys_are_scoped_to_the_book(client: Any, runtime: Runtime) -> None:
    a, b = make_book(runtime), make_book(runtime)
    ra = client.post("/v1/journal-entries", json=entry_body(), headers=keyed(a, "shared"))
    rb = client.post(
        "/v1/journal-entries", json=entry_body(amount="99.00"), headers=keyed(b, "shared")
    )
    assert ra.status_code == rb.status_code == 201
    assert REPLAYED not in rb.headers
    assert ra.json()["id"] != rb.json()["id"]


def test_key_length(client: Any, book: BookFixture, owner_conn: psycopg.Connection) -> None:
    before = counts(owner_conn, book.id)
    r = client.post("/v1/journal-entries", json=entry_body(), headers=keyed(book, "x" * 256))
    assert_problem(r, 400, "invalid_idempotency_key")
    assert counts(owner_conn, book.id) == before
    ok = client.post("/v1/journal-entries", json=entry_body(), headers=keyed(book, "x" * 255))
    assert ok.status_code == 201, ok.text


def test_body_idempotency_key_replays_the_entry(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    h = auth(book.admin_key)
    body = entry_body(idempotency_key="erp-77")
    first = client.post("/v1/journal-entries", json=body, headers=h)
    assert first.status_code == 201
    again = client.post("/v1/journal-entries", json=body, headers=h)
    assert again.status_code == 200  # the entry already exists: nothing new was created
    assert again.json()["id"] == first.json()["id"]
    before = counts(owner_conn, book.id)
    assert before["journal_entries"] == 1
    changed = client.post(
        "/v1/journal-entries", json=entry_body(amount="1.00", idempotency_key="erp-77"), headers=h
    )
    assert_problem(changed, 409, "idempotency_conflict")
    assert counts(owner_conn, book.id) == before


def test_batch_and_reverse_replay(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    batch = {"entries": [entry_body("2026-01-01", "1.00"), entry_body("2026-01-02", "2.00")]}
    first = client.post("/v1/journal-entries/batch", json=batch, headers=keyed(book, "b-1"))
    assert first.status_code == 201, first.text
    again = client.post("/v1/journal-entries/batch", json=batch, headers=keyed(book, "b-1"))
    assert again.status_code == 201 and again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert counts(owner_conn, book.id)["journal_entries"] == 2

    entry_id = first.json()["data"][0]["id"]
    path = f"/v1/journal-entries/{entry_id}/reverse"
    reversal = client.post(path, headers=keyed(book, "r-1"))
    assert reversal.status_code == 201, reversal.text
    replay = client.post(path, headers=keyed(book, "r-1"))
    assert replay.status_code == 201 and replay.headers[REPLAYED] == "true"
    assert replay.content == reversal.content
    assert counts(owner_conn, book.id)["journal_entries"] == 3
    # a new key asks for a second reversal, which the ledger refuses
    assert_problem(client.post(path, headers=keyed(book, "r-2")), 409, "already_reversed")


def test_period_close_replay(client: Any, book: BookFixture) -> None:
    first = client.post("/v1/periods/2026-01/close", headers=keyed(book, "p-1"))
    assert first.status_code == 200
    again = client.post("/v1/periods/2026-01/close", headers=keyed(book, "p-1"))
    assert again.headers[REPLAYED] == "true" and again.content == first.content
    reopen = client.post("/v1/periods/2026-01/reopen", headers=keyed(book, "p-1"))
    assert_problem(reopen, 409, "idempotency_key_reused")


# --- a real server: 20 concurrent requests with one key ---------------------------------


@pytest.fixture(scope="module")
def server_base(runtime: Runtime) -> Iterator[str]:
    """The app on uvicorn in a background thread, on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(runtime, run_sealer=False), log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(1000):
        if server.started or not thread.is_alive():
            break
        started.wait(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_twenty_concurrent_requests_with_one_key_create_one_entry(
    server_base: str, runtime: Runtime, owner_conn: psycopg.Connection, round_: int
) -> None:
    book = make_book(runtime)
    key = f"concurrent-{round_}"
    body = entry_body("2026-01-05", "250.00")
    n = 20
    barrier = threading.Barrier(n)

    def fire(_: int) -> httpx.Response:
        with httpx.Client(base_url=server_base, timeout=60) as c:
            assert c.get("/health").status_code == 200  # connection is open
            barrier.wait()
            return c.post("/v1/journal-entries", json=body, headers=keyed(book, key))

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(fire, range(n)))

    assert [r.status_code for r in responses] == [201] * n, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.content for r in responses}) == 1
    replayed = [r.headers.get(REPLAYED) for r in responses]
    assert replayed.count("true") == n - 1
    assert replayed.count(None) == 1
    entry_id = responses[0].json()["id"]
    assert [p["amount"] for p in responses[0].json()["postings"]] == ["250.00", "-250.00"]
    rows = owner_conn.execute(
        "select id::text, idempotency_key from journal_entries where book_id = %s", (book.id,)
    ).fetchall()
    assert rows == [(entry_id, key)]
    assert counts(owner_conn, book.id)["postings"] == 2
    assert counts(owner_conn, book.id)["idempotency_keys"] == 1


@pytest.mark.slow
def test_concurrent_requests_with_distinct_keys_all_post(
    server_base: str, runtime: Runtime, owner_conn: psycopg.Connection
) -> None:
    book = make_book(runtime)
    n = 20
    barrier = threading.Barrier(n)

    def fire(i: int) -> httpx.Response:
        with httpx.Client(base_url=server_base, timeout=60) as c:
            barrier.wait()
            return c.post(
                "/v1/journal-entries",
                json=entry_body("2026-01-05", f"{i + 1}.00"),
                headers=keyed(book, f"k-{i}"),
            )

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(fire, range(n)))
    assert [r.status_code for r in responses] == [201] * n
    assert len({r.json()["id"] for r in responses}) == n
    assert counts(owner_conn, book.id)["journal_entries"] == n
    with httpx.Client(base_url=server_base) as c:
        balance = c.get(
            "/v1/balances",
            params={"account": "Income:Services", "as_of": "2026-01-05"},
            headers=auth(book.admin_key),
        ).json()["balances"]
    assert balance == [{"currency": "USD", "balance": "-210.00"}]  # -(1 + 2 + … + 20)
