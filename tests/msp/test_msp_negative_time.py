"""A negative adjustment of time already invoiced, with nothing new to net it
against: the client is held (not invoiced, nothing of its share of the run
written), the other clients are invoiced, and later work absorbs the credit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from adapters.runtime import Runtime
from billing.postgres import msp
from tests.conftest import BookFixture
from tests.msp.test_msp_ledger import add_time, customer, tx


def _hourly(runtime: Runtime, book: BookFixture, client: str) -> msp.Contract:
    return tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, client, "time_and_materials", date(2026, 9, 1), {"hourly_rate": "100.00"}
        ),
    )


def test_a_client_below_zero_is_held_and_the_others_are_invoiced(
    runtime: Runtime, book: BookFixture
) -> None:
    harbor, dental = customer(runtime, book), customer(runtime, book, "Bay Clinic")
    held, other = _hourly(runtime, book, harbor), _hourly(runtime, book, dental)
    original = add_time(runtime, book, str(held.id), date(2026, 9, 3), 120)
    first = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    assert [line.amount for line in first.invoices[0].lines] == [Decimal("200.00")]
    spec = msp.TimeEntrySpec(
        person="",
        contract=str(held.id),
        date=date(2026, 10, 5),
        role="",
        minutes=-60,
        adjusts=str(original.id),
    )
    fix = tx(runtime, lambda c: msp.create_time_entry(c, book.id, spec))
    tx(runtime, lambda c: msp.approve_time_entry(c, book.id, str(fix.id), date(2026, 10, 5)))
    add_time(runtime, book, str(other.id), date(2026, 10, 6), 30)

    second = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 11, 1)))
    assert [(str(i.customer_id), i.total) for i in second.invoices] == [(dental, Decimal("50.00"))]
    assert second.held_below_zero == {harbor: Decimal("-100.00")}
    assert msp_status(runtime, book, fix.id) == "approved"  # still to bill

    add_time(runtime, book, str(held.id), date(2026, 11, 2), 180)
    third = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 12, 1)))
    assert [(str(i.customer_id), [line.amount for line in i.lines]) for i in third.invoices] == [
        (harbor, [Decimal("-100.00"), Decimal("300.00")])
    ]
    assert third.held_below_zero == {}
    assert msp_status(runtime, book, fix.id) == "invoiced"


def msp_status(runtime: Runtime, book: BookFixture, entry_id: object) -> str:
    return tx(runtime, lambda c: msp.get_time_entry(c, book.id, str(entry_id))).status
