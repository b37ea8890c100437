"""Compaction folds per-writer balance slots without changing any balance."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import psycopg

from adapters.runtime import Runtime
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.books import AccountSpec, ensure_account
from ledger.postgres.posting import post_entries
from ledger.postgres.queries import compact_balances, trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import verify_book
from tests.conftest import BookFixture

DAY = date(2026, 3, 1)


def _post(runtime: Runtime, book: BookFixture, day: date, amount: str) -> None:
    entry = build_entry(
        day,
        "sale",
        [
            Posting("Assets:Bank:Operating", Money.exact(amount, "USD")),
            Posting("Income:Services", Money.exact(f"-{amount}", "USD")),
        ],
    )
    with unit_of_work(runtime.connection) as uow:
        post_entries(uow.conn, book.id, [entry])
        uow.commit()


def test_compaction_keeps_every_balance_while_writers_back_date(
    runtime: Runtime, book: BookFixture
) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                _post(runtime, book, DAY + timedelta(days=(n + i) % 10), f"{n + 1}.{i:02d}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    with runtime.connection() as conn:
        while any(t.is_alive() for t in threads):  # compact while they write
            compact_balances(conn, book.id, DAY + timedelta(days=8))
            conn.commit()
    for thread in threads:
        thread.join()
    assert errors == []
    with runtime.connection() as conn:
        before = trial_balance_as_of(conn, book.id, DAY + timedelta(days=30))
        compact_balances(conn, book.id, DAY + timedelta(days=8))
        conn.commit()
        after = trial_balance_as_of(conn, book.id, DAY + timedelta(days=30))
        left = conn.execute(
            "select count(*) from account_balances where book_id = %s and slot <> 0"
            " and balance_date < %s",
            (book.id, DAY + timedelta(days=8)),
        ).fetchone()
        assert verify_book(conn, book.id) == []
    assert before == after
    assert sum((line.debit for line in after), Decimal(0)) > 0
    assert left == (0,)


def _connect_on_slot(database_url: str, *, zero: bool) -> psycopg.Connection:
    """A session whose postings land in balance slot 0 (the slot compaction folds into)
    or, with zero=False, in one of the slots it folds."""
    others: list[psycopg.Connection] = []
    try:
        for _ in range(400):
            conn = psycopg.connect(database_url)
            if (conn.info.backend_pid % 16 == 0) == zero:
                return conn
            others.append(conn)  # held open so the next session gets a new pid
        raise AssertionError("no backend pid fell on slot 0 in 400 sessions")
    finally:
        for other in others:
            other.close()


def _pair(day: date, debit: str, credit: str, amount: str) -> list[JournalEntry]:
    return [
        build_entry(
            day,
            "transfer",
            [
                Posting(debit, Money.exact(amount, "USD")),
                Posting(credit, Money.exact(f"-{amount}", "USD")),
            ],
        )
    ]


def test_compaction_folds_in_key_order_beside_a_slot_zero_writer(
    runtime: Runtime, book: BookFixture, database_url: str
) -> None:
    """A writer on slot 0 holds the first accounts' rows, compaction waits for it, then
    the writer upserts later accounts' slot-0 rows: compaction must not hold those yet
    (revision 0031; before, it upserted slot 0 in hash order and the two deadlocked)."""
    names = [f"Assets:Compaction:{n}" for n in range(4)]
    with runtime.connection() as conn:
        for name in names:
            ensure_account(conn, book.id, AccountSpec(name))
        ids = dict(
            conn.execute(
                "select name, id from accounts where book_id = %s and name = any(%s)",
                (book.id, names),
            ).fetchall()
        )
        conn.commit()
    a1, a2, a3, a4 = sorted(names, key=lambda name: ids[name])
    with _connect_on_slot(database_url, zero=False) as conn:  # rows for compaction to fold
        post_entries(conn, book.id, _pair(DAY, a1, a2, "10.00") + _pair(DAY, a3, a4, "20.00"))
        conn.commit()

    errors: list[BaseException] = []
    compactor_pid: list[int] = []

    def compact() -> None:
        try:
            with psycopg.connect(database_url) as conn:
                compactor_pid.append(conn.info.backend_pid)
                compact_balances(conn, book.id, DAY + timedelta(days=1))
                conn.commit()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    with (
        _connect_on_slot(database_url, zero=True) as writer,
        psycopg.connect(database_url, autocommit=True) as watcher,
    ):
        post_entries(writer, book.id, _pair(DAY, a1, a2, "1.00"))  # holds a1, a2 in slot 0
        compactor = threading.Thread(target=compact)
        compactor.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = watcher.execute(
                "select wait_event_type from pg_stat_activity where pid = any(%s)",
                (compactor_pid,),
            ).fetchone()
            if row and row[0] == "Lock":
                break
            time.sleep(0.02)
        else:
            raise AssertionError("compaction never waited for the slot-0 writer")
        post_entries(writer, book.id, _pair(DAY, a3, a4, "2.00"))
        writer.commit()
        compactor.join()
    assert errors == []
    with runtime.connection() as conn:
        balances = dict(
            conn.execute(
                "select a.name, sum(b.amount) from account_balances b"
                " join accounts a on a.book_id = b.book_id and a.id = b.account_id"
                " where b.book_id = %s and a.name = any(%s) group by a.name",
                (book.id, names),
            ).fetchall()
        )
        left = conn.execute(
            "select count(*) from account_balances b join accounts a"
            " on a.book_id = b.book_id and a.id = b.account_id"
            " where b.book_id = %s and a.name = any(%s) and b.slot <> 0",
            (book.id, names),
        ).fetchone()
        assert verify_book(conn, book.id) == []
    assert balances == {
        a1: Decimal("11.00"),
        a2: Decimal("-11.00"),
        a3: Decimal("22.00"),
        a4: Decimal("-22.00"),
    }
    assert left == (0,)
