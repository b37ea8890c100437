"""Failover under posting load on real PostgreSQL 15 processes.

The service is connected through a multi-host URL with
target_session_attrs=read-write to a primary with a synchronous standby (a
commit is acknowledged once the standby has flushed it). Posting threads send
entries with Idempotency-Keys and retry on any failure; the primary is killed
(SIGKILL) mid-load and the standby takes over. Every acknowledged entry
survives, retries do not duplicate, and the promoted node's book verifies.

Two setups (docs/OPERATIONS.md):
- real pg_auto_failover (a monitor, a primary and a secondary, each under its
  `pg_autoctl` keeper): the monitor notices the dead primary and promotes the
  secondary by itself; skipped when pg_autoctl is not installed;
- plain streaming replication with the promotion scripted as the monitor would
  do it; it runs wherever the PostgreSQL 15 server binaries are.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from adapters.database import DatabaseSettings
from adapters.migrate import upgrade
from adapters.runtime import Runtime
from ledger.postgres.sealer import seal_pending
from ledger.postgres.verify import verify_book
from tests.conftest import APP_ROLE, BookFixture, make_book
from tests.integration.http_fixtures import auth, entry_body, open_client
from tests.integration.pg_autofailover import SETTLE_TIMEOUT, Formation, formation
from tests.integration.pg_cluster import Node, replicated_pair

pytestmark = pytest.mark.slow

DATABASE = "ab_failover"
THREADS = 4
ENTRIES_PER_THREAD = 12
BEFORE_KILL = 3  # entries each thread has acknowledged when the primary dies
GIVE_UP_AFTER = 60.0  # seconds one entry may keep failing before the test fails


def multi_host_url(nodes: list[Node]) -> str:
    hosts = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"


def post_through_failover(
    runtime: Runtime, fail_over: Callable[[], None], give_up_after: float
) -> tuple[BookFixture, dict[str, str]]:
    """Post entries from THREADS threads, calling `fail_over` once each thread has
    BEFORE_KILL acknowledged; every entry is retried with its Idempotency-Key until
    acknowledged. Returns the book and {idempotency key (= memo): entry id}."""
    acknowledged: dict[str, str] = {}  # idempotency key -> entry id
    failures: list[int | str] = []  # statuses / errors seen while retrying
    errors: list[BaseException] = []
    progress = threading.Barrier(THREADS + 1)
    book = make_book(runtime)
    with open_client(runtime) as client:

        def post_until_acknowledged(key: str, amount: str) -> None:
            deadline = time.monotonic() + give_up_after
            while True:
                try:
                    r = client.post(
                        "/v1/journal-entries",
                        json=entry_body(amount=amount, memo=key),
                        headers={**auth(book.admin_key), "Idempotency-Key": key},
                    )
                    if r.status_code == 201:
                        acknowledged[key] = r.json()["id"]
                        return
                    failures.append(r.status_code)
                except Exception as exc:  # the client saw the connection break
                    failures.append(type(exc).__name__)
                if time.monotonic() > deadline:
                    raise AssertionError(f"{key} never succeeded: {failures[-5:]}")
                time.sleep(0.05)

        def poster(n: int) -> None:
            try:
                for i in range(ENTRIES_PER_THREAD):
                    if i == BEFORE_KILL:
                        progress.wait()
                    post_until_acknowledged(f"t{n}-e{i}-{uuid.uuid4().hex[:6]}", f"{i + 1}.00")
            except BaseException as exc:
                errors.append(exc)
                progress.abort()

        threads = [threading.Thread(target=poster, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        try:
            progress.wait()  # every thread has acknowledged entries on the old primary
        except threading.BrokenBarrierError:
            pass  # a thread failed before the kill: its error is reported below
        else:
            fail_over()
        for t in threads:
            t.join()
        assert errors == []
        # The service found the promoted node on its own and keeps serving.
        r = client.get(
            "/v1/reports/trial-balance",
            params={"as_of": "2026-01-31"},
            headers=auth(book.admin_key),
        )
        assert r.status_code == 200, r.text
    assert len(acknowledged) == THREADS * ENTRIES_PER_THREAD
    return book, acknowledged


def assert_nothing_lost(
    promoted_url: str, runtime: Runtime, book: BookFixture, acknowledged: dict[str, str]
) -> None:
    with psycopg.connect(promoted_url) as conn:
        rows = conn.execute(
            "select id::text, memo from journal_entries where book_id = %s", (book.id,)
        ).fetchall()
        in_recovery = conn.execute("select pg_is_in_recovery()").fetchone()
    assert in_recovery == (False,)
    memos = [memo for _, memo in rows]
    # 0 acknowledged entries lost, and a retried key never posted twice:
    assert sorted(memos) == sorted(acknowledged)
    assert {entry_id for entry_id, _ in rows} == set(acknowledged.values())
    seal_pending(runtime.connection, book.id, wait=True)
    with runtime.connection() as conn:
        assert verify_book(conn, book.id) == []


@pytest.fixture
def pair() -> Iterator[tuple[Node, Node]]:
    with replicated_pair(synchronous=True) as (primary, standby):
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute(f"create database {DATABASE}")
        upgrade(primary.url(DATABASE))
        yield primary, standby


def test_killing_the_primary_under_load_loses_no_acknowledged_entry(
    pair: tuple[Node, Node],
) -> None:
    """Scripted promotion: what pg_auto_failover's monitor does, done by the test."""
    primary, standby = pair
    runtime = Runtime(
        DatabaseSettings(multi_host_url([primary, standby]), APP_ROLE), min_size=2, max_size=8
    )
    try:

        def fail_over() -> None:
            primary.kill()
            standby.promote()

        book, acknowledged = post_through_failover(runtime, fail_over, GIVE_UP_AFTER)
        assert_nothing_lost(standby.url(DATABASE), runtime, book, acknowledged)
    finally:
        runtime.close()


@pytest.fixture
def autofailover() -> Iterator[Formation]:
    with formation(DATABASE) as f:
        yield f


def wait_for_quorum(f: Formation) -> tuple[str, str]:
    """The primary's (synchronous_standby_names, synchronous_commit) once the
    secondary is streaming as a quorum standby."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    with psycopg.connect(f.url("node1"), autocommit=True) as conn:
        while True:
            standbys = conn.execute(
                "select sync_state from pg_stat_replication where state = 'streaming'"
            ).fetchall()
            if standbys == [("quorum",)] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert standbys == [("quorum",)], standbys
        names = conn.execute("show synchronous_standby_names").fetchone()
        commit = conn.execute("show synchronous_commit").fetchone()
    assert names is not None and commit is not None
    return names[0], commit[0]


def test_pg_auto_failover_promotes_the_secondary_under_load_losing_no_acknowledged_entry(
    autofailover: Formation,
) -> None:
    """Real pg_auto_failover: the test kills the primary, the monitor promotes."""
    f = autofailover
    # The monitor made replication synchronous by itself (replication quorum, one
    # secondary): an acknowledged commit has been flushed by node2 too.
    names, commit = wait_for_quorum(f)
    assert names.startswith("ANY 1 (pgautofailover_standby_"), names
    assert commit == "on"
    upgrade(f.url("node1", DATABASE))
    # The URL applications get from the monitor: both nodes, read-write.
    uri = f.uri()
    assert "target_session_attrs=read-write" in uri, uri
    assert f"127.0.0.1:{f.ports['node1']},127.0.0.1:{f.ports['node2']}/{DATABASE}" in uri, uri
    url = uri.replace("postgres://", "postgresql://postgres@", 1)
    runtime = Runtime(DatabaseSettings(url, APP_ROLE), min_size=2, max_size=8)
    try:
        # The whole node dies (keeper, postgres, backends); the monitor, not the
        # test, decides to promote node2.
        book, acknowledged = post_through_failover(runtime, lambda: f.kill("node1"), SETTLE_TIMEOUT)
        f.wait_for({"node2": "wait_primary"})  # promoted, writing without its lost standby
        assert_nothing_lost(f.url("node2", DATABASE), runtime, book, acknowledged)
    finally:
        runtime.close()
