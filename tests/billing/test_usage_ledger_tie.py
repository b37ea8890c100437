"""A month of SaaS usage and a month of CDRs, accrued at the month end and invoiced
the next day: `verify` passes, Unbilled is what was accrued and then empties, and the
Beancount export loads and matches the trial balance at each month end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from adapters.exports.beancount import ExportRange
from adapters.runtime import Runtime
from adapters.services import verify_everything
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_subscriptions import bill, move_clock
from tests.billing.test_telecom_subscriptions import cdr, send_cdrs, telecom_subscription
from tests.billing.test_usage_billing import event, send, subscribe, usage_price
from tests.conftest import make_book
from tests.integration.http_fixtures import auth, open_client
from tests.integration.test_exports_beancount import assert_round_trip

D = Decimal
JAN = date(2026, 1, 1)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def by_currency(runtime: Runtime, book_id: uuid.UUID, day: date) -> dict[Any, Decimal]:
    with runtime.connection() as conn:
        lines = trial_balance_as_of(conn, book_id, day)
    return {(line.account, line.currency): line.balance for line in lines}


def test_a_month_of_usage_and_cdrs_ties_to_the_ledger_and_the_beancount_export(
    runtime: Runtime, client: Any
) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id)
        uow.commit()
    subscribe(runtime, book, [price], "saas")
    telecom_subscription(runtime, client, book)  # GBP, from Jan 1
    bill(runtime, book.id, JAN)
    move_clock(runtime, book.id, date(2026, 1, 31))
    days = [JAN + timedelta(days=n) for n in range(31)]
    send(runtime, book, [event(f"e{d.day}", "saas", "500", d.isoformat()) for d in days])
    send_cdrs(
        client,
        book,
        [cdr(f"c{d.day}", f"{d.isoformat()}T10:00:00+00:00", "125") for d in days],
    )
    key = auth(book.admin_key)
    accrual = client.post("/v1/usage-accruals", json={"as_of": "2026-01-31"}, headers=key)
    assert accrual.status_code == 201, accrual.text
    body = accrual.json()
    # 15,500 units graduated: 1,000 @ 0.10 + 9,000 @ 0.05 + 5,500 @ 0.01.
    assert body["accrued"] == {"USD": "605.00"}
    assert body["cdrs_rated"] == 31
    cdr_total = D(body["cdr_amounts"]["GBP"])
    assert cdr_total > 0  # the 300 s allowance covers only the first calls
    unbilled = "Assets:Receivable:Unbilled"
    jan31 = by_currency(runtime, book.id, date(2026, 1, 31))
    assert (jan31[(unbilled, "USD")], jan31[(unbilled, "GBP")]) == (D("605.00"), cdr_total)

    move_clock(runtime, book.id, date(2026, 2, 1))
    assert bill(runtime, book.id, date(2026, 2, 1)).invoices_created == 2
    after = by_currency(runtime, book.id, date(2026, 2, 1))
    assert after.get((unbilled, "USD"), 0) == after.get((unbilled, "GBP"), 0) == 0
    assert after[("Income:Usage", "USD")] == D("-605.00")
    assert after[("Income:Usage", "GBP")] == -cdr_total
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []
    move_clock(runtime, book.id, date(2026, 2, 28))
    assert_round_trip(runtime, book.id, JAN, date(2026, 2, 28), ExportRange())
