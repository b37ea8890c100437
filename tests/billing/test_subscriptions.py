"""Subscriptions: the pure rules, then worked examples on PostgreSQL.

Each worked example runs on a book with a simulated clock, bills through the
same code as the billing run, and checks the invoice lines and the postings.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date
from decimal import Decimal

import psycopg
import pytest

from adapters.invoice_document import (
    credit_note_document,
    document_parties,
    render_invoice_html,
)
from adapters.runtime import Runtime
from billing.discounts import AmountDiscount, PercentDiscount
from billing.errors import DocumentState, InvalidBillingRequest
from billing.periods import Interval, Period
from billing.postgres import billing_runs
from billing.postgres.catalog import PriceSpec, create_price, create_product, get_price
from billing.postgres.credit_notes import create_credit_note
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import (
    Invoice,
    LineSpec,
    create_draft,
    finalize_invoice,
    get_invoice,
    list_invoices,
    void_invoice,
)
from billing.postgres.payments import create_payment
from billing.postgres.subscriptions import (
    CouponSpec,
    ItemSpec,
    SubscriptionSpec,
    cancel_subscription,
    change_subscription,
    create_coupon,
    create_subscription,
    get_subscription,
    pause_subscription,
    resume_subscription,
)
from billing.rating import FlatCharge, PerUnitCharge
from billing.recognition import recognized_through
from billing.subscriptions import (
    Coupon,
    CouponDuration,
    Item,
    Plan,
    SubscriptionStatus,
    cancellation_credits,
    change_lines,
    credit_parts,
    cycle_period,
    due_periods,
    period_lines,
    share,
    status_on,
)
from ledger.money import Money
from ledger.postgres.books import set_clock
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book

D = Decimal
MONTHLY = Plan(date(2026, 4, 1), Interval.MONTH)


def usd(amount: str) -> Money:
    return Money(D(amount), "USD")


def flat(price: str, name: str = "Plan", currency: str = "USD") -> Item:
    return Item(f"price_{price}", name, FlatCharge(currency, D(price)), D(1))


# --- pure rules ----------------------------------------------------------------------


def test_golden_upgrade_gives_minus_30_and_plus_40_and_april_revenue_100() -> None:
    plan = Plan(date(2026, 4, 1), Interval.MONTH, items=(flat("90.00"),))
    april = Period(date(2026, 4, 1), date(2026, 5, 1))
    [charge] = period_lines(plan, april)
    lines = change_lines(plan, [flat("120.00")], april, date(2026, 4, 21))
    assert [(line.amount, line.service) for line in lines] == [
        (usd("-30.00"), Period(date(2026, 4, 21), date(2026, 5, 1))),
        (usd("40.00"), Period(date(2026, 4, 21), date(2026, 5, 1))),
    ]
    assert charge.amount == usd("90.00") and charge.service == april
    revenue = sum(
        (
            recognized_through(line.amount, line.service, date(2026, 4, 30))
            for line in [charge, *lines]
        ),
        usd("0"),
    )
    assert revenue == usd("100.00")


def test_unchanged_items_give_no_proration_and_quantity_changes_do() -> None:
    seats = Item("seat", "Seats", PerUnitCharge("USD", D("10.00")), D(3))
    base = flat("50.00", "Base")
    plan = Plan(date(2026, 4, 1), Interval.MONTH, items=(base, seats))
    april = Period(date(2026, 4, 1), date(2026, 5, 1))
    more = Item("seat", "Seats", PerUnitCharge("USD", D("10.00")), D(6))
    lines = change_lines(plan, [base, more], april, date(2026, 4, 16))
    assert [line.amount for line in lines] == [usd("-15.00"), usd("30.00")]
    assert change_lines(plan, [base, seats], april, date(2026, 4, 16)) == []
    with pytest.raises(InvalidBillingRequest, match="outside the current billing period"):
        change_lines(plan, [base], april, date(2026, 5, 1))


def test_per_unit_full_period_line_shows_quantity_and_unit_price() -> None:
    seats = Item("seat", "Seats", PerUnitCharge("USD", D("9.99")), D(3))
    [line] = period_lines(Plan(date(2026, 4, 1), Interval.MONTH, items=(seats,)), cycle_april())
    assert (line.quantity, line.unit_amount, line.amount) == (D(3), D("9.99"), usd("29.97"))


def cycle_april() -> Period:
    return Period(date(2026, 4, 1), date(2026, 5, 1))


def test_anchor_on_jan_31_keeps_the_day_and_stubs_are_charged_by_day() -> None:
    plan = Plan(date(2026, 1, 31), Interval.MONTH, items=(flat("31.00"),))
    periods = due_periods(plan, date(2026, 1, 31), date(2026, 3, 31))
    assert [(p.start, p.end) for p in periods] == [
        (date(2026, 1, 31), date(2026, 2, 28)),
        (date(2026, 2, 28), date(2026, 3, 31)),
        (date(2026, 3, 31), date(2026, 4, 30)),
    ]
    assert cycle_period(plan.anchor, plan.interval, 1, date(2026, 3, 1)) == Period(
        date(2026, 2, 28), date(2026, 3, 31)
    )
    # A start between anchor dates: a stub up to the next one, charged by day.
    stub = Period(date(2026, 1, 15), date(2026, 1, 31))
    full = Period(date(2025, 12, 31), date(2026, 1, 31))
    assert share(usd("31.00"), full, stub) == usd("16.00")
    assert period_lines(plan, stub)[0].amount == usd("16.00")


def test_cancellation_cuts_the_period_and_credits_the_unused_part() -> None:
    plan = Plan(
        date(2026, 4, 1), Interval.MONTH, cancel_at=date(2026, 4, 11), items=(flat("90.00"),)
    )
    assert plan.period_from(date(2026, 4, 1)) == Period(date(2026, 4, 1), date(2026, 4, 11))
    assert plan.period_from(date(2026, 4, 11)) is None
    [used] = period_lines(plan, Period(date(2026, 4, 1), date(2026, 4, 11)))
    assert used.amount == usd("30.00")
    open_plan = Plan(date(2026, 4, 1), Interval.MONTH, items=(flat("90.00"),))
    [credit] = cancellation_credits(open_plan, cycle_april(), date(2026, 4, 11))
    assert (credit.amount, credit.service) == (
        usd("-60.00"),
        Period(date(2026, 4, 11), date(2026, 5, 1)),
    )
    assert cancellation_credits(open_plan, cycle_april(), date(2026, 5, 1)) == []


def test_coupons_once_repeating_forever() -> None:
    plan = Plan(date(2026, 4, 1), Interval.MONTH, items=(flat("60.00"), flat("30.00", "Add-on")))
    once = Coupon(PercentDiscount(D(10)), CouponDuration.ONCE)
    lines = period_lines(plan, cycle_april(), coupon=once, paid_index=0)
    assert [line.discount for line in lines] == [usd("6.00"), usd("3.00")]
    assert all(
        line.discount is None
        for line in period_lines(plan, cycle_april(), coupon=once, paid_index=1)
    )
    repeating = Coupon(AmountDiscount(usd("10.00")), CouponDuration.REPEATING, 2)
    assert [
        line.discount for line in period_lines(plan, cycle_april(), coupon=repeating, paid_index=1)
    ] == [
        usd("6.67"),
        usd("3.33"),
    ]
    assert period_lines(plan, cycle_april(), coupon=repeating, paid_index=2)[0].discount is None
    forever = Coupon(PercentDiscount(D(50)), CouponDuration.FOREVER)
    assert period_lines(plan, cycle_april(), coupon=forever, paid_index=99)[0].discount == usd(
        "30.00"
    )


def test_status_is_derived_from_dates_and_overdue_invoices() -> None:
    day = date(2026, 4, 10)
    kw: dict[str, date | None] = {"trial_end": None, "cancel_at": None, "paused_on": None}
    assert status_on(day, **kw, overdue=False) is SubscriptionStatus.ACTIVE
    assert status_on(day, **kw, overdue=True) is SubscriptionStatus.PAST_DUE
    assert (
        status_on(day, **{**kw, "trial_end": date(2026, 4, 11)}, overdue=False)
        is SubscriptionStatus.TRIALING
    )
    assert status_on(day, **{**kw, "paused_on": day}, overdue=True) is SubscriptionStatus.PAUSED
    assert status_on(day, **{**kw, "cancel_at": day}, overdue=True) is SubscriptionStatus.CANCELED
    assert (
        status_on(day, **{**kw, "cancel_at": date(2026, 4, 11)}, overdue=False)
        is SubscriptionStatus.ACTIVE
    )


# --- helpers for the worked examples (also used by the other subscription tests) ------


def plan_price(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    amount: str,
    *,
    currency: str = "USD",
    interval: str | None = "month",
    count: int = 1,
    model: str = "flat",
    name: str = "Pro plan",
) -> str:
    product = create_product(conn, book_id, name)
    price = create_price(
        conn,
        book_id,
        PriceSpec(
            str(product.id),
            currency,
            model,
            unit_amount=D(amount),
            interval=interval,
            interval_count=count,
        ),
    )
    return str(price.id)


def customer(
    conn: psycopg.Connection, book_id: uuid.UUID, currency: str = "USD", **kw: object
) -> str:
    created, _ = upsert_customer(conn, book_id, CustomerSpec("Acme", currency, **kw))  # type: ignore[arg-type]
    return str(created.id)


def move_clock(runtime: Runtime, book_id: uuid.UUID, day: date) -> None:
    with unit_of_work(runtime.connection) as uow:
        set_clock(uow.conn, book_id, day)
        uow.commit()


def bill(runtime: Runtime, book_id: uuid.UUID, as_of: date) -> billing_runs.BillingRun:
    return billing_runs.run_billing(runtime.connection, book_id, as_of, as_of, batch_size=50)


def invoices_of(runtime: Runtime, book_id: uuid.UUID) -> list[Invoice]:
    with runtime.connection() as conn:
        found = list_invoices(conn, book_id, limit=1000)
        return sorted(
            (get_invoice(conn, book_id, str(i.id)) for i in found),
            key=lambda i: (i.number or "~", i.created_at),
        )


def balances(runtime: Runtime, book_id: uuid.UUID, day: date) -> dict[str, Decimal]:
    with runtime.connection() as conn:
        return {line.account: line.balance for line in trial_balance_as_of(conn, book_id, day)}


def line_amounts(invoice: Invoice) -> list[tuple[Decimal, date | None, date | None]]:
    return [(line.amount, line.service_start, line.service_end) for line in invoice.lines]


def subscribe(
    runtime: Runtime,
    book: BookFixture,
    amount: str = "90.00",
    start: date = date(2026, 4, 1),
    **kw: object,
) -> tuple[str, str]:
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, amount)
        who = customer(uow.conn, book.id)
        sub = create_subscription(
            uow.conn,
            book.id,
            SubscriptionSpec(who, [ItemSpec(price)], start_date=start, **kw),  # type: ignore[arg-type]
            start,
        )
        uow.commit()
    return str(sub.id), who


@pytest.fixture
def april_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 4, 1))


# --- worked examples -----------------------------------------------------------------


def test_upgrade_invoiced_now_posts_the_proration_to_deferred_revenue(
    runtime: Runtime, april_book: BookFixture
) -> None:
    book = april_book
    sub_id, _ = subscribe(runtime, book)
    assert bill(runtime, book.id, date(2026, 4, 1)).invoices_created == 1
    move_clock(runtime, book.id, date(2026, 4, 21))
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "120.00", name="Business plan")
        sub, invoice = change_subscription(
            uow.conn,
            book.id,
            sub_id,
            [ItemSpec(price)],
            date(2026, 4, 21),
            "invoice_now",
            date(2026, 4, 21),
        )
        uow.commit()
    assert invoice is not None and invoice.number == "INV-2026-000002"
    assert line_amounts(invoice) == [
        (D("-30.00"), date(2026, 4, 21), date(2026, 5, 1)),
        (D("40.00"), date(2026, 4, 21), date(2026, 5, 1)),
    ]
    assert (invoice.total, invoice.amount_due, invoice.issue_date) == (
        D("10.00"),
        D("10.00"),
        date(2026, 4, 21),
    )
    assert balances(runtime, book.id, date(2026, 4, 30)) == {
        "Assets:Receivable:Trade": D("100.00"),
        "Liabilities:Deferred-Revenue": D("-100.00"),
    }
    # April's revenue from the three lines, recognized ratably by day.
    first = invoices_of(runtime, book.id)[0]
    lines = [*first.lines, *invoice.lines]
    assert sum(
        (
            recognized_through(
                Money(line.amount, "USD"),
                Period(line.service_start, line.service_end),  # type: ignore[arg-type]
                date(2026, 4, 30),
            )
            for line in lines
        ),
        usd("0"),
    ) == usd("100.00")
    # The next period bills the new plan.
    move_clock(runtime, book.id, date(2026, 5, 1))
    bill(runtime, book.id, date(2026, 5, 1))
    may = invoices_of(runtime, book.id)[-1]
    assert line_amounts(may) == [(D("120.00"), date(2026, 5, 1), date(2026, 6, 1))]
    assert sub.items[0].effective_from == date(2026, 4, 21)


def test_proration_carried_to_the_next_invoice(runtime: Runtime, april_book: BookFixture) -> None:
    book = april_book
    sub_id, _ = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))
    move_clock(runtime, book.id, date(2026, 4, 21))
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "120.00")
        _, pending = change_subscription(
            uow.conn, book.id, sub_id, [ItemSpec(price)], None, "next_invoice", date(2026, 4, 21)
        )
        uow.commit()
    assert (
        pending is not None
        and pending.status == "draft"
        and pending.metadata == {"pending": "next_invoice"}
    )
    # Nothing posted yet for the proration.
    assert balances(runtime, book.id, date(2026, 4, 30))["Assets:Receivable:Trade"] == D("90.00")
    move_clock(runtime, book.id, date(2026, 5, 1))
    bill(runtime, book.id, date(2026, 5, 1))
    invoices = invoices_of(runtime, book.id)
    assert [i.number for i in invoices] == ["INV-2026-000001", "INV-2026-000002"]  # draft gone
    may = invoices[-1]
    assert line_amounts(may) == [
        (D("120.00"), date(2026, 5, 1), date(2026, 6, 1)),
        (D("-30.00"), date(2026, 4, 21), date(2026, 5, 1)),
        (D("40.00"), date(2026, 4, 21), date(2026, 5, 1)),
    ]
    assert may.total == D("130.00")
    assert [line.kind for line in may.lines] == ["subscription", "proration", "proration"]


def test_proration_none_changes_items_only(runtime: Runtime, april_book: BookFixture) -> None:
    book = april_book
    sub_id, _ = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "120.00")
        _, invoice = change_subscription(
            uow.conn,
            book.id,
            sub_id,
            [ItemSpec(price, D(2))],
            date(2026, 4, 1),
            "none",
            date(2026, 4, 1),
        )
        uow.commit()
    assert invoice is None
    assert len(invoices_of(runtime, book.id)) == 1


def test_cancel_now_credits_unused_time_on_the_unpaid_invoice(
    runtime: Runtime, april_book: BookFixture
) -> None:
    book = april_book
    sub_id, _ = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))
    move_clock(runtime, book.id, date(2026, 4, 11))
    with unit_of_work(runtime.connection) as uow:
        sub, issued = cancel_subscription(uow.conn, book.id, sub_id, "now", date(2026, 4, 11))
        uow.commit()
    assert sub.status is SubscriptionStatus.CANCELED and sub.cancel_at == date(2026, 4, 11)
    # No negative invoice: a credit note on April's invoice, which still owes it all.
    assert isinstance(issued, tuple)
    [note] = issued
    [april] = invoices_of(runtime, book.id)
    assert (note.number, note.invoice_id, note.total, note.credit_to) == (
        "CN-2026-000001",
        april.id,
        D("60.00"),
        "receivable",
    )
    assert entry_postings(runtime, note.entry_id) == [
        ("Assets:Receivable:Trade", D("-60.00")),
        ("Liabilities:Deferred-Revenue", D("60.00")),
    ]
    assert (april.amount_credited, april.amount_due) == (D("60.00"), D("30.00"))
    assert balances(runtime, book.id, date(2026, 4, 30)) == {
        "Assets:Receivable:Trade": D("30.00"),
        "Liabilities:Deferred-Revenue": D("-30.00"),
    }
    # Nothing more is billed, and a second cancel is refused.
    move_clock(runtime, book.id, date(2026, 6, 1))
    assert bill(runtime, book.id, date(2026, 6, 1)).invoices_created == 0
    with unit_of_work(runtime.connection) as uow, pytest.raises(DocumentState):
        cancel_subscription(uow.conn, book.id, sub_id, "now", date(2026, 6, 1))


def test_cancel_at_period_end_and_at_a_later_date(
    runtime: Runtime, april_book: BookFixture
) -> None:
    book = april_book
    end_id, _ = subscribe(runtime, book)
    later_id, _ = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))
    with unit_of_work(runtime.connection) as uow:
        sub, final = cancel_subscription(uow.conn, book.id, end_id, "period_end", date(2026, 4, 1))
        assert sub.status is SubscriptionStatus.ACTIVE and sub.cancel_at == date(2026, 5, 1)
        assert final is None
        sub, final = cancel_subscription(
            uow.conn, book.id, later_id, "2026-05-11", date(2026, 4, 1)
        )
        assert final is None and sub.cancel_at == date(2026, 5, 11)
        with pytest.raises(InvalidBillingRequest, match="past"):
            cancel_subscription(uow.conn, book.id, later_id, "2026-03-31", date(2026, 4, 1))
        uow.commit()
    move_clock(runtime, book.id, date(2026, 7, 1))
    bill(runtime, book.id, date(2026, 7, 1))
    by_sub: dict[str, list[Invoice]] = {}
    for invoice in invoices_of(runtime, book.id):
        by_sub.setdefault(str(invoice.subscription_id), []).append(invoice)
    assert [line_amounts(i) for i in by_sub[end_id]] == [
        [(D("90.00"), date(2026, 4, 1), date(2026, 5, 1))]
    ]
    # May 1 → May 11 of a 31-day May: 90.00 × 10 / 31 = 29.03.
    assert [line_amounts(i) for i in by_sub[later_id]] == [
        [(D("90.00"), date(2026, 4, 1), date(2026, 5, 1))],
        [(D("29.03"), date(2026, 5, 1), date(2026, 5, 11))],
    ]
    with runtime.connection() as conn:
        assert (
            get_subscription(conn, book.id, later_id, date(2026, 7, 1)).status
            is SubscriptionStatus.CANCELED
        )


def test_trial_charges_nothing_until_trial_end(runtime: Runtime, april_book: BookFixture) -> None:
    book = april_book
    sub_id, _ = subscribe(runtime, book, trial_end=date(2026, 4, 15))
    with runtime.connection() as conn:
        sub = get_subscription(conn, book.id, sub_id, date(2026, 4, 1))
    assert sub.status is SubscriptionStatus.TRIALING and sub.billing_anchor == date(2026, 4, 15)
    assert bill(runtime, book.id, date(2026, 4, 14)).invoices_created == 0
    move_clock(runtime, book.id, date(2026, 5, 15))
    bill(runtime, book.id, date(2026, 5, 15))
    assert [line_amounts(i) for i in invoices_of(runtime, book.id)] == [
        [(D("90.00"), date(2026, 4, 15), date(2026, 5, 15))],
        [(D("90.00"), date(2026, 5, 15), date(2026, 6, 15))],
    ]
    with runtime.connection() as conn:
        assert (
            get_subscription(conn, book.id, sub_id, date(2026, 5, 15)).status
            is SubscriptionStatus.ACTIVE
        )


def test_trial_with_an_anchor_bills_a_stub_first(runtime: Runtime, april_book: BookFixture) -> None:
    book = april_book
    subscribe(runtime, book, trial_end=date(2026, 4, 15), billing_anchor=date(2026, 5, 1))
    bill(runtime, book.id, date(2026, 4, 15))
    # 90.00 × 16 / 30 for Apr 15 → May 1.
    assert [line_amounts(i) for i in invoices_of(runtime, book.id)] == [
        [(D("48.00"), date(2026, 4, 15), date(2026, 5, 1))]
    ]


def test_pause_and_resume_on_the_same_anchor(runtime: Runtime, april_book: BookFixture) -> None:
    book = april_book
    sub_id, _ = subscribe(runtime, book)
    move_clock(runtime, book.id, date(2026, 4, 10))
    with unit_of_work(runtime.connection) as uow:
        sub = pause_subscription(uow.conn, book.id, sub_id, date(2026, 4, 10))  # catches up April
        uow.commit()
    assert sub.status is SubscriptionStatus.PAUSED
    move_clock(runtime, book.id, date(2026, 6, 11))
    assert bill(runtime, book.id, date(2026, 6, 11)).invoices_created == 0  # May skipped
    with unit_of_work(runtime.connection) as uow, pytest.raises(DocumentState):
        change_subscription(uow.conn, book.id, sub_id, [], None, "none", date(2026, 6, 11))
    with unit_of_work(runtime.connection) as uow:
        sub = resume_subscription(uow.conn, book.id, sub_id, date(2026, 6, 11))
        uow.commit()
    # April's invoice (due May 1) is unpaid: the resumed subscription reads as past due.
    assert sub.status is SubscriptionStatus.PAST_DUE and sub.next_period_start == date(2026, 6, 11)
    move_clock(runtime, book.id, date(2026, 7, 1))
    bill(runtime, book.id, date(2026, 7, 1))
    # June 11 → July 1 of a 30-day June: 90.00 × 20 / 30 = 60.00; then July in full.
    assert [line_amounts(i) for i in invoices_of(runtime, book.id)] == [
        [(D("90.00"), date(2026, 4, 1), date(2026, 5, 1))],
        [(D("60.00"), date(2026, 6, 11), date(2026, 7, 1))],
        [(D("90.00"), date(2026, 7, 1), date(2026, 8, 1))],
    ]


def test_coupon_repeating_two_periods(runtime: Runtime, april_book: BookFixture) -> None:
    book = april_book
    with unit_of_work(runtime.connection) as uow:
        coupon = create_coupon(
            uow.conn,
            book.id,
            CouponSpec("TWO", "repeating", percent_off=D(10), duration_in_periods=2),
        )
        uow.commit()
    subscribe(runtime, book, coupon=str(coupon))
    move_clock(runtime, book.id, date(2026, 6, 1))
    bill(runtime, book.id, date(2026, 6, 1))
    invoices = invoices_of(runtime, book.id)
    assert [(i.subtotal, i.discount_total, i.total) for i in invoices] == [
        (D("90.00"), D("9.00"), D("81.00")),
        (D("90.00"), D("9.00"), D("81.00")),
        (D("90.00"), D("0.00"), D("90.00")),
    ]
    assert balances(runtime, book.id, date(2026, 6, 1))["Assets:Receivable:Trade"] == D("252.00")


def test_past_due_when_an_invoice_is_overdue(runtime: Runtime, april_book: BookFixture) -> None:
    book = april_book
    sub_id, _ = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))  # due May 1 (net 30)
    with runtime.connection() as conn:
        assert (
            get_subscription(conn, book.id, sub_id, date(2026, 5, 1)).status
            is SubscriptionStatus.ACTIVE
        )
        assert (
            get_subscription(conn, book.id, sub_id, date(2026, 5, 2)).status
            is SubscriptionStatus.PAST_DUE
        )


def test_tax_and_per_customer_override(runtime: Runtime, april_book: BookFixture) -> None:
    book = april_book
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "100.00")
        who = customer(uow.conn, book.id, tax_rate=D("0.10"))
        original = get_price(uow.conn, book.id, price)
        create_price(
            uow.conn,
            book.id,
            PriceSpec(
                str(original.product_id),
                "USD",
                "flat",
                unit_amount=D("80.00"),
                interval="month",
                customer=who,
                overrides_price=price,
            ),
        )
        create_subscription(
            uow.conn, book.id, SubscriptionSpec(who, [ItemSpec(price)]), date(2026, 4, 1)
        )
        uow.commit()
    bill(runtime, book.id, date(2026, 4, 1))
    [invoice] = invoices_of(runtime, book.id)
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (
        D("80.00"),
        D("8.00"),
        D("88.00"),
    )
    assert balances(runtime, book.id, date(2026, 4, 1)) == {
        "Assets:Receivable:Trade": D("88.00"),
        "Liabilities:Deferred-Revenue": D("-80.00"),
        "Liabilities:Tax-Payable": D("-8.00"),
    }


def test_customer_credit_is_applied_to_the_next_period(
    runtime: Runtime, april_book: BookFixture
) -> None:
    book = april_book
    sub_id, who = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))
    pay(runtime, book.id, who, "90.00", date(2026, 4, 1))
    move_clock(runtime, book.id, date(2026, 4, 21))
    with unit_of_work(runtime.connection) as uow:
        cheaper = plan_price(uow.conn, book.id, "60.00", name="Basic plan")
        _, issued = change_subscription(
            uow.conn, book.id, sub_id, [ItemSpec(cheaper)], None, "invoice_now", date(2026, 4, 21)
        )
        uow.commit()
    # -30.00 + 20.00: April is paid, so the 10.00 credit note is kept as customer credit.
    assert isinstance(issued, tuple)
    assert [(n.total, n.credit_to) for n in issued] == [(D("10.00"), "customer_credit")]
    move_clock(runtime, book.id, date(2026, 5, 1))
    bill(runtime, book.id, date(2026, 5, 1))
    may = invoices_of(runtime, book.id)[-1]
    assert (may.total, may.amount_paid, may.amount_due) == (D("60.00"), D("10.00"), D("50.00"))
    assert balances(runtime, book.id, date(2026, 4, 30))["Liabilities:Customer-Credit"] == D(
        "-10.00"
    )
    assert "Liabilities:Customer-Credit" not in balances(runtime, book.id, date(2026, 5, 1))


def pay(runtime: Runtime, book_id: uuid.UUID, who: str, amount: str, on: date) -> None:
    with unit_of_work(runtime.connection) as uow:
        create_payment(uow.conn, book_id, who, D(amount), "USD", "bank_transfer", on)
        uow.commit()


def entry_postings(runtime: Runtime, entry_id: uuid.UUID | None) -> list[tuple[str, Decimal]]:
    with runtime.connection() as conn:
        rows = conn.execute(
            "select a.name, p.amount from postings p"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where p.entry_id = %s order by a.name, p.amount",
            (entry_id,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def taxed_subscription(runtime: Runtime, book: BookFixture, rate: str) -> tuple[str, str]:
    """A 90.00 monthly plan from Apr 1 for a customer taxed at `rate`."""
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "90.00")
        who = customer(uow.conn, book.id, tax_rate=D(rate))
        sub = create_subscription(
            uow.conn, book.id, SubscriptionSpec(who, [ItemSpec(price)]), date(2026, 4, 1)
        )
        uow.commit()
    return str(sub.id), who


def test_credits_net_per_price_and_charges_reduce_them_pro_rata() -> None:
    rest = Period(date(2026, 4, 21), date(2026, 5, 1))
    seats_old = Item("seat", "Seats", PerUnitCharge("USD", D("10.00")), D(6))
    seats_new = Item("seat", "Seats", PerUnitCharge("USD", D("10.00")), D(3))
    plan = Plan(date(2026, 4, 1), Interval.MONTH, items=(flat("90.00"), seats_old))
    lines = change_lines(plan, [flat("30.00", "Lite"), seats_new], cycle_april(), rest.start)
    # Plan −30.00, seats −20.00 (6) +10.00 (3), Lite +10.00: a net credit of 30.00.
    assert sorted(line.amount.amount for line in lines) == [D(-30), D(-20), D(10), D(10)]
    parts = credit_parts(lines)
    # Seats net to −10.00; the 10.00 Lite charge comes off 30 : 10 → 7.50 and 2.50.
    assert [(p.price_id, p.service, p.amount) for p in parts] == [
        ("price_90.00", rest, usd("22.50")),
        ("seat", rest, usd("7.50")),
    ]
    upgrade = change_lines(plan, [flat("120.00"), seats_old], cycle_april(), rest.start)
    assert credit_parts(upgrade) == []


def test_cancellation_of_a_paid_plan_is_a_credit_note_applied_to_open_invoices(
    runtime: Runtime, april_book: BookFixture
) -> None:
    book = april_book
    sub, who = taxed_subscription(runtime, book, "0.08")
    bill(runtime, book.id, date(2026, 4, 1))
    pay(runtime, book.id, who, "97.20", date(2026, 4, 1))
    move_clock(runtime, book.id, date(2026, 4, 5))
    with unit_of_work(runtime.connection) as uow:
        draft = create_draft(uow.conn, book.id, who, [LineSpec("Setup", D(1), D("20.00"))])
        assert draft is not None
        setup = finalize_invoice(uow.conn, book.id, str(draft.id), date(2026, 4, 5))
        uow.commit()
    assert setup.amount_due == D("21.60")
    move_clock(runtime, book.id, date(2026, 4, 11))
    with unit_of_work(runtime.connection) as uow:
        _, issued = cancel_subscription(uow.conn, book.id, sub, "now", date(2026, 4, 11))
        uow.commit()
    assert isinstance(issued, tuple)
    [note] = issued
    april = invoices_of(runtime, book.id)[0]
    # 20 unused days of 30: 60.00 net, its tax at the invoice's 8 %: 4.80.
    assert (note.number, note.invoice_id, note.net_amount, note.tax_amount, note.total) == (
        "CN-2026-000001",
        april.id,
        D("60.00"),
        D("4.80"),
        D("64.80"),
    )
    assert note.credit_to == "customer_credit"  # April is paid
    assert entry_postings(runtime, note.entry_id) == [
        ("Liabilities:Customer-Credit", D("-64.80")),
        ("Liabilities:Deferred-Revenue", D("60.00")),
        ("Liabilities:Tax-Payable", D("4.80")),
    ]
    # The credit settles the open setup invoice; the rest stays customer credit.
    with runtime.connection() as conn:
        setup = get_invoice(conn, book.id, str(setup.id))
        applied = conn.execute(
            "select entry_id from postings where book_id = %s and document = %s"
            " and dimensions->>'via' like 'credit:%%' limit 1",
            (book.id, f"invoice:{setup.id}"),
        ).fetchone()
    assert (setup.status, setup.amount_paid, setup.amount_due) == ("paid", D("21.60"), D("0.00"))
    assert applied is not None
    assert entry_postings(runtime, applied[0]) == [
        ("Assets:Receivable:Trade", D("-21.60")),
        ("Liabilities:Customer-Credit", D("21.60")),
    ]
    assert [i.number for i in invoices_of(runtime, book.id)] == [
        "INV-2026-000001",
        "INV-2026-000002",
    ]  # no invoice for the credit
    assert balances(runtime, book.id, date(2026, 4, 30)) == {
        "Assets:Bank:Operating": D("97.20"),
        "Income:Services": D("-20.00"),
        "Liabilities:Customer-Credit": D("-43.20"),
        "Liabilities:Deferred-Revenue": D("-30.00"),
        "Liabilities:Tax-Payable": D("-4.00"),
    }


def test_downgrade_on_an_unpaid_invoice_is_a_credit_note_on_its_receivable(
    runtime: Runtime, april_book: BookFixture
) -> None:
    book = april_book
    sub, _ = taxed_subscription(runtime, book, "0.10")
    bill(runtime, book.id, date(2026, 4, 1))
    move_clock(runtime, book.id, date(2026, 4, 21))
    # The same with next_invoice (rolled back): a credit never waits for the next invoice.
    for mode in ("next_invoice", "invoice_now"):
        with unit_of_work(runtime.connection) as uow:
            cheaper = plan_price(uow.conn, book.id, "60.00", name="Basic plan")
            _, issued = change_subscription(
                uow.conn, book.id, sub, [ItemSpec(cheaper)], None, mode, date(2026, 4, 21)
            )
            assert isinstance(issued, tuple) and [n.total for n in issued] == [D("11.00")]
            if mode == "invoice_now":
                uow.commit()
    assert isinstance(issued, tuple)
    [note] = issued
    [april] = invoices_of(runtime, book.id)  # and no pending draft either
    # −30.00 + 20.00 = 10.00 net off April's line, its 10 % tax 1.00.
    assert (note.number, note.invoice_id, note.total, note.credit_to) == (
        "CN-2026-000001",
        april.id,
        D("11.00"),
        "receivable",
    )
    assert note.lines == [
        {"line_no": 1, "net": "10.00", "tax": "1.00", "earned": "0.00", "unearned": "10.00"}
    ]
    assert entry_postings(runtime, note.entry_id) == [
        ("Assets:Receivable:Trade", D("-11.00")),
        ("Liabilities:Deferred-Revenue", D("10.00")),
        ("Liabilities:Tax-Payable", D("1.00")),
    ]
    assert (april.total, april.amount_credited, april.amount_due, april.status) == (
        D("99.00"),
        D("11.00"),
        D("88.00"),
        "open",
    )
    assert balances(runtime, book.id, date(2026, 4, 30)) == {
        "Assets:Receivable:Trade": D("88.00"),
        "Liabilities:Deferred-Revenue": D("-80.00"),
        "Liabilities:Tax-Payable": D("-8.00"),
    }
    # Its document is titled as what it is, and names the invoice it credits.
    with runtime.connection() as conn:
        html = credit_note_document(conn, book.id, note.number)
        seller, buyer, treatment = document_parties(conn, book.id, april.customer_id)
    assert "<h1>Credit note CN-2026-000001</h1>" in html and "<h1>Invoice" not in html
    assert "<th>Credits invoice</th><td>INV-2026-000001</td>" in html
    assert '<td class="num">$11.00</td>' in html  # the book's locale: en_US by default
    assert "Deducted from the amount due on invoice INV-2026-000001." in html
    # A negative invoice issued by older code prints as a credit note too.
    legacy = render_invoice_html(replace(april, total=D("-10.00")), seller, buyer, treatment)
    assert "<h1>Credit note INV-2026-000001</h1>" in legacy
    move_clock(runtime, book.id, date(2026, 5, 1))
    bill(runtime, book.id, date(2026, 5, 1))
    assert [(i.number, i.total) for i in invoices_of(runtime, book.id)] == [
        ("INV-2026-000001", D("99.00")),
        ("INV-2026-000002", D("66.00")),
    ]


def test_a_one_off_invoice_cannot_total_below_zero(
    runtime: Runtime, april_book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        who = customer(uow.conn, april_book.id)
        draft = create_draft(
            uow.conn,
            april_book.id,
            who,
            [LineSpec("Goodwill", D(1), D("-5.00")), LineSpec("Setup", D(1), D("2.00"))],
        )
        assert draft is not None
        with pytest.raises(InvalidBillingRequest, match="cannot total below zero"):
            finalize_invoice(uow.conn, april_book.id, str(draft.id), date(2026, 4, 1))


def test_a_cancellation_credits_no_more_than_the_invoice_line_still_holds(
    runtime: Runtime, april_book: BookFixture
) -> None:
    book = april_book
    credited_id, _ = subscribe(runtime, book)
    voided_id, _ = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))
    credited, voided = (
        next(i for i in invoices_of(runtime, book.id) if str(i.subscription_id) == ref)
        for ref in (credited_id, voided_id)
    )
    move_clock(runtime, book.id, date(2026, 4, 11))
    with unit_of_work(runtime.connection) as uow:
        create_credit_note(uow.conn, book.id, str(credited.id), date(2026, 4, 5), amount=D(50))
        void_invoice(uow.conn, book.id, str(voided.id), date(2026, 4, 5))
        _, first = cancel_subscription(uow.conn, book.id, credited_id, "now", date(2026, 4, 11))
        _, second = cancel_subscription(uow.conn, book.id, voided_id, "now", date(2026, 4, 11))
        uow.commit()
    # 60.00 of unused time, but a credit note took 50.00 of the line already: 40.00 is left.
    assert isinstance(first, tuple)
    assert [(n.number, n.total, n.credit_to) for n in first] == [
        ("CN-2026-000002", D("40.00"), "receivable")
    ]
    assert second == ()  # the voided invoice is owed nothing back
    # 90.00 billed, 50.00 + 40.00 credited (all unearned); the other voided: nothing left.
    assert balances(runtime, book.id, date(2026, 4, 30)) == {}
