from __future__ import annotations

from datetime import date
from decimal import Decimal

from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import post_entry
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import verify_book
from tests.conftest import BookFixture


def test_post_and_read_back(runtime: Runtime, book: BookFixture) -> None:
    entry = build_entry(
        date(2026, 1, 5),
        "cash sale",
        [
            Posting("Assets:Bank:Operating", Money.exact("108.00", "USD")),
            Posting("Income:Services", Money.exact("-100.00", "USD")),
            Posting("Liabilities:Tax-Payable", Money.exact("-8.00", "USD")),
        ],
        idempotency_key="sale-1",
    )
    with unit_of_work(runtime.connection) as uow:
        posted = post_entry(uow.conn, book.id, entry)
        uow.commit()
    assert posted.created
    runtime.seal_all(wait=True)
    with runtime.connection() as conn:
        lines = trial_balance_as_of(conn, book.id, date(2026, 1, 31))
        assert [(line.account, line.balance) for line in lines] == [
            ("Assets:Bank:Operating", Decimal("108.00")),
            ("Income:Services", Decimal("-100.00")),
            ("Liabilities:Tax-Payable", Decimal("-8.00")),
        ]
        assert verify_book(conn, book.id) == []
