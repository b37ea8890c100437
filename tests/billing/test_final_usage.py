"""The last, partial period of a canceled or paused subscription: its usage is billed
in arrears on a final invoice dated the day it stopped (usage prices and rated CDRs),
once, with exact postings; usage after it stopped is not billed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.postgres.subscriptions import (
    cancel_subscription,
    list_subscriptions,
    pause_subscription,
    resume_subscription,
)
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_subscriptions import bill, invoices_of, move_clock, plan_price
from tests.billing.test_telecom_subscriptions import (
    JAN15,
    cdr,
    entry_postings,
    rate,
    send_cdrs,
    shape,
    telecom_subscription,
)
from tests.billing.test_usage_billing import event, send, subscribe, usage_price
from tests.conftest import make_book
from tests.integration.http_fixtures import open_client

D = Decimal
JAN = date(2026, 1, 1)
FEB = date(2026, 2, 1)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def only_subscription(runtime: Runtime, book_id: uuid.UUID, today: date) -> str:
    with runtime.connection() as conn:
        (sub,) = list_subscriptions(conn, book_id, today)
    return str(sub.id)


def test_cancel_at_period_end_bills_the_last_period_usage_on_a_final_invoice(
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id)
        base = plan_price(uow.conn, book.id, "20.00")
        uow.commit()
    subscribe(runtime, book, [base, price], "leaving")
    bill(runtime, book.id, JAN)
    move_clock(runtime, book.id, date(2026, 1, 20))
    send(runtime, book, [event("a", "leaving", "15000", "2026-01-10")])
    sub = only_subscription(runtime, book.id, date(2026, 1, 20))
    with unit_of_work(runtime.connection) as uow:
        cancel_subscription(uow.conn, book.id, sub, "period_end", date(2026, 1, 20))
        uow.commit()
    move_clock(runtime, book.id, FEB)
    assert bill(runtime, book.id, FEB).invoices_created == 1
    _, final = invoices_of(runtime, book.id)
    assert final.issue_date == FEB
    assert shape(final) == [("usage", D(15000), D("600.00"), JAN, FEB)]
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, final.id) == [
            ("Assets:Receivable:Trade", D("660.00")),
            ("Income:Usage", D("-600.00")),
            ("Liabilities:Tax-Payable", D("-60.00")),
        ]
    # Once: later runs find nothing more, and later usage is not billed.
    move_clock(runtime, book.id, date(2026, 3, 1))
    send(runtime, book, [event("b", "leaving", "5", "2026-02-03")])
    assert bill(runtime, book.id, date(2026, 3, 1)).invoices_created == 0
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []


def test_a_pause_mid_period_bills_the_usage_up_to_the_pause(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id)
        uow.commit()
    subscribe(runtime, book, [price], "pausing")
    move_clock(runtime, book.id, date(2026, 1, 20))
    send(runtime, book, [event("a", "pausing", "1000", "2026-01-10")])
    sub = only_subscription(runtime, book.id, date(2026, 1, 20))
    with unit_of_work(runtime.connection) as uow:
        pause_subscription(uow.conn, book.id, sub, date(2026, 1, 20))
        uow.commit()
    move_clock(runtime, book.id, FEB)
    send(runtime, book, [event("b", "pausing", "500", "2026-01-25")])  # after the pause
    assert bill(runtime, book.id, FEB).invoices_created == 1
    (final,) = invoices_of(runtime, book.id)
    assert final.issue_date == date(2026, 1, 20)
    assert shape(final) == [("usage", D(1000), D("100.00"), JAN, date(2026, 1, 20))]
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, final.id) == [
            ("Assets:Receivable:Trade", D("110.00")),
            ("Income:Usage", D("-100.00")),
            ("Liabilities:Tax-Payable", D("-10.00")),
        ]
    assert bill(runtime, book.id, FEB).invoices_created == 0


def test_a_telecom_subscription_canceled_now_bills_its_rated_cdrs_on_the_final_invoice(
    runtime: Runtime, client: Any
) -> None:
    book = make_book(runtime, "GBP", JAN15)
    sub = telecom_subscription(runtime, client, book)
    bill(runtime, book.id, JAN15)
    day = date(2026, 1, 25)
    move_clock(runtime, book.id, day)
    send_cdrs(
        client,
        book,
        [
            cdr("c1", "2026-01-20T10:00:00+00:00", "61", "+33123456789"),  # 1.42
            cdr("c2", "2026-01-26T10:00:00+00:00", "61", "+33123456789"),  # after: not billed
        ],
    )
    with unit_of_work(runtime.connection) as uow:
        cancel_subscription(uow.conn, book.id, sub["id"], "now", day)
        uow.commit()
    assert rate(client, book, date(2026, 1, 27))["rated"] == 2
    assert bill(runtime, book.id, day).invoices_created == 1
    final = next(
        i
        for i in invoices_of(runtime, book.id)
        if i.issue_date == day and i.lines[0].kind == "usage"
    )
    assert shape(final) == [("usage", D(1), D("1.42"), JAN15, day)]
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, final.id) == [
            ("Assets:Receivable:Trade", D("1.70")),  # 1.42 + 20 % (0.284 → 0.28)
            ("Assets:Receivable:Unbilled", D("-1.42")),
            ("Liabilities:Tax-Payable", D("-0.28")),
        ]
        # c2 stays accrued in Unbilled, rated but never invoiced (after the cancellation).
        assert verify_everything(conn, book.id) == []


def test_a_resume_in_the_same_period_bills_only_the_usage_after_the_pause(
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id)
        uow.commit()
    subscribe(runtime, book, [price], "back")
    move_clock(runtime, book.id, date(2026, 1, 20))
    send(runtime, book, [event("a", "back", "1000", "2026-01-10")])
    sub = only_subscription(runtime, book.id, date(2026, 1, 20))
    with unit_of_work(runtime.connection) as uow:
        pause_subscription(uow.conn, book.id, sub, date(2026, 1, 20))
        uow.commit()
    bill(runtime, book.id, date(2026, 1, 20))  # the final invoice: 1,000 units, 100.00
    move_clock(runtime, book.id, date(2026, 1, 25))
    with unit_of_work(runtime.connection) as uow:
        resume_subscription(uow.conn, book.id, sub, date(2026, 1, 25))
        uow.commit()
    move_clock(runtime, book.id, FEB)
    send(runtime, book, [event("b", "back", "500", "2026-01-27")])
    bill(runtime, book.id, FEB)
    final, february = invoices_of(runtime, book.id)
    assert shape(final) == [("usage", D(1000), D("100.00"), JAN, date(2026, 1, 20))]
    # From the pause on, as its own window (its tiers start again): 500 @ 0.10.
    assert shape(february) == [("usage", D(500), D("50.00"), date(2026, 1, 20), FEB)]
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []
