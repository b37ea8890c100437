"""Compaction folds per-writer balance slots without changing any balance."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal

from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
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
