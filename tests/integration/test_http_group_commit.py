"""Concurrent POST /v1/journal-entries of one worker go in one statement
(adapters/http/hot_path.py's group commit): each post keeps its own answer,
audit row and key, and a refused post is refused alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from adapters.http import hot_path
from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, counts, entry_body, open_client

REPLAYED = "Idempotent-Replayed"


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture(autouse=True)
def one_statement_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hot_path, "STATEMENTS_AT_ONCE", 1)


async def _all_waiting(group: Any, n: int) -> None:
    """Until n posts wait in the group (each request reads its body, checks its
    key and builds its entry first); a test that never gets there fails."""
    for _ in range(5000):
        if len(group.waiting) >= n:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{len(group.waiting)} posts reached the group, not {n}")


def post_together(client: Any, requests: list[tuple[Any, dict[str, str]]]) -> list[Any]:
    """The requests sent at once to the app on its own event loop while its hot
    pool's one statement slot is held (as by a statement running): they all wait,
    and go together in the statement that starts when the slot is given back."""
    app = client.app

    async def send() -> list[httpx.Response]:
        group = hot_path._group(app.state.hot_pool)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            group.running += 1
            try:
                sent = [
                    asyncio.ensure_future(
                        http.post("/v1/journal-entries", json=body, headers=headers)
                    )
                    for body, headers in requests
                ]
                await _all_waiting(group, len(requests))
            finally:
                group.running -= 1
                group._schedule()
            return list(await asyncio.gather(*sent))

    answers: list[Any] = client.blocking_portal.call(send)
    return answers


def transactions(conn: psycopg.Connection, book_id: uuid.UUID, ids: list[str]) -> int:
    """How many transactions wrote these entries."""
    row = conn.execute(
        "select count(distinct xmin::text) from journal_entries"
        " where book_id = %s and id = any(%s::uuid[])",
        (book_id, ids),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_concurrent_posts_share_one_statement_each_with_its_own_answer(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    before = counts(owner_conn, book.id)
    requests = [
        (entry_body(amount="10.00"), {**auth(book.admin_key), "Idempotency-Key": "g-1"}),
        (entry_body(amount="20.50", effective_date="2026-01-06"), auth(book.admin_key)),
        (
            entry_body(amount="0.01", debit="Assets:Receivable:Trade", memo='a "quoted" {memo}'),
            {**auth(book.admin_key), "Idempotency-Key": "g-2", "X-Request-Id": "req-g-2"},
        ),
        (entry_body(amount="7.35", credit="Income:Subscriptions"), auth(book.admin_key)),
    ]
    answers = post_together(client, requests)
    assert [r.status_code for r in answers] == [201] * 4, [r.text for r in answers]
    assert all(REPLAYED not in r.headers for r in answers)
    ids = [r.json()["id"] for r in answers]
    assert transactions(owner_conn, book.id, ids) == 1

    # Each answer is its own entry as the general way renders it.
    for (body, _), r in zip(requests, answers, strict=True):
        assert r.json()["memo"] == body["memo"]
        got = client.get(f"/v1/journal-entries/{r.json()['id']}", headers=auth(book.admin_key))
        assert got.json() == r.json()

    # Exactly the debits and credits asked for, on each entry.
    rows = owner_conn.execute(
        "select p.entry_id::text, a.name, p.amount from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and p.entry_id = any(%s::uuid[]) order by p.entry_id, p.line_no",
        (book.id, ids),
    ).fetchall()
    expected = sorted(
        (entry_id, p["account"], Decimal(p["amount"]))
        for (body, _), entry_id in zip(requests, ids, strict=True)
        for p in body["postings"]
    )
    assert sorted((e, a, amount) for e, a, amount in rows) == expected

    after = counts(owner_conn, book.id)
    assert after["journal_entries"] == before["journal_entries"] + 4
    assert after["postings"] == before["postings"] + 8
    assert after["idempotency_keys"] == before["idempotency_keys"] + 2

    # One audit row a post, naming its entry, key and request id.
    audit = owner_conn.execute(
        "select created[1], idempotency_key, request_id, status, method from audit_log"
        " where book_id = %s and created[1] = any(%s)",
        (book.id, ids),
    ).fetchall()
    by_entry = {row[0]: row[1:] for row in audit}
    assert len(audit) == 4 and set(by_entry) == set(ids)
    for (_, headers), r in zip(requests, answers, strict=True):
        key, request_id, status, method = by_entry[r.json()["id"]]
        assert (key, status, method) == (headers.get("Idempotency-Key"), 201, "POST")
        assert request_id == r.headers["x-request-id"]
    assert by_entry[ids[2]][1] == "req-g-2"

    # A keyed post's replay is its first answer, byte for byte.
    for (body, headers), r in zip(requests, answers, strict=True):
        if "Idempotency-Key" in headers:
            again = client.post("/v1/journal-entries", json=body, headers=headers)
            assert again.status_code == 201 and again.headers[REPLAYED] == "true"
            assert again.content == r.content


def test_a_post_the_database_refuses_is_refused_alone(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """One post of the statement is in a closed period, another reuses a key: the
    statement is refused as a whole, and each post then gets the answer it
    would have had alone."""
    admin = auth(book.admin_key)
    first = client.post(
        "/v1/journal-entries",
        json=entry_body(effective_date="2026-02-02"),
        headers={**admin, "Idempotency-Key": "g-used"},
    )
    assert first.status_code == 201
    assert client.post("/v1/periods/2026-01/close", headers=admin).status_code == 200
    before = counts(owner_conn, book.id)
    answers = post_together(
        client,
        [
            (entry_body(effective_date="2026-01-20"), {**admin, "Idempotency-Key": "g-closed"}),
            (entry_body(effective_date="2026-02-02"), {**admin, "Idempotency-Key": "g-used"}),
            (entry_body(effective_date="2026-02-03", amount="3.00"), admin),
            (
                entry_body(effective_date="2026-02-03", amount="4.00"),
                {**admin, "Idempotency-Key": "g-new"},
            ),
        ],
    )
    closed, replayed, fresh, keyed = answers
    assert_problem(closed, 422, "period_closed")
    assert replayed.status_code == 201 and replayed.headers[REPLAYED] == "true"
    assert replayed.content == first.content
    assert fresh.status_code == 201 and keyed.status_code == 201
    assert REPLAYED not in fresh.headers and REPLAYED not in keyed.headers
    after = counts(owner_conn, book.id)
    assert after["journal_entries"] == before["journal_entries"] + 2
    assert after["postings"] == before["postings"] + 4
    assert after["idempotency_keys"] == before["idempotency_keys"] + 1
    # Posted alone: two transactions.
    assert transactions(owner_conn, book.id, [fresh.json()["id"], keyed.json()["id"]]) == 2
    # The refused post's key stays free.
    assert client.post("/v1/periods/2026-01/reopen", headers=admin).status_code == 200
    retried = client.post(
        "/v1/journal-entries",
        json=entry_body(effective_date="2026-01-20"),
        headers={**admin, "Idempotency-Key": "g-closed"},
    )
    assert retried.status_code == 201 and REPLAYED not in retried.headers


def test_a_connection_lost_under_a_statement_of_several_is_a_503_for_each(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """Whether a statement the connection lost committed is unknown: its posts are
    not tried again alone, each answers the outage's 503, and nothing was written."""
    pool = client.app.state.hot_pool

    async def idle_pids() -> list[int]:
        taken = [await pool.getconn() for _ in range(pool.get_stats()["pool_available"])]
        try:
            return [conn.info.backend_pid for conn in taken]
        finally:
            for conn in taken:
                await pool.putconn(conn)

    assert client.post("/v1/journal-entries", json=entry_body(), headers=auth(book.admin_key))
    pids = client.blocking_portal.call(idle_pids)
    owner_conn.execute("select pg_terminate_backend(pid) from unnest(%s::int[]) pid", (pids,))
    before = counts(owner_conn, book.id)
    admin = auth(book.admin_key)
    answers = post_together(
        client,
        [
            (entry_body(amount="1.00"), {**admin, "Idempotency-Key": "g-lost-1"}),
            (entry_body(amount="2.00"), admin),
        ],
    )
    for r in answers:
        assert_problem(r, 503, "database_unavailable")
    assert counts(owner_conn, book.id) == before


def test_a_post_waits_only_for_a_running_statement(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """A post that arrives while the statement runs is not written until it ends,
    then goes in the next; a lone post after a group goes alone, in a
    statement of its own."""
    admin = auth(book.admin_key)
    group = hot_path._group(client.app.state.hot_pool)
    before = counts(owner_conn, book.id)

    async def held_then_released() -> tuple[httpx.Response, dict[str, int]]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            group.running += 1  # as a statement running
            try:
                sent = asyncio.ensure_future(
                    http.post("/v1/journal-entries", json=entry_body(amount="9.00"), headers=admin)
                )
                await _all_waiting(group, 1)
                await asyncio.sleep(0.05)  # time to be written, were it not waiting
                meanwhile = counts(owner_conn, book.id)
            finally:
                group.running -= 1
                group._schedule()
            return await sent, meanwhile

    held, meanwhile = client.blocking_portal.call(held_then_released)
    assert meanwhile == before
    assert held.status_code == 201, held.text

    together = post_together(client, [(entry_body(amount=f"{n}.00"), admin) for n in (1, 2, 3)])
    assert [r.status_code for r in together] == [201] * 3
    lone = client.post("/v1/journal-entries", json=entry_body(amount="4.00"), headers=admin)
    assert lone.status_code == 201, lone.text
    ids = [r.json()["id"] for r in together]
    assert transactions(owner_conn, book.id, ids) == 1
    assert transactions(owner_conn, book.id, [*ids, lone.json()["id"]]) == 2
    assert not group.waiting and group.running == 0
    after = counts(owner_conn, book.id)
    assert after["journal_entries"] == before["journal_entries"] + 5
