"""POST /v1/journal-entries' one-statement way (adapters/http/hot_path.py): the
same answers as the general way, and nothing written when it refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.http import ledger_api
from adapters.http.hot_path import RECORDED_AT
from adapters.runtime import Runtime
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, counts, entry_body, open_client

REPLAYED = "Idempotent-Replayed"


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def keyed(book: BookFixture, key: str) -> dict[str, str]:
    return {**auth(book.admin_key), "Idempotency-Key": key}


def three_postings(amount: str = "11.00", tax: str = "1.10") -> dict[str, Any]:
    total = str(Decimal(amount) + Decimal(tax))
    return {
        "effective_date": "2026-01-07",
        "memo": "with tax",
        "metadata": {"z": 1, "a": {"nested": True}},
        "postings": [
            {"account": "Assets:Bank:Operating", "amount": total, "currency": "USD"},
            {
                "account": "Income:Services",
                "amount": "-" + amount,
                "currency": "USD",
                "dimensions": {"region": "EU"},
            },
            {"account": "Liabilities:Tax-Payable", "amount": "-" + tax, "currency": "USD"},
        ],
    }


@pytest.mark.parametrize("with_key", [True, False], ids=["keyed", "no-key"])
def test_the_answer_is_the_entry_as_stored(
    with_key: bool, client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """The 201 the statement builds around `recorded_at` equals what GET reads back
    (the general way's rendering), debits and credits included."""
    before = counts(owner_conn, book.id)
    headers = keyed(book, "hot-1") if with_key else auth(book.admin_key)
    first = client.post("/v1/journal-entries", json=three_postings(), headers=headers)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    created = first.json()
    read = client.get(f"/v1/journal-entries/{created['id']}", headers=auth(book.admin_key))
    assert read.status_code == 200
    assert created == read.json()
    assert [(p["account"], p["amount"]) for p in created["postings"]] == [
        ("Assets:Bank:Operating", "12.10"),
        ("Income:Services", "-11.00"),
        ("Liabilities:Tax-Payable", "-1.10"),
    ]
    assert created["postings"][1]["dimensions"] == {"region": "EU"}
    assert created["metadata"] == {"z": 1, "a": {"nested": True}}
    after = counts(owner_conn, book.id)
    assert after["journal_entries"] == before["journal_entries"] + 1
    assert after["postings"] == before["postings"] + 3
    assert after["idempotency_keys"] == before["idempotency_keys"] + (1 if with_key else 0)
    if with_key:
        stored = owner_conn.execute(
            "select status_code, response_body from idempotency_keys"
            " where book_id = %s and key = 'hot-1'",
            (book.id,),
        ).fetchone()
        assert stored == (201, first.content)


def test_a_replay_is_the_first_answer_and_another_body_is_409(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    first = client.post("/v1/journal-entries", json=three_postings(), headers=keyed(book, "h-2"))
    assert first.status_code == 201, first.text
    after_first = counts(owner_conn, book.id)
    again = client.post("/v1/journal-entries", json=three_postings(), headers=keyed(book, "h-2"))
    assert again.status_code == 201 and again.headers[REPLAYED] == "true"
    assert again.content == first.content
    other = client.post(
        "/v1/journal-entries", json=three_postings(amount="12.00"), headers=keyed(book, "h-2")
    )
    assert_problem(other, 409, "idempotency_key_reused")
    # a different body that is also wrong: the used key is what the caller hears of
    unbalanced = three_postings()
    unbalanced["postings"][0]["amount"] = "1.00"
    assert_problem(
        client.post("/v1/journal-entries", json=unbalanced, headers=keyed(book, "h-2")),
        409,
        "idempotency_key_reused",
    )
    assert counts(owner_conn, book.id) == after_first


def test_a_key_first_used_on_another_route_is_409(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """The statement's insert into idempotency_keys meets the key: nothing of the
    entry stays, and the general way answers 409."""
    made = client.post("/v1/accounts", json={"name": "Assets:Hot"}, headers=keyed(book, "h-3"))
    assert made.status_code == 201, made.text
    before = counts(owner_conn, book.id)
    r = client.post("/v1/journal-entries", json=entry_body(), headers=keyed(book, "h-3"))
    assert_problem(r, 409, "idempotency_key_reused")
    assert counts(owner_conn, book.id) == before


def test_a_refused_statement_writes_nothing_and_the_key_stays_free(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """A refusal by the database (a closed period) undoes the whole statement,
    the stored response included: the same key works once the period reopens."""
    admin = auth(book.admin_key)
    assert client.post("/v1/periods/2026-01/close", headers=admin).status_code == 200
    before = counts(owner_conn, book.id)
    r = client.post("/v1/journal-entries", json=entry_body(), headers=keyed(book, "h-4"))
    assert_problem(r, 422, "period_closed")
    assert counts(owner_conn, book.id) == before
    assert client.post("/v1/periods/2026-01/reopen", headers=admin).status_code == 200
    ok = client.post("/v1/journal-entries", json=entry_body(), headers=keyed(book, "h-4"))
    assert ok.status_code == 201, ok.text
    assert REPLAYED not in ok.headers
    assert [(p["account"], p["amount"]) for p in ok.json()["postings"]] == [
        ("Assets:Bank:Operating", "10.00"),
        ("Income:Services", "-10.00"),
    ]


def test_an_unknown_account_is_404_and_writes_nothing(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    before = counts(owner_conn, book.id)
    r = client.post(
        "/v1/journal-entries", json=entry_body(credit="Income:Nowhere"), headers=keyed(book, "h-5")
    )
    assert_problem(r, 404)
    assert counts(owner_conn, book.id) == before


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-05 10:00:00+00",  # no fraction: isoformat leaves it out
        "2026-01-05 10:00:00.5+00",
        "2026-01-05 10:00:00.000001+00",
        "2026-12-31 23:59:59.123456+00",
        "2026-06-30 22:30:00.25-05",  # another offset in, UTC out
    ],
)
def test_recorded_at_is_rendered_as_python_renders_it(
    value: str, owner_conn: psycopg.Connection
) -> None:
    owner_conn.execute("set time zone 'UTC'")  # the service's sessions (adapters.runtime)
    row = owner_conn.execute(
        f"select {RECORDED_AT}, i.recorded_at from (values (%s::timestamptz)) i(recorded_at)",
        (value,),
    ).fetchone()
    assert row is not None
    rendered, loaded = row
    assert isinstance(loaded, datetime)
    assert rendered == json.dumps(loaded.isoformat())


def test_a_dated_entry_with_a_fresh_key_never_takes_the_general_way(
    client: Any, book: BookFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-statement way answers alone: the general way is not called."""

    async def general_way(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the general way was taken")

    monkeypatch.setattr(ledger_api, "run_command_async", general_way)
    for headers in (keyed(book, "h-6"), auth(book.admin_key)):
        r = client.post("/v1/journal-entries", json=three_postings(), headers=headers)
        assert r.status_code == 201, r.text


def _on_idle_hot_connections(client: Any, sql: str | None, **attributes: Any) -> list[Any]:
    """Run `sql` (when given) on every idle connection of the app's hot pool and
    set `attributes` on them; each one's backend pid and the names of the
    statements prepared in its session. The pool hands out its idle
    connections first, so the next post draws one of them."""
    pool = client.app.state.hot_pool

    async def each() -> list[Any]:
        taken = [await pool.getconn() for _ in range(pool.get_stats()["pool_available"])]
        found = []
        try:
            for conn in taken:
                if sql is not None:
                    await conn.execute(sql)
                for name, value in attributes.items():
                    setattr(conn, name, value)
                cur = await conn.execute("select name from pg_prepared_statements order by 1")
                prepared = [row[0] for row in await cur.fetchall()]
                found.append((conn.info.backend_pid, prepared))
            return found
        finally:
            for conn in taken:
                await pool.putconn(conn)

    found: list[Any] = client.blocking_portal.call(each)
    return found


def test_a_statement_the_session_lost_is_prepared_again(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """The post's statement is prepared once per connection; one dropped from the
    session (DEALLOCATE ALL, DISCARD ALL) is prepared again and the post answers
    as usual, written once."""
    for headers in (keyed(book, "h-7"), auth(book.admin_key)):  # both statements prepared
        assert client.post("/v1/journal-entries", json=entry_body(), headers=headers).is_success
    assert _on_idle_hot_connections(client, "deallocate all")
    before = counts(owner_conn, book.id)
    for n, headers in enumerate((keyed(book, "h-8"), auth(book.admin_key))):
        r = client.post("/v1/journal-entries", json=three_postings(), headers=headers)
        assert r.status_code == 201, r.text
        after = counts(owner_conn, book.id)
        assert after["journal_entries"] == before["journal_entries"] + n + 1
        assert after["postings"] == before["postings"] + 3 * (n + 1)


def test_a_connection_lost_mid_request_is_a_503_and_writes_nothing(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """The server ends the hot pool's sessions under the app: the post drawing one
    answers the outage's 503 problem, writes nothing and leaves the key free; the
    pool replaces the lost connections and the same request then posts."""
    assert client.post("/v1/journal-entries", json=entry_body(), headers=keyed(book, "h-9"))
    pids = [pid for pid, _ in _on_idle_hot_connections(client, None)]
    assert pids
    owner_conn.execute("select pg_terminate_backend(pid) from unnest(%s::int[]) pid", (pids,))
    before = counts(owner_conn, book.id)
    r = client.post("/v1/journal-entries", json=three_postings(), headers=keyed(book, "h-10"))
    assert_problem(r, 503, "database_unavailable")
    assert counts(owner_conn, book.id) == before
    for _ in range(len(pids) + 1):  # each lost connection is found out by one request
        r = client.post("/v1/journal-entries", json=three_postings(), headers=keyed(book, "h-10"))
        if r.status_code != 503:
            break
    assert r.status_code == 201, r.text
    assert REPLAYED not in r.headers
    after = counts(owner_conn, book.id)
    assert after["journal_entries"] == before["journal_entries"] + 1


def test_where_psycopg_prepares_nothing_the_post_prepares_nothing(
    client: Any, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    """Behind a transaction-pooling PgBouncer (prepare_threshold None: a session's
    prepared statement may not be there at the next statement) the post's
    statement goes unnamed, prepared in no session, with the same answers."""
    try:
        _on_idle_hot_connections(client, "deallocate all", prepare_threshold=None)
        before = counts(owner_conn, book.id)
        r = client.post("/v1/journal-entries", json=three_postings(), headers=keyed(book, "h-11"))
        assert r.status_code == 201, r.text
        again = client.post(
            "/v1/journal-entries", json=three_postings(), headers=keyed(book, "h-11")
        )
        assert again.status_code == 201 and again.headers[REPLAYED] == "true"
        assert again.content == r.content
        after = counts(owner_conn, book.id)
        assert after["journal_entries"] == before["journal_entries"] + 1
        assert all(not names for _, names in _on_idle_hot_connections(client, None))
    finally:
        _on_idle_hot_connections(client, None, prepare_threshold=5)
