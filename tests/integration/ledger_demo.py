"""A ledger-only demo book for the export tests: 12 months of entries in several
currencies (USD base, EUR, JPY, KWD), reversals, a sub-account and a closed account.

Deterministic (seeded), posted through the posting store as the app role.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from decimal import Decimal

from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.books import AccountSpec, close_account, create_account
from ledger.postgres.posting import post_entries, reverse_entry
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book

EXTRA_ACCOUNTS = (
    AccountSpec(name="Assets:Bank:EUR", currencies=["EUR"], code="1001"),
    AccountSpec(name="Assets:Bank:JPY", currencies=["JPY"], code="1002"),
    AccountSpec(name="Assets:Bank:KWD", currencies=["KWD"], code="1003"),
    AccountSpec(name="Assets:Bank:Old", code="1009"),
    AccountSpec(name="Assets:Clearing", code="1011"),  # parent of Assets:Clearing:Manual
)

# currency → (bank account, typical amount range in minor units)
CURRENCIES = {
    "USD": ("Assets:Bank:Operating", (100, 500_000)),
    "EUR": ("Assets:Bank:EUR", (100, 300_000)),
    "JPY": ("Assets:Bank:JPY", (100, 2_000_000)),
    "KWD": ("Assets:Bank:KWD", (1, 900_000)),
}
MINOR = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}


def _money(units: int, currency: str) -> Money:
    return Money.exact(Decimal(units).scaleb(-MINOR[currency]), currency)


def demo_book(runtime: Runtime, *, entries_per_month: int = 30, seed: int = 7) -> BookFixture:
    """A fresh USD book with a year (2025) of entries; returns its fixture."""
    fixture = make_book(runtime, "USD")
    book_id = fixture.id
    rng = random.Random(seed)
    with unit_of_work(runtime.connection) as uow:
        for spec in EXTRA_ACCOUNTS:
            create_account(uow.conn, book_id, spec)
        uow.commit()
    posted_ids: list[uuid.UUID] = []
    for month in range(1, 13):
        batch = []
        for n in range(entries_per_month):
            day = date(2025, month, 1) + timedelta(days=rng.randrange(28))
            currency = rng.choice(list(CURRENCIES))
            bank, (lo, hi) = CURRENCIES[currency]
            net = rng.randrange(lo, hi)
            tax = net * rng.choice([0, 5, 8, 20]) // 100
            customer = f"cus_{rng.randrange(40):03d}"
            invoice = f"INV-2025-{month:02d}{n:04d}"
            kind = rng.choice(["invoice", "payment", "fee", "usage"])
            if kind == "invoice":
                postings = [
                    Posting(
                        "Assets:Receivable:Trade", _money(net + tax, currency), customer, invoice
                    ),
                    Posting("Income:Subscriptions", _money(-net, currency), customer, invoice),
                ]
                if tax:
                    postings.append(
                        Posting(
                            "Liabilities:Tax-Payable", _money(-tax, currency), customer, invoice
                        )
                    )
            elif kind == "payment":
                postings = [
                    Posting(bank, _money(net, currency), customer, f"pay_{month}_{n}"),
                    Posting("Assets:Receivable:Trade", _money(-net, currency), customer, invoice),
                ]
            elif kind == "fee":
                postings = [
                    Posting("Expenses:Payment-Fees", _money(net // 30 + 1, currency)),
                    Posting("Assets:Clearing:Manual", _money(-(net // 30 + 1), currency)),
                ]
            else:
                postings = [
                    Posting("Assets:Clearing", _money(net, currency), customer),
                    Posting("Income:Usage", _money(-net, currency), customer, f"usage {invoice}"),
                ]
            memo = f'{kind} "{invoice}"' if n % 7 else f"{kind}\nsecond line \\ {invoice}"
            batch.append(
                build_entry(day, memo, postings, metadata={"kind": kind, "number": invoice})
            )
        if month <= 3:  # the old bank account: used, emptied, later closed
            batch.append(
                build_entry(
                    date(2025, month, 10),
                    "old bank in",
                    [
                        Posting("Assets:Bank:Old", _money(10_000 * month, "USD")),
                        Posting("Equity:Opening-Balances", _money(-10_000 * month, "USD")),
                    ],
                )
            )
        if month == 4:
            batch.append(
                build_entry(
                    date(2025, 4, 2),
                    "old bank swept",
                    [
                        Posting("Assets:Bank:Old", _money(-60_000, "USD")),
                        Posting("Assets:Bank:Operating", _money(60_000, "USD")),
                    ],
                )
            )
        with unit_of_work(runtime.connection) as uow:
            posted = post_entries(uow.conn, book_id, batch)
            uow.commit()
        posted_ids += [p.id for p in posted]
    # Reversals: some on the original's date, some a month later.
    with unit_of_work(runtime.connection) as uow:
        for index, entry_id in enumerate(posted_ids[5::37]):
            original_day = None if index % 2 else date(2025, 12, 31)
            reverse_entry(uow.conn, book_id, str(entry_id), effective_date=original_day)
        close_account(uow.conn, book_id, "Assets:Bank:Old")
        uow.commit()
    runtime.seal_all(wait=True)
    return fixture
