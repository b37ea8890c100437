"""Invoice numbers: gapless per book and series, also under concurrent
finalization, and a finalization that fails gives its number back."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.runtime import Runtime
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import LineSpec, create_draft, finalize_invoice
from ledger.errors import PeriodClosed
from ledger.periods import PeriodStatus
from ledger.postgres.books import set_period_status
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client

ISSUE = date(2026, 3, 15)


def drafts(runtime: Runtime, book: BookFixture, n: int) -> list[str]:
    with unit_of_work(runtime.connection) as uow:
        customer, _ = upsert_customer(
            uow.conn, book.id, CustomerSpec("Numbered", "USD", tax_rate=Decimal("0.10"))
        )
        ids = []
        for i in range(n):
            draft = create_draft(
                uow.conn,
                book.id,
                str(customer.id),
                [LineSpec(f"Item {i}", Decimal(1), Decimal("10.00"))],
            )
            assert draft is not None
            ids.append(str(draft.id))
        uow.commit()
    return ids


def set_period(runtime: Runtime, book: BookFixture, status: PeriodStatus) -> None:
    with unit_of_work(runtime.connection) as uow:
        set_period_status(uow.conn, book.id, "2026-03", status)
        uow.commit()


def series_value(runtime: Runtime, book: BookFixture) -> int | None:
    with runtime.connection() as conn:
        row = conn.execute(
            "select last_value from number_series where book_id = %s and series = 'INV-2026'",
            (book.id,),
        ).fetchone()
    return None if row is None else int(row[0])


@pytest.mark.slow
def test_twenty_concurrent_finalizations_get_1_to_20(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", ISSUE)
    ids = drafts(runtime, book, 20)
    start = threading.Barrier(len(ids))
    numbers: dict[str, str] = {}
    errors: list[BaseException] = []

    def finalize(invoice_id: str) -> None:
        try:
            with unit_of_work(runtime.connection) as uow:
                start.wait(timeout=60)
                invoice = finalize_invoice(uow.conn, book.id, invoice_id, ISSUE)
                uow.commit()
            assert invoice.number is not None
            numbers[invoice_id] = invoice.number
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=finalize, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(numbers.values()) == [f"INV-2026-{n:06d}" for n in range(1, 21)]
    assert series_value(runtime, book) == 20
    with runtime.connection() as conn:
        stored = conn.execute(
            "select count(*), count(distinct number) from invoices"
            " where book_id = %s and status = 'open'",
            (book.id,),
        ).fetchone()
        lines = {
            (line.account, line.debit, line.credit)
            for line in trial_balance_as_of(conn, book.id, ISSUE)
        }
    assert stored == (20, 20)
    assert lines == {
        ("Assets:Receivable:Trade", Decimal("220.00"), Decimal(0)),
        ("Income:Services", Decimal(0), Decimal("200.00")),
        ("Liabilities:Tax-Payable", Decimal(0), Decimal("20.00")),
    }


def test_failed_finalization_burns_no_number(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", ISSUE)
    first, second = drafts(runtime, book, 2)
    set_period(runtime, book, PeriodStatus.CLOSED)
    with pytest.raises(PeriodClosed), unit_of_work(runtime.connection) as uow:
        finalize_invoice(uow.conn, book.id, first, ISSUE)
    assert series_value(runtime, book) is None  # the number was taken, then given back
    set_period(runtime, book, PeriodStatus.OPEN)
    with unit_of_work(runtime.connection) as uow:
        again = finalize_invoice(uow.conn, book.id, first, ISSUE)
        then = finalize_invoice(uow.conn, book.id, second, ISSUE)
        uow.commit()
    assert (again.number, then.number) == ("INV-2026-000001", "INV-2026-000002")


def test_failed_finalization_over_http_is_a_problem_and_keeps_the_draft(
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", ISSUE)
    (invoice_id,) = drafts(runtime, book, 1)
    with open_client(runtime) as client:
        # A first invoice takes number 1 before the period closes.
        ok = client.post(
            f"/v1/invoices/{drafts(runtime, book, 1)[0]}/finalize", headers=auth(book.admin_key)
        )
        assert ok.json()["number"] == "INV-2026-000001"
        set_period(runtime, book, PeriodStatus.CLOSED)
        failed = client.post(f"/v1/invoices/{invoice_id}/finalize", headers=auth(book.admin_key))
        assert_problem(failed, 422, "period_closed")
        shown: Any = client.get(f"/v1/invoices/{invoice_id}", headers=auth(book.admin_key)).json()
        assert (shown["status"], shown["number"]) == ("draft", None)
        assert series_value(runtime, book) == 1
        set_period(runtime, book, PeriodStatus.OPEN)
        done = client.post(f"/v1/invoices/{invoice_id}/finalize", headers=auth(book.admin_key))
        assert done.json()["number"] == "INV-2026-000002"
