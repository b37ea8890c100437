"""Reads from a real streaming replica (DATABASE_READ_URL), under the rule that a
read sees every write committed before it began (Runtime.read_connection)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from adapters.database import DatabaseSettings
from adapters.migrate import upgrade
from adapters.runtime import Runtime
from tests.conftest import APP_ROLE, make_book
from tests.integration.http_fixtures import auth, entry_body, open_client
from tests.integration.pg_cluster import Node, replicated_pair

pytestmark = pytest.mark.slow

DATABASE = "ab_replica"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Node, Node]]:
    with replicated_pair() as (primary, standby):
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute(f"create database {DATABASE}")
        upgrade(primary.url(DATABASE))
        yield primary, standby


def _runtime(pair: tuple[Node, Node], max_wait: float) -> Runtime:
    primary, standby = pair
    settings = DatabaseSettings(
        primary.url(DATABASE), APP_ROLE, read_url=standby.url(DATABASE), read_max_wait=max_wait
    )
    return Runtime(settings, min_size=1, max_size=4)


def _replay(standby: Node, resume: bool) -> None:
    with psycopg.connect(standby.url(), autocommit=True) as conn:
        conn.execute("select pg_wal_replay_resume()" if resume else "select pg_wal_replay_pause()")


def _cash(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for line in report["lines"] if line["account"] == "Assets:Bank:Operating"]


def _entries_on(url: str, book_id: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select count(*) from journal_entries where book_id = %s", (book_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_report_read_right_after_a_write_reflects_it(pair: tuple[Node, Node]) -> None:
    _, standby = pair
    runtime = _runtime(pair, max_wait=60.0)
    try:
        book = make_book(runtime)
        with open_client(runtime) as client:
            h = auth(book.admin_key)
            _replay(standby, resume=False)  # the replica falls behind, deterministically
            try:
                r = client.post("/v1/journal-entries", json=entry_body(amount="42.17"), headers=h)
                assert r.status_code == 201, r.text
                # The replica has not replayed the entry: a naive read would miss it.
                assert _entries_on(standby.url(DATABASE), book.id) == 0
                served_before = runtime.replica_reads
                answers: list[Any] = []
                reader = threading.Thread(
                    target=lambda: answers.append(
                        client.get(
                            "/v1/reports/trial-balance",
                            params={"as_of": "2026-01-31"},
                            headers=h,
                        )
                    )
                )
                reader.start()
            finally:
                _replay(standby, resume=True)  # the read waits for this, then runs
            reader.join()
            (report,) = answers
            assert report.status_code == 200, report.text
            assert _cash(report.json()) == [
                {
                    "account": "Assets:Bank:Operating",
                    "currency": "USD",
                    "debit": "42.17",
                    "credit": "0.00",
                    "balance": "42.17",
                }
            ]
            assert runtime.replica_reads > served_before  # the replica served it
    finally:
        runtime.close()


def test_a_replica_that_stays_behind_gives_way_to_the_primary(pair: tuple[Node, Node]) -> None:
    _, standby = pair
    runtime = _runtime(pair, max_wait=0.2)
    try:
        book = make_book(runtime)
        with open_client(runtime) as client:
            h = auth(book.admin_key)
            _replay(standby, resume=False)
            try:
                r = client.post("/v1/journal-entries", json=entry_body(amount="5.00"), headers=h)
                assert r.status_code == 201, r.text
                served_before = runtime.replica_reads
                balance = client.get(
                    "/v1/balances",
                    params={"account": "Assets:Bank:Operating", "as_of": "2026-01-31"},
                    headers=h,
                )
                assert balance.status_code == 200, balance.text
                assert balance.json()["balances"] == [{"currency": "USD", "balance": "5.00"}]
                assert runtime.replica_reads == served_before  # the primary answered
            finally:
                _replay(standby, resume=True)
    finally:
        runtime.close()


def test_exports_and_lists_read_from_the_replica(pair: tuple[Node, Node]) -> None:
    runtime = _runtime(pair, max_wait=60.0)
    try:
        book = make_book(runtime)
        with open_client(runtime) as client:
            h = auth(book.admin_key)
            r = client.post("/v1/journal-entries", json=entry_body(amount="7.25"), headers=h)
            assert r.status_code == 201, r.text
            before = runtime.replica_reads
            beancount = client.get("/v1/exports/beancount", headers=h)
            assert beancount.status_code == 200, beancount.text
            assert "7.25 USD" in beancount.text
            journal = client.get("/v1/exports/journal", headers=h)
            assert journal.status_code == 200, journal.text
            assert journal.headers["X-Batch-Count"] == "1"
            aging = client.get("/v1/reports/ar-aging", headers=h)
            assert aging.status_code == 200, aging.text
            assert runtime.replica_reads >= before + 3
    finally:
        runtime.close()
