"""Concurrent writers on real PostgreSQL: balance limits, hot accounts, period
close, and idempotency keys.

Where a race matters, the test does not hope the threads overlap: a gate
transaction holds the contended lock, the test waits until every writer is
queued behind it (pg_stat_activity), then opens the gate. Waiting has a
deadline only as a guard against hanging; no assertion depends on timing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg
from psycopg import sql

from adapters.runtime import Runtime
from ledger.balances import totals_by_currency
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.errors import BalanceLimitExceeded, IdempotencyConflict, PeriodClosed
from ledger.money import Money
from ledger.periods import PeriodStatus
from ledger.postgres.books import get_account, set_period_status
from ledger.postgres.posting import PostedEntry, post_entries, post_entry
from ledger.postgres.queries import account_balance, trial_balance_as_of
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import verify_book
from tests.conftest import APP_ROLE, RAW_OPTIONS, THROUGH_PGBOUNCER, BookFixture

DAY = date(2026, 3, 10)
WALLET = "Liabilities:Prepaid-Wallet"


# -- helpers -------------------------------------------------------------------


def entry(
    lines: Sequence[tuple[str, str]],
    *,
    day: date = DAY,
    key: str | None = None,
    memo: str = "test",
    currency: str = "USD",
) -> JournalEntry:
    return build_entry(
        day,
        memo,
        [Posting(account, Money.exact(amount, currency)) for account, amount in lines],
        idempotency_key=key or f"t:{uuid.uuid4()}",
    )


def commit_entries(
    runtime: Runtime, book_id: uuid.UUID, entries: Sequence[JournalEntry]
) -> list[PostedEntry]:
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book_id, entries)
        uow.commit()
    return posted


@pytest.fixture
def app_connect(database_url: str) -> Iterator[Callable[[], psycopg.Connection]]:
    """Own psycopg sessions as the application role (not from the pool)."""
    opened: list[psycopg.Connection] = []

    def connect() -> psycopg.Connection:
        if THROUGH_PGBOUNCER:  # log in as the role: SET ROLE is session state
            conn = psycopg.connect(database_url, user=APP_ROLE, **RAW_OPTIONS)
        else:
            conn = psycopg.connect(database_url)
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(APP_ROLE)))
            conn.commit()
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def lock_waiters(conn: psycopg.Connection, among: Sequence[int] | None = None) -> int:
    """Backends of this database waiting for a heavyweight lock (row, xid, advisory)."""
    conn.execute("select pg_stat_clear_snapshot()")  # activity is cached per transaction
    query = (
        "select count(*) from pg_stat_activity where datname = current_database()"
        " and wait_event_type = 'Lock' and pid <> pg_backend_pid()"
    )
    params: tuple[Any, ...] = ()
    if among is not None:
        query += " and pid = any(%s)"
        params = (list(among),)
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def wait_until(predicate: Callable[[], bool], what: str, deadline: float = 120.0) -> None:
    """Poll until true; the deadline only keeps a broken build from hanging."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.02)


def book_counts(conn: psycopg.Connection, book_id: uuid.UUID) -> tuple[int, int]:
    row = conn.execute(
        "select (select count(*) from journal_entries where book_id = %s),"
        " (select count(*) from postings where book_id = %s)",
        (book_id, book_id),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def postings_totals(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[tuple[str, str], Decimal]:
    """Balances straight from the postings, bypassing every projection."""
    rows = conn.execute(
        "select a.name, p.currency, sum(p.amount) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s group by 1, 2 having sum(p.amount) <> 0",
        (book_id,),
    ).fetchall()
    return {(name, currency): total for name, currency, total in rows}


# -- minimum balance under 32 concurrent writers -----------------------------------


def _guarded_gate(
    owner_conn: psycopg.Connection, book_id: uuid.UUID, account_id: uuid.UUID
) -> None:
    """Start a superuser transaction holding the wallet's running-balance row."""
    owner_conn.execute("begin")
    row = owner_conn.execute(
        "select balance from guarded_balances where book_id = %s and account_id = %s for update",
        (book_id, account_id),
    ).fetchone()
    assert row == (Decimal("-100.00"),)


@pytest.mark.slow
def test_32_concurrent_debits_never_take_the_wallet_below_zero(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    commit_entries(
        runtime, book.id, [entry([("Assets:Bank:Operating", "100.00"), (WALLET, "-100.00")])]
    )
    with runtime.connection() as conn:
        wallet = get_account(conn, book.id, WALLET)
    assert wallet.min_balance == Decimal(0)

    _guarded_gate(owner_conn, book.id, wallet.id)

    def spend(i: int) -> str:
        try:
            commit_entries(
                runtime,
                book.id,
                [entry([(WALLET, "5.00"), ("Income:Usage", "-5.00")], key=f"spend-{i}")],
            )
        except BalanceLimitExceeded as exc:
            assert exc.fields["constraint"] == "postings_min_balance"
            return "refused"
        return "posted"

    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(spend, i) for i in range(32)]
        wait_until(lambda: lock_waiters(owner_conn) == 32, "32 writers queued behind the gate")
        owner_conn.execute("commit")
        outcomes = [f.result() for f in futures]

    assert outcomes.count("posted") == 20
    assert outcomes.count("refused") == 12
    with runtime.connection() as conn:
        assert account_balance(conn, book.id, wallet.id, DAY) == {"USD": Decimal("0.00")}
        assert postings_totals(conn, book.id)[("Assets:Bank:Operating", "USD")] == Decimal("100.00")
        assert (WALLET, "USD") not in postings_totals(conn, book.id)
        assert postings_totals(conn, book.id)[("Income:Usage", "USD")] == Decimal("-100.00")
        assert book_counts(conn, book.id) == (21, 42)
        guarded = conn.execute(
            "select balance from guarded_balances where book_id = %s and account_id = %s",
            (book.id, wallet.id),
        ).fetchone()
        assert guarded == (Decimal("0.00"),)
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        assert verify_book(conn, book.id) == []


@pytest.mark.slow
def test_32_raw_sessions_as_the_app_role_cannot_overdraw_the_wallet(
    runtime: Runtime,
    book: BookFixture,
    owner_conn: psycopg.Connection,
    app_connect: Callable[[], psycopg.Connection],
) -> None:
    """The same race with plain SQL, no application code on the write path."""
    commit_entries(
        runtime, book.id, [entry([("Assets:Bank:Operating", "100.00"), (WALLET, "-100.00")])]
    )
    with runtime.connection() as conn:
        wallet = get_account(conn, book.id, WALLET).id
        usage = get_account(conn, book.id, "Income:Usage").id
    sessions = [app_connect() for _ in range(32)]
    _guarded_gate(owner_conn, book.id, wallet)

    def spend(conn: psycopg.Connection) -> str:
        entry_id = uuid.uuid4()
        try:
            with conn.transaction():
                conn.execute(
                    "with e as (insert into journal_entries (book_id, id, effective_date,"
                    " idempotency_key, request_hash) values (%s, %s, %s, %s, 'raw')"
                    " returning book_id, id, effective_date)"
                    " insert into postings (book_id, entry_id, line_no, account_id, amount,"
                    " currency, effective_date)"
                    " select e.book_id, e.id, v.n, v.account, v.amount, 'USD', e.effective_date"
                    " from e, (values (1, %s::uuid, 5.00), (2, %s::uuid, -5.00))"
                    " as v(n, account, amount)",
                    (book.id, entry_id, DAY, f"raw:{entry_id}", wallet, usage),
                )
        except pg.CheckViolation as exc:
            assert exc.diag.sqlstate == "23514"
            assert exc.diag.constraint_name == "postings_min_balance"
            return "refused"
        return "posted"

    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(spend, conn) for conn in sessions]
        wait_until(lambda: lock_waiters(owner_conn) == 32, "32 sessions queued behind the gate")
        owner_conn.execute("commit")
        outcomes = [f.result() for f in futures]

    assert outcomes.count("posted") == 20
    assert outcomes.count("refused") == 12
    with runtime.connection() as conn:
        assert account_balance(conn, book.id, wallet, DAY) == {"USD": Decimal("0.00")}
        assert book_counts(conn, book.id) == (21, 42)


@pytest.mark.slow
def test_32_concurrent_batches_through_post_entries(runtime: Runtime, book: BookFixture) -> None:
    """Free-running threads (no gate), each posting a batch of two 2.50 debits;
    a batch is all or nothing, so exactly 20 batches fit into 100.00."""
    commit_entries(
        runtime, book.id, [entry([("Assets:Bank:Operating", "100.00"), (WALLET, "-100.00")])]
    )
    barrier = threading.Barrier(32)

    def spend(i: int) -> str:
        batch = [
            entry([(WALLET, "2.50"), ("Income:Usage", "-2.50")], key=f"b{i}-{n}") for n in range(2)
        ]
        barrier.wait()
        try:
            commit_entries(runtime, book.id, batch)
        except BalanceLimitExceeded:
            return "refused"
        return "posted"

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(spend, range(32)))
    assert outcomes.count("posted") == 20
    assert outcomes.count("refused") == 12
    with runtime.connection() as conn:
        wallet = get_account(conn, book.id, WALLET)
        assert account_balance(conn, book.id, wallet.id, DAY) == {"USD": Decimal("0.00")}
        assert book_counts(conn, book.id) == (41, 82)


# -- a hot account does not serialize writers -------------------------------------------


@pytest.mark.slow
def test_8_threads_on_one_revenue_account_all_succeed(runtime: Runtime, book: BookFixture) -> None:
    threads, per_thread = 8, 40
    barrier = threading.Barrier(threads)

    def write(t: int) -> Decimal:
        barrier.wait()
        total = Decimal(0)
        for n in range(per_thread):
            cents = Decimal(100 + t * per_thread + n) / 100
            if n % 2:
                lines = [
                    ("Assets:Receivable:Trade", f"{cents + Decimal('0.10')}"),
                    ("Income:Subscriptions", f"{-cents}"),
                    ("Liabilities:Tax-Payable", "-0.10"),
                ]
            else:
                lines = [
                    ("Assets:Bank:Operating", f"{cents}"),
                    ("Income:Subscriptions", f"{-cents}"),
                ]
            commit_entries(runtime, book.id, [entry(lines, key=f"hot-{t}-{n}")])
            total += cents
        return total

    with ThreadPoolExecutor(max_workers=threads) as pool:
        totals = list(pool.map(write, range(threads)))  # re-raises any deadlock or failure

    revenue = sum(totals, Decimal(0))
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        lines = trial_balance_as_of(conn, book.id, DAY)
        from_projection = {(line.account, line.currency): line.balance for line in lines}
        assert from_projection == postings_totals(conn, book.id)
        assert from_projection[("Income:Subscriptions", "USD")] == -revenue
        assert totals_by_currency(lines)["USD"][0] == totals_by_currency(lines)["USD"][1]
        assert book_counts(conn, book.id) == (threads * per_thread, threads * per_thread * 5 // 2)
        assert verify_book(conn, book.id) == []
        slots = conn.execute(
            "select count(distinct slot) from account_balances b join accounts a"
            " on a.book_id = b.book_id and a.id = b.account_id"
            " where b.book_id = %s and a.name = 'Income:Subscriptions'",
            (book.id,),
        ).fetchone()
        assert slots is not None and slots[0] >= 1


def test_an_open_transaction_on_the_hot_account_does_not_block_another(
    book: BookFixture, app_connect: Callable[[], psycopg.Connection]
) -> None:
    """A holds an uncommitted posting to the revenue account; B posts to the same
    account and commits without waiting for any lock (lock_timeout would fire)."""
    a = app_connect()
    b = app_connect()
    while b.info.backend_pid % 16 == a.info.backend_pid % 16:  # the same balance slot
        b = app_connect()
    post_entry(
        a, book.id, entry([("Assets:Bank:Operating", "10.00"), ("Income:Subscriptions", "-10.00")])
    )
    b.execute("set lock_timeout = '5s'")
    post_entry(
        b, book.id, entry([("Assets:Bank:Operating", "20.00"), ("Income:Subscriptions", "-20.00")])
    )
    b.commit()
    a.commit()
    revenue = get_account(b, book.id, "Income:Subscriptions")
    assert account_balance(b, book.id, revenue.id, DAY) == {"USD": Decimal("-30.00")}
    b.commit()


# -- closing a period against an uncommitted entry ----------------------------------------


def _close_in_thread(runtime: Runtime, book_id: uuid.UUID, period: str) -> None:
    with unit_of_work(runtime.connection) as uow:
        set_period_status(uow.conn, book_id, period, PeriodStatus.CLOSED)
        uow.commit()


@pytest.mark.slow
def test_close_waits_for_an_uncommitted_entry_in_the_period(
    runtime: Runtime,
    book: BookFixture,
    owner_conn: psycopg.Connection,
    app_connect: Callable[[], psycopg.Connection],
) -> None:
    writer = app_connect()
    posted = post_entry(
        writer,
        book.id,
        entry(
            [("Assets:Bank:Operating", "10.00"), ("Income:Services", "-10.00")],
            day=date(2026, 2, 27),
        ),
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        closing = pool.submit(_close_in_thread, runtime, book.id, "2026-02")
        wait_until(lambda: lock_waiters(owner_conn) == 1, "the close to wait for the writer")
        assert not closing.done()
        writer.commit()  # the entry commits before the close...
        closing.result()  # ...and only then does the close go through
    with runtime.connection() as conn:
        assert conn.execute(
            "select status from periods where book_id = %s and period = '2026-02'", (book.id,)
        ).fetchone() == ("closed",)
        assert _entries_in(conn, book.id, "2026-02") == [posted.id]
    with pytest.raises(PeriodClosed):
        commit_entries(
            runtime,
            book.id,
            [
                entry(
                    [("Assets:Bank:Operating", "1.00"), ("Income:Services", "-1.00")],
                    day=date(2026, 2, 1),
                )
            ],
        )


@pytest.mark.slow
def test_an_entry_racing_a_close_is_rejected_once_the_close_commits(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    with unit_of_work(runtime.connection) as closer:
        set_period_status(closer.conn, book.id, "2026-02", PeriodStatus.CLOSED)  # not committed yet

        def write() -> str:
            try:
                commit_entries(
                    runtime,
                    book.id,
                    [
                        entry(
                            [("Assets:Bank:Operating", "10.00"), ("Income:Services", "-10.00")],
                            day=date(2026, 2, 14),
                        )
                    ],
                )
            except PeriodClosed as exc:
                assert exc.fields["constraint"] == "journal_entries_open_period"
                return "refused"
            return "posted"

        with ThreadPoolExecutor(max_workers=1) as pool:
            writing = pool.submit(write)
            wait_until(lambda: lock_waiters(owner_conn) == 1, "the writer to wait for the close")
            closer.commit()
            assert writing.result() == "refused"
    with runtime.connection() as conn:
        assert _entries_in(conn, book.id, "2026-02") == []
        assert book_counts(conn, book.id) == (0, 0)


def test_an_entry_racing_a_close_that_rolls_back_goes_through(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool, unit_of_work(runtime.connection) as closer:
        set_period_status(closer.conn, book.id, "2026-02", PeriodStatus.CLOSED)
        writing = pool.submit(
            commit_entries,
            runtime,
            book.id,
            [
                entry(
                    [("Assets:Bank:Operating", "10.00"), ("Income:Services", "-10.00")],
                    day=date(2026, 2, 14),
                )
            ],
        )
        wait_until(lambda: lock_waiters(owner_conn) == 1, "the writer to wait for the close")
        closer.conn.rollback()
        (posted,) = writing.result()
    with runtime.connection() as conn:
        assert _entries_in(conn, book.id, "2026-02") == [posted.id]


def test_a_repeatable_read_snapshot_older_than_the_close_cannot_post_into_it(
    runtime: Runtime, book: BookFixture, app_connect: Callable[[], psycopg.Connection]
) -> None:
    writer = app_connect()
    writer.execute("set transaction isolation level repeatable read")
    writer.execute("select 1 from books where id = %s", (book.id,))  # the snapshot is taken
    _close_in_thread(runtime, book.id, "2026-02")  # commits while the writer is open
    try:
        post_entry(
            writer,
            book.id,
            entry(
                [("Assets:Bank:Operating", "10.00"), ("Income:Services", "-10.00")],
                day=date(2026, 2, 14),
            ),
        )
        writer.commit()
    except psycopg.Error:
        writer.rollback()
    with runtime.connection() as conn:
        assert _entries_in(conn, book.id, "2026-02") == []


def test_reopening_a_period_lets_entries_in_again(runtime: Runtime, book: BookFixture) -> None:
    feb = date(2026, 2, 10)
    lines = [("Assets:Bank:Operating", "3.00"), ("Income:Services", "-3.00")]
    _close_in_thread(runtime, book.id, "2026-02")
    with pytest.raises(PeriodClosed):
        commit_entries(runtime, book.id, [entry(lines, day=feb)])
    with unit_of_work(runtime.connection) as uow:
        set_period_status(uow.conn, book.id, "2026-02", PeriodStatus.OPEN)
        uow.commit()
    (posted,) = commit_entries(runtime, book.id, [entry(lines, day=feb)])
    with runtime.connection() as conn:
        assert _entries_in(conn, book.id, "2026-02") == [posted.id]


def _entries_in(conn: psycopg.Connection, book_id: uuid.UUID, period: str) -> list[uuid.UUID]:
    rows = conn.execute(
        "select id from journal_entries where book_id = %s"
        " and to_char(effective_date, 'YYYY-MM') = %s order by recorded_at",
        (book_id, period),
    ).fetchall()
    return [row[0] for row in rows]


# -- idempotency at the store ----------------------------------------------------------


def _key_count(conn: psycopg.Connection, book_id: uuid.UUID, key: str) -> int:
    row = conn.execute(
        "select count(*) from journal_entries where book_id = %s and idempotency_key = %s",
        (book_id, key),
    ).fetchone()
    return int(row[0]) if row else 0


def test_posting_the_same_key_twice_returns_the_original(
    runtime: Runtime, book: BookFixture
) -> None:
    lines = [("Assets:Bank:Operating", "42.00"), ("Income:Services", "-42.00")]
    (first,) = commit_entries(runtime, book.id, [entry(lines, key="same")])
    (again,) = commit_entries(runtime, book.id, [entry(lines, key="same")])
    assert first.created is True
    assert again.created is False
    assert again.id == first.id
    assert again.recorded_at == first.recorded_at
    assert [(p.account, p.amount) for p in again.postings] == [
        ("Assets:Bank:Operating", Decimal("42.00")),
        ("Income:Services", Decimal("-42.00")),
    ]
    with runtime.connection() as conn:
        assert _key_count(conn, book.id, "same") == 1
        assert book_counts(conn, book.id) == (1, 2)


def test_a_replay_inside_a_batch_is_returned_in_place(runtime: Runtime, book: BookFixture) -> None:
    lines = [("Assets:Bank:Operating", "1.00"), ("Income:Services", "-1.00")]
    (first,) = commit_entries(runtime, book.id, [entry(lines, key="k1")])
    batch = commit_entries(
        runtime, book.id, [entry(lines, key="k0"), entry(lines, key="k1"), entry(lines, key="k2")]
    )
    assert [p.idempotency_key for p in batch] == ["k0", "k1", "k2"]
    assert [p.created for p in batch] == [True, False, True]
    assert batch[1].id == first.id
    with runtime.connection() as conn:
        assert book_counts(conn, book.id) == (3, 6)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(
            [("Assets:Bank:Operating", "42.01"), ("Income:Services", "-42.01")], id="amount"
        ),
        pytest.param(
            [("Assets:Bank:Operating", "42.00"), ("Income:Usage", "-42.00")], id="account"
        ),
    ],
)
def test_the_same_key_with_other_content_is_a_conflict(
    other: list[tuple[str, str]], runtime: Runtime, book: BookFixture
) -> None:
    (first,) = commit_entries(
        runtime,
        book.id,
        [entry([("Assets:Bank:Operating", "42.00"), ("Income:Services", "-42.00")], key="k")],
    )
    with pytest.raises(IdempotencyConflict) as exc_info:
        commit_entries(runtime, book.id, [entry(other, key="k")])
    assert exc_info.value.fields["entry_id"] == str(first.id)
    with pytest.raises(IdempotencyConflict):
        commit_entries(
            runtime,
            book.id,
            [
                entry(
                    [("Assets:Bank:Operating", "42.00"), ("Income:Services", "-42.00")],
                    key="k",
                    memo="other memo",
                )
            ],
        )
    with runtime.connection() as conn:
        assert _key_count(conn, book.id, "k") == 1
        assert book_counts(conn, book.id) == (1, 2)


@pytest.mark.slow
def test_20_concurrent_posts_with_one_key_create_one_entry(
    runtime: Runtime, book: BookFixture
) -> None:
    barrier = threading.Barrier(20)

    def attempt(_: int) -> PostedEntry:
        e = entry([("Assets:Bank:Operating", "9.99"), ("Income:Services", "-9.99")], key="one-key")
        barrier.wait()
        (posted,) = commit_entries(runtime, book.id, [e])
        return posted

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    assert len({r.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    with runtime.connection() as conn:
        assert _key_count(conn, book.id, "one-key") == 1
        assert book_counts(conn, book.id) == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("first_writer", ["commits", "rolls back"])
def test_posts_queued_behind_an_uncommitted_key(
    first_writer: str,
    runtime: Runtime,
    book: BookFixture,
    owner_conn: psycopg.Connection,
    app_connect: Callable[[], psycopg.Connection],
) -> None:
    """19 posts wait on a first, uncommitted one with the same key. If it commits,
    all 19 get it back; if it rolls back, exactly one of the 19 creates the entry."""
    lines = [("Assets:Bank:Operating", "9.99"), ("Income:Services", "-9.99")]
    first = app_connect()
    original = post_entry(first, book.id, entry(lines, key="queued"))

    def attempt(_: int) -> PostedEntry:
        (posted,) = commit_entries(runtime, book.id, [entry(lines, key="queued")])
        return posted

    with ThreadPoolExecutor(max_workers=19) as pool:
        futures = [pool.submit(attempt, i) for i in range(19)]
        wait_until(lambda: lock_waiters(owner_conn) == 19, "19 posts queued behind the first")
        if first_writer == "commits":
            first.commit()
        else:
            first.rollback()
        results = [f.result() for f in futures]

    ids = {r.id for r in results}
    assert len(ids) == 1
    if first_writer == "commits":
        assert ids == {original.id}
        assert not any(r.created for r in results)
    else:
        assert original.id not in ids
        assert sum(r.created for r in results) == 1
    with runtime.connection() as conn:
        assert _key_count(conn, book.id, "queued") == 1
        assert book_counts(conn, book.id) == (1, 2)


def test_a_queued_post_with_other_content_gets_a_conflict(
    runtime: Runtime,
    book: BookFixture,
    owner_conn: psycopg.Connection,
    app_connect: Callable[[], psycopg.Connection],
) -> None:
    first = app_connect()
    post_entry(
        first,
        book.id,
        entry([("Assets:Bank:Operating", "5.00"), ("Income:Services", "-5.00")], key="k"),
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(
            commit_entries,
            runtime,
            book.id,
            [entry([("Assets:Bank:Operating", "6.00"), ("Income:Services", "-6.00")], key="k")],
        )
        wait_until(lambda: lock_waiters(owner_conn) == 1, "the second post to queue")
        first.commit()
        with pytest.raises(IdempotencyConflict):
            other.result()
    with runtime.connection() as conn:
        assert book_counts(conn, book.id) == (1, 2)


# -- an account opened on first use by two transactions at once ---------------------


def test_two_transactions_opening_one_account_on_first_use_both_go_on(
    owner_conn: psycopg.Connection,
    book: BookFixture,
    app_connect: Callable[[], psycopg.Connection],
) -> None:
    """The second opener waits on the first's uncommitted account, then finds it
    there: neither fails, and the book has the account once."""
    from ledger.postgres.books import AccountSpec, ensure_account

    name = "Income:Opened-On-First-Use"
    first, second = app_connect(), app_connect()
    ensure_account(first, book.id, AccountSpec(name, code="4999"))  # uncommitted
    failures: list[BaseException] = []

    def open_it_too() -> None:
        try:
            ensure_account(second, book.id, name)
            second.commit()
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    racer = threading.Thread(target=open_it_too)
    racer.start()
    wait_until(
        # No pid filter: through PgBouncer a client's server backend is not its own pid.
        lambda: failures != [] or lock_waiters(owner_conn) == 1,
        "second waits",
    )
    first.commit()
    racer.join(timeout=60)
    assert failures == []
    rows = owner_conn.execute(
        "select code from accounts where book_id = %s and name = %s", (book.id, name)
    ).fetchall()
    assert rows == [("4999",)]
