"""The month-end usage accrual run on real PostgreSQL: rated usage not yet invoiced
goes to Unbilled / Income:Usage (the difference from what is already accrued, so a
re-run posts nothing), and the invoice relieves Unbilled for what was accrued and
credits Income:Usage only with the rest; verify re-derives the usage Unbilled."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.cli import main
from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.errors import InvalidBillingRequest
from billing.postgres.usage_accrual_run import accrue_usage
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_subscriptions import balances, bill, invoices_of, move_clock
from tests.billing.test_usage_billing import event, send, subscribe, usage_price
from tests.conftest import make_book
from tests.integration.http_fixtures import auth, open_client

D = Decimal
JAN = date(2026, 1, 1)
FEB = date(2026, 2, 1)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def accrual_postings(conn: psycopg.Connection, book_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select e.effective_date, a.name, p.amount from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id"
        " where p.book_id = %s and p.dimensions->>'usage' = 'accrual'"
        " order by e.effective_date, a.name",
        (book_id,),
    ).fetchall()


def invoice_postings(conn: psycopg.Connection, book_id: uuid.UUID, invoice: Any) -> list[Any]:
    return conn.execute(
        "select a.name, sum(p.amount) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and p.document = %s group by a.name order by a.name",
        (book_id, f"invoice:{invoice}"),
    ).fetchall()


def test_accrual_of_15000_graduated_units_then_the_invoice_relieves_unbilled(
    runtime: Runtime, client: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id)
        uow.commit()
    subscribe(runtime, book, [price], "acme")
    move_clock(runtime, book.id, date(2026, 1, 20))
    send(runtime, book, [event("a", "acme", "9000", "2026-01-10")])
    # Jan 20 (CLI): 9,000 units graduated = 1,000 @ 0.10 + 8,000 @ 0.05 = 500.00.
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["usage", "accrue", "--as-of", "2026-01-20", "--book", str(book.id)]) == 0

    move_clock(runtime, book.id, date(2026, 1, 31))
    send(runtime, book, [event("b", "acme", "6000", "2026-01-31")])
    key = auth(book.admin_key)
    # Jan 31 (HTTP): 15,000 units = 600.00, so 100.00 more.
    response = client.post("/v1/usage-accruals", json={"as_of": "2026-01-31"}, headers=key)
    assert response.status_code == 201, response.text
    assert (response.json()["accrued"], response.json()["entries"]) == ({"USD": "100.00"}, 1)
    # The same date again: nothing left to accrue.
    again = client.post("/v1/usage-accruals", json={"as_of": "2026-01-31"}, headers=key)
    assert (again.json()["accrued"], again.json()["entries"]) == ({}, 0)
    with runtime.connection() as conn:
        assert accrual_postings(conn, book.id) == [
            (date(2026, 1, 20), "Assets:Receivable:Unbilled", D("500.00")),
            (date(2026, 1, 20), "Income:Usage", D("-500.00")),
            (date(2026, 1, 31), "Assets:Receivable:Unbilled", D("100.00")),
            (date(2026, 1, 31), "Income:Usage", D("-100.00")),
        ]
        assert verify_everything(conn, book.id) == []
    assert balances(runtime, book.id, date(2026, 1, 31)) == {
        "Assets:Receivable:Unbilled": D("600.00"),
        "Income:Usage": D("-600.00"),
    }

    # 1,000 more January units arrive after the accrual: 16,000 bill 610.00, of which
    # 600.00 was accrued (relieved from Unbilled) and 10.00 is new revenue.
    move_clock(runtime, book.id, FEB)
    send(runtime, book, [event("c", "acme", "1000", "2026-01-31")])
    assert bill(runtime, book.id, FEB).invoices_created == 1
    (invoice,) = invoices_of(runtime, book.id)
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (
        D("610.00"),
        D("61.00"),
        D("671.00"),
    )
    with runtime.connection() as conn:
        assert invoice_postings(conn, book.id, invoice.id) == [
            ("Assets:Receivable:Trade", D("671.00")),
            ("Assets:Receivable:Unbilled", D("-600.00")),
            ("Income:Usage", D("-10.00")),
            ("Liabilities:Tax-Payable", D("-61.00")),
        ]
        assert verify_everything(conn, book.id) == []
    assert balances(runtime, book.id, FEB) == {
        "Assets:Receivable:Trade": D("671.00"),
        "Income:Usage": D("-610.00"),
        "Liabilities:Tax-Payable": D("-61.00"),
    }
    # February's accrual starts from nothing: January is invoiced.
    move_clock(runtime, book.id, date(2026, 2, 28))
    send(runtime, book, [event("d", "acme", "100", "2026-02-10")])
    with unit_of_work(runtime.connection) as uow:
        run = accrue_usage(uow.conn, book.id, date(2026, 2, 28), date(2026, 2, 28))
        uow.commit()
    assert run.accrued == {"USD": D("10.00")}  # 100 @ 0.10


def test_a_volume_price_that_falls_reverses_part_of_the_accrual(runtime: Runtime) -> None:
    """Volume pricing: 10,000 units @ 0.05 = 500.00 accrued; at 15,000 the whole quantity
    falls to 0.01 = 150.00, so the next accrual reverses 350.00, and an invoice billing
    less than was accrued still empties Unbilled."""
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id, "volume")
        uow.commit()
    subscribe(runtime, book, [price], "vol")
    move_clock(runtime, book.id, date(2026, 1, 31))
    send(runtime, book, [event("a", "vol", "10000", "2026-01-10")])
    with unit_of_work(runtime.connection) as uow:
        first = accrue_usage(uow.conn, book.id, date(2026, 1, 15), date(2026, 1, 31))
        uow.commit()
    assert first.accrued == {"USD": D("500.00")}
    send(runtime, book, [event("b", "vol", "5000", "2026-01-20")])
    with unit_of_work(runtime.connection) as uow:
        second = accrue_usage(uow.conn, book.id, date(2026, 1, 31), date(2026, 1, 31))
        uow.commit()
    assert second.accrued == {"USD": D("-350.00")}
    with runtime.connection() as conn:
        assert accrual_postings(conn, book.id)[2:] == [
            (date(2026, 1, 31), "Assets:Receivable:Unbilled", D("-350.00")),
            (date(2026, 1, 31), "Income:Usage", D("350.00")),
        ]
    move_clock(runtime, book.id, FEB)
    bill(runtime, book.id, FEB)
    (invoice,) = invoices_of(runtime, book.id)
    with runtime.connection() as conn:
        assert invoice_postings(conn, book.id, invoice.id) == [
            ("Assets:Receivable:Trade", D("165.00")),
            ("Assets:Receivable:Unbilled", D("-150.00")),
            ("Liabilities:Tax-Payable", D("-15.00")),
        ]
        assert verify_everything(conn, book.id) == []


def test_bad_accrual_dates_are_refused_and_write_nothing(
    runtime: Runtime,
    client: Any,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    book = make_book(runtime, "USD", JAN)
    key = auth(book.admin_key)
    future = client.post("/v1/usage-accruals", json={"as_of": "2026-02-01"}, headers=key)
    assert future.status_code == 422
    assert "after the book's today" in future.json()["detail"]
    bad = client.post("/v1/usage-accruals", json={"as_of": "soon"}, headers=key)
    assert bad.status_code in (400, 422)
    with pytest.raises(InvalidBillingRequest), unit_of_work(runtime.connection) as uow:
        accrue_usage(uow.conn, book.id, date(2026, 3, 1), JAN)
    monkeypatch.setenv("DATABASE_URL", database_url)
    capsys.readouterr()
    assert main(["usage", "accrue", "--as-of", "2027-01-01", "--book", str(book.id)]) != 0
    assert main(["usage", "accrue", "--book", str(book.id), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0
    with runtime.connection() as conn:
        count = conn.execute(
            "select count(*) from usage_accruals where book_id = %s", (book.id,)
        ).fetchone()
        assert count == (0,)


def test_concurrent_accrual_runs_accrue_once(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id)
        uow.commit()
    subscribe(runtime, book, [price], "twice")
    move_clock(runtime, book.id, date(2026, 1, 31))
    send(runtime, book, [event("a", "twice", "1000", "2026-01-10")])
    barrier = threading.Barrier(4)
    entries: list[int] = []

    def run() -> None:
        barrier.wait()
        with unit_of_work(runtime.connection) as uow:
            entries.append(
                accrue_usage(uow.conn, book.id, date(2026, 1, 31), date(2026, 1, 31)).entries
            )
            uow.commit()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(entries) == [0, 0, 0, 1]
    assert balances(runtime, book.id, date(2026, 1, 31))["Assets:Receivable:Unbilled"] == D(
        "100.00"
    )
