"""Sealing: a reader that follows the sealed sequence never skips an entry.

Entries are numbered after they commit, so an entry whose transaction began
first but committed last gets a later seq, not a hole behind the reader.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import psycopg
import pytest
from psycopg import sql

from adapters.runtime import Runtime
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import PostedEntry, post_entry
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import verify_book
from ledger.sealing import GENESIS_HASH
from tests.conftest import APP_ROLE, BookFixture

DAY = date(2026, 3, 10)


def entry(amount: str, key: str | None = None, day: date = DAY) -> JournalEntry:
    return build_entry(
        day,
        "sealing test",
        [
            Posting("Assets:Bank:Operating", Money.exact(amount, "USD")),
            Posting("Income:Services", Money.exact(f"-{amount}", "USD")),
        ],
        idempotency_key=key or f"s:{uuid.uuid4()}",
    )


@pytest.fixture
def app_connect(database_url: str) -> Iterator[Callable[[], psycopg.Connection]]:
    opened: list[psycopg.Connection] = []

    def connect() -> psycopg.Connection:
        conn = psycopg.connect(database_url)
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(APP_ROLE)))
        conn.commit()
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


class SealReader:
    """An ERP-style consumer: reads seals with seq > last_seen, in order."""

    def __init__(self, conn: psycopg.Connection, book_id: uuid.UUID) -> None:
        self.conn = conn
        self.book_id = book_id
        self.last_seen = 0
        self.delivered: list[uuid.UUID] = []

    def poll(self) -> list[uuid.UUID]:
        rows = self.conn.execute(
            "select seq, entry_id from seals where book_id = %s and seq > %s order by seq",
            (self.book_id, self.last_seen),
        ).fetchall()
        self.conn.commit()
        batch = []
        for seq, entry_id in rows:
            # Seals become visible a whole batch at a time, in order: never a hole.
            assert seq == self.last_seen + 1, f"reader saw seq {seq} after {self.last_seen}"
            self.last_seen = seq
            batch.append(entry_id)
        self.delivered += batch
        return batch


def chain(conn: psycopg.Connection, book_id: uuid.UUID) -> list[tuple[int, uuid.UUID, str, str]]:
    return [
        (seq, entry_id, prev, digest)
        for seq, entry_id, prev, digest in conn.execute(
            "select seq, entry_id, prev_hash, hash from seals where book_id = %s order by seq",
            (book_id,),
        )
    ]


def assert_gapless_chain(conn: psycopg.Connection, book_id: uuid.UUID, n: int) -> None:
    seals = chain(conn, book_id)
    assert [s[0] for s in seals] == list(range(1, n + 1))
    previous = GENESIS_HASH
    for _, _, prev, digest in seals:
        assert prev == previous
        previous = digest
    assert verify_book(conn, book_id) == []


def test_an_entry_that_commits_late_is_sealed_after_those_that_committed_first(
    runtime: Runtime, book: BookFixture, app_connect: Callable[[], psycopg.Connection]
) -> None:
    reader_conn = app_connect()
    reader = SealReader(reader_conn, book.id)

    a_conn = app_connect()
    # Inserted first, committed last. Dated another day, so its balance rows are
    # not the ones B and C update: writers whose backends share a balance slot
    # would otherwise wait for A's commit, which this test holds back.
    a = post_entry(a_conn, book.id, entry("1.00", "A", DAY + timedelta(days=1)))

    def commit_one(amount: str, key: str) -> PostedEntry:
        with unit_of_work(runtime.connection) as uow:
            posted = post_entry(uow.conn, book.id, entry(amount, key))
            uow.commit()
        return posted

    b = commit_one("2.00", "B")
    assert seal_pending(runtime.connection, book.id) == 1  # A is still open: only B is sealed
    assert reader.poll() == [b.id]

    c = commit_one("3.00", "C")
    assert seal_pending(runtime.connection, book.id) == 1
    assert reader.poll() == [c.id]
    assert reader.poll() == []

    a_conn.commit()
    assert seal_pending(runtime.connection, book.id) == 1
    assert reader.poll() == [a.id]  # the late entry reaches the reader after all

    assert reader.delivered == [b.id, c.id, a.id]
    with runtime.connection() as conn:
        assert_gapless_chain(conn, book.id, 3)
        # A was recorded (inserted) before B and C, yet sealed after them.
        recorded = dict(
            conn.execute(
                "select idempotency_key, recorded_at from journal_entries where book_id = %s",
                (book.id,),
            ).fetchall()
        )
        assert recorded["A"] < recorded["B"] < recorded["C"]


def test_a_rolled_back_entry_leaves_no_hole(
    runtime: Runtime, book: BookFixture, app_connect: Callable[[], psycopg.Connection]
) -> None:
    reader = SealReader(app_connect(), book.id)
    doomed = app_connect()
    # Another day: balance rows of its own, so the kept entry never waits on it.
    post_entry(doomed, book.id, entry("1.00", day=DAY + timedelta(days=1)))
    with unit_of_work(runtime.connection) as uow:
        kept = post_entry(uow.conn, book.id, entry("2.00"))
        uow.commit()
    doomed.rollback()
    runtime.seal_all(wait=True)
    assert reader.poll() == [kept.id]
    with runtime.connection() as conn:
        assert_gapless_chain(conn, book.id, 1)


def test_a_sealer_that_may_not_wait_gives_way(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    with unit_of_work(runtime.connection) as uow:
        post_entry(uow.conn, book.id, entry("1.00"))
        uow.commit()
    owner_conn.execute("begin")
    owner_conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"ab_seal:{book.id}",)
    )
    assert seal_pending(runtime.connection, book.id, wait=False) == 0
    owner_conn.execute("commit")
    assert seal_pending(runtime.connection, book.id, wait=False) == 1
    with runtime.connection() as conn:
        assert_gapless_chain(conn, book.id, 1)


def test_a_queued_entry_sealed_behind_the_sealers_back_leaves_the_queue_unsealed_again(
    runtime: Runtime, book: BookFixture, app_connect: Callable[[], psycopg.Connection]
) -> None:
    """seal_batch reads the queue, the chain's head and each entry in one statement:
    an entry a seal already names (forged) is dropped from the queue, not sealed
    twice, and the entries after it extend the chain from that seal."""
    with unit_of_work(runtime.connection) as uow:
        first = post_entry(uow.conn, book.id, entry("1.00"))
        second = post_entry(uow.conn, book.id, entry("2.00"))
        uow.commit()
    conn = app_connect()
    conn.execute(
        "insert into seals (book_id, seq, entry_id, prev_hash, hash) values (%s, 1, %s, %s, %s)",
        (book.id, first.id, GENESIS_HASH, "f" * 64),
    )
    conn.commit()
    assert seal_pending(runtime.connection, book.id) == 2
    seals = chain(conn, book.id)
    assert [(seq, entry_id, prev) for seq, entry_id, prev, _ in seals] == [
        (1, first.id, GENESIS_HASH),
        (2, second.id, "f" * 64),
    ]
    queued = conn.execute(
        "select count(*) from unsealed_entries where book_id = %s", (book.id,)
    ).fetchone()
    assert queued == (0,)


@pytest.mark.slow
def test_reader_follows_concurrent_writers_with_staggered_commits(
    runtime: Runtime, book: BookFixture, app_connect: Callable[[], psycopg.Connection]
) -> None:
    """6 writers hold their transactions open for varying stretches while two
    sealers and a reader run beside them; the reader gets every entry once."""
    writers, per_writer = 6, 30
    done_writing = threading.Event()
    stop_sealing = threading.Event()
    reader = SealReader(app_connect(), book.id)
    sessions = [app_connect() for _ in range(writers)]

    def write(w: int) -> list[uuid.UUID]:
        rng = random.Random(w)
        conn = sessions[w]
        ids = []
        for n in range(per_writer):
            posted = post_entry(conn, book.id, entry(f"{w + 1}.{n:02d}", f"w{w}-{n}"))
            # Stagger: keep the entry uncommitted while others commit and seal.
            for _ in range(rng.randrange(0, 4)):
                conn.execute("select pg_sleep(0.002)")
            if rng.random() < 0.1:
                conn.rollback()
                continue
            conn.commit()
            ids.append(posted.id)
        return ids

    def seal() -> int:
        sealed = 0
        while not stop_sealing.is_set():
            sealed += seal_pending(runtime.connection, book.id, wait=True)
        return sealed

    def read() -> None:
        while not done_writing.is_set():
            reader.poll()

    with ThreadPoolExecutor(max_workers=writers + 3) as pool:
        sealers = [pool.submit(seal) for _ in range(2)]
        reading = pool.submit(read)
        committed = [pool.submit(write, w) for w in range(writers)]
        written: list[uuid.UUID] = [i for f in committed for i in f.result()]
        stop_sealing.set()
        for f in sealers:
            f.result()
        done_writing.set()
        reading.result()

    seal_pending(runtime.connection, book.id, wait=True)  # whatever committed last
    reader.poll()
    assert len(reader.delivered) == len(set(reader.delivered)), "an entry was delivered twice"
    assert sorted(reader.delivered) == sorted(written)
    assert reader.last_seen == len(written)
    with runtime.connection() as conn:
        assert_gapless_chain(conn, book.id, len(written))
        queued = conn.execute(
            "select count(*) from unsealed_entries where book_id = %s", (book.id,)
        ).fetchone()
        assert queued == (0,)


def _commit_many(runtime: Runtime, book_id: uuid.UUID, amounts: Sequence[str]) -> None:
    for amount in amounts:
        with unit_of_work(runtime.connection) as uow:
            post_entry(uow.conn, book_id, entry(amount))
            uow.commit()


@pytest.mark.slow
def test_runtime_seal_all_while_writers_commit(runtime: Runtime, book: BookFixture) -> None:
    """The server's own path (Runtime.seal_all) racing pooled writers."""
    stop = threading.Event()

    def seal_loop() -> None:
        while not stop.is_set():
            runtime.seal_all(wait=False)
            time.sleep(0.005)

    with ThreadPoolExecutor(max_workers=5) as pool:
        sealer = pool.submit(seal_loop)
        writers = [
            pool.submit(_commit_many, runtime, book.id, [f"{w}.{n:02d}" for n in range(1, 26)])
            for w in range(1, 5)
        ]
        for f in writers:
            f.result()
        stop.set()
        sealer.result()
    runtime.seal_all(wait=True)
    with runtime.connection() as conn:
        assert_gapless_chain(conn, book.id, 100)
