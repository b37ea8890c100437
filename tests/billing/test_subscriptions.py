"""Subscriptions: the pure rules, then worked examples on PostgreSQL.

Each worked example runs on a book with a simulated clock, bills through the
same code as the billing run, and checks the invoice lines and the postings.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import psycopg
import pytest

from adapters.runtime import Runtime
from billing.discounts import AmountDiscount, PercentDiscount
from billing.errors import DocumentState, InvalidBillingRequest
from billing.periods import Interval, Period
from billing.postgres import billing_runs
from billing.postgres.catalog import PriceSpec, create_price, create_product, get_price
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import Invoice, get_invoice, list_invoices
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


def test_cancel_now_credits_unused_time_to_customer_credit(
    runtime: Runtime, april_book: BookFixture
) -> None:
    book = april_book
    sub_id, who = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))
    move_clock(runtime, book.id, date(2026, 4, 11))
    with unit_of_work(runtime.connection) as uow:
        sub, final = cancel_subscription(uow.conn, book.id, sub_id, "now", date(2026, 4, 11))
        uow.commit()
    assert sub.status is SubscriptionStatus.CANCELED and sub.cancel_at == date(2026, 4, 11)
    assert final is not None and final.total == D("-60.00")
    assert line_amounts(final) == [(D("-60.00"), date(2026, 4, 11), date(2026, 5, 1))]
    assert balances(runtime, book.id, date(2026, 4, 30)) == {
        "Assets:Receivable:Trade": D("90.00"),
        "Liabilities:Customer-Credit": D("-60.00"),
        "Liabilities:Deferred-Revenue": D("-30.00"),
    }
    # Nothing more is billed, and a second cancel is refused.
    move_clock(runtime, book.id, date(2026, 6, 1))
    assert bill(runtime, book.id, date(2026, 6, 1)).invoices_created == 0
    with unit_of_work(runtime.connection) as uow, pytest.raises(DocumentState):
        cancel_subscription(uow.conn, book.id, sub_id, "now", date(2026, 6, 1))
    del who


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
    sub_id, _ = subscribe(runtime, book)
    bill(runtime, book.id, date(2026, 4, 1))
    move_clock(runtime, book.id, date(2026, 4, 21))
    with unit_of_work(runtime.connection) as uow:
        cheaper = plan_price(uow.conn, book.id, "60.00", name="Basic plan")
        _, invoice = change_subscription(
            uow.conn, book.id, sub_id, [ItemSpec(cheaper)], None, "invoice_now", date(2026, 4, 21)
        )
        uow.commit()
    assert invoice is not None and invoice.total == D("-10.00")  # -30.00 + 20.00
    move_clock(runtime, book.id, date(2026, 5, 1))
    bill(runtime, book.id, date(2026, 5, 1))
    may = invoices_of(runtime, book.id)[-1]
    assert (may.total, may.amount_paid, may.amount_due) == (D("60.00"), D("10.00"), D("50.00"))
    assert balances(runtime, book.id, date(2026, 4, 30))["Liabilities:Customer-Credit"] == D(
        "-10.00"
    )
    assert "Liabilities:Customer-Credit" not in balances(runtime, book.id, date(2026, 5, 1))
