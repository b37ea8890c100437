"""A billing run's batches: entry templates, numbering late in the batch, concurrent runs.

The invoice numbers of a batch are taken from the gapless series after everything
that needs none (pricing, lines, the subscriptions' advance), and the finalization
entries are made from one template per invoice shape. These tests hold both to what
the per-invoice code gave: the same entries, numbers without gaps or duplicates in the
batch order, and no number consumed by a batch that fails.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from adapters.runtime import Runtime
from adapters.webhooks.store import create_endpoint
from billing.events import _jsonable, jsonable, object_json
from billing.postgres import billing_runs
from billing.postgres.credit_notes import lock_customer
from billing.postgres.invoices import _LINE_COLUMNS, InvoiceLine, get_invoice, get_invoices
from billing.postgres.payments import create_payment
from billing.postgres.subscriptions import ItemSpec, SubscriptionSpec, create_subscription
from billing.postings import FinalLine, finalization_entry, finalization_template
from ledger.money import Money
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_subscriptions import (
    balances,
    customer,
    invoices_of,
    move_clock,
    plan_price,
)
from tests.conftest import make_book
from tests.integration.test_concurrency import (  # noqa: F401 (app_connect: a fixture)
    app_connect,
    lock_waiters,
    wait_until,
)

D = Decimal
APRIL = date(2026, 4, 1)


def _line(
    n: int,
    net: str,
    tax: str = "0.00",
    code: str = "0%",
    account: str = "Income:Subscriptions",
    service: tuple[date, date] | None = (date(2026, 4, 1), date(2026, 5, 1)),
    currency: str = "USD",
) -> FinalLine:
    start, end = service if service else (None, None)
    return FinalLine(n, Money(D(net), currency), Money(D(tax), currency), code, account, start, end)


SHAPES = {
    "deferred, one line": [_line(1, "29.00")],
    "three lines, two tax codes": [
        _line(1, "29.00", "2.90", "10%"),
        _line(2, "47.50", "4.75", "10%"),
        _line(3, "5.00", "0.25", "5%", "Income:Add-ons"),
    ],
    "earned now (no service period), a zero line": [
        _line(1, "12.00", service=None),
        _line(2, "0.00", service=None),
    ],
    "negative total: customer credit": [_line(1, "10.00"), _line(2, "-25.00")],
    "zero invoice: no entry": [_line(1, "0.00")],
    "JPY": [_line(1, "2900", "290", "10%", currency="JPY")],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_an_entry_made_from_its_shapes_template_is_the_one_finalization_entry_makes(
    shape: str,
) -> None:
    lines = SHAPES[shape]
    template = finalization_template(APRIL, lines)
    for number in (1, 2, 999_999):
        invoice_id, who = uuid.uuid4(), str(uuid.uuid4())
        doc_number = f"INV-2026-{number:06d}"
        assert template.entry_for(invoice_id, doc_number, who) == finalization_entry(
            invoice_id, doc_number, who, APRIL, lines
        )


class _Kind(enum.Enum):
    A = "a"


class _Text(enum.StrEnum):
    B = "b"


@dataclass(frozen=True)
class _Inner:
    money: Money
    on: date


@dataclass(frozen=True)
class _Outer:
    id: uuid.UUID
    amount: Decimal
    at: datetime
    kind: _Kind
    text: _Text
    flag: bool
    count: int
    none: None
    items: tuple[_Inner, ...]
    tags: list[str]
    meta: dict[str, object]
    seen: frozenset[int]


def test_jsonable_by_exact_type_gives_what_the_isinstance_chain_gives() -> None:
    value = _Outer(
        uuid.uuid4(),
        D("1.50"),
        datetime(2026, 4, 1, 12, tzinfo=UTC),
        _Kind.A,
        _Text.B,
        True,
        3,
        None,
        (_Inner(Money(D("2.00"), "USD"), APRIL),),
        ["x"],
        {"k": D("3"), 4: [APRIL]},
        frozenset({1}),
    )
    slow = _jsonable(value)
    assert jsonable(value) == slow  # the first call learns the dataclasses' fields
    assert jsonable(value) == slow  # the second one uses them
    assert slow["kind"] == "a" and slow["items"][0]["money"]["amount"] == "2.00"


def _subscriptions(runtime: Runtime, book_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    with unit_of_work(runtime.connection) as uow:
        prices = [plan_price(uow.conn, book_id, a) for a in ("10.00", "20.00")]
        who = [customer(uow.conn, book_id) for _ in range(3)]
        ids = [
            create_subscription(
                uow.conn, book_id, SubscriptionSpec(who[n % 3], [ItemSpec(prices[n % 2])]), APRIL
            ).id
            for n in range(count)
        ]
        uow.commit()
    return ids


def _series(runtime: Runtime, book_id: uuid.UUID) -> int | None:
    with runtime.connection() as conn:
        row = conn.execute(
            "select last_value from number_series where book_id = %s and series = 'INV-2026'",
            (book_id,),
        ).fetchone()
    return None if row is None else int(row[0])


def _numbered(runtime: Runtime, book_id: uuid.UUID) -> list[tuple[str | None, uuid.UUID | None]]:
    return [(i.number, i.subscription_id) for i in invoices_of(runtime, book_id)]


def _in_batch_order(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """One period each, all on one day: batches claim, and number, by subscription id."""
    return sorted(ids, key=str)


def test_two_concurrent_runs_on_different_books_interleave_without_gaps(
    runtime: Runtime,
) -> None:
    books = [make_book(runtime, "USD", APRIL).id for _ in range(2)]
    subs = {book: _subscriptions(runtime, book, 12) for book in books}
    # After every batch each run waits for the other: batch k of both commits before
    # batch k + 1 of either starts, so their transactions and numbers interleave.
    turns = threading.Barrier(2, timeout=120)
    runs: dict[uuid.UUID, billing_runs.BillingRun] = {}
    errors: list[BaseException] = []

    def run(book: uuid.UUID) -> None:
        try:
            runs[book] = billing_runs.run_billing(
                runtime.connection,
                book,
                APRIL,
                APRIL,
                batch_size=5,
                progress=lambda done, total, invoices: turns.wait() and None,
            )
        except BaseException as exc:  # the test thread reports it
            errors.append(exc)
            turns.abort()

    threads = [threading.Thread(target=run, args=(book,)) for book in books]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for book in books:
        assert (runs[book].status, runs[book].invoices_created) == ("completed", 12)
        assert _numbered(runtime, book) == [
            (f"INV-2026-{n:06d}", sub) for n, sub in enumerate(_in_batch_order(subs[book]), 1)
        ]
        assert _series(runtime, book) == 12
        assert balances(runtime, book, APRIL) == {
            "Assets:Receivable:Trade": D("180.00"),
            "Liabilities:Deferred-Revenue": D("-180.00"),
        }


def test_two_concurrent_runs_on_one_book_share_its_series_without_gaps(
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", APRIL).id
    subs = _subscriptions(runtime, book, 30)
    runs: list[billing_runs.BillingRun] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runs.append(
                billing_runs.run_billing(runtime.connection, book, APRIL, APRIL, batch_size=4)
            )
        except BaseException as exc:  # the test thread reports it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.invoices_created for r in runs) == 30
    numbered = _numbered(runtime, book)
    # Every subscription once, every number once, 1 to 30.
    assert sorted(sub for _, sub in numbered if sub) == sorted(subs)
    assert [n for n, _ in numbered] == [f"INV-2026-{n:06d}" for n in range(1, 31)]
    assert _series(runtime, book) == 30
    with runtime.connection() as conn:
        assert conn.execute(
            "select count(*), count(distinct document) from postings"
            " where book_id = %s and account_id = (select id from accounts"
            "   where book_id = %s and name = 'Assets:Receivable:Trade')",
            (book, book),
        ).fetchone() == (30, 30)


def test_a_run_with_two_workers_bills_every_subscription_once_without_gaps(
    runtime: Runtime,
) -> None:
    """Two workers (a connection each) claim batches side by side: each subscription is
    billed once, the numbers run 1 to N with no gap or repeat, one entry per invoice."""
    book = make_book(runtime, "USD", APRIL).id
    subs = _subscriptions(runtime, book, 40)
    seen: list[tuple[int, int, int]] = []
    run = billing_runs.run_billing(
        runtime.connection,
        book,
        APRIL,
        APRIL,
        batch_size=3,
        workers=2,
        progress=lambda done, total, invoices: seen.append((done, total, invoices)),
    )
    assert (run.status, run.invoices_created, run.failures) == ("completed", 40, ())
    assert seen[0] == (0, 40, 0) and seen[-1] == (40, 40, 40)
    numbered = _numbered(runtime, book)
    assert sorted(sub for _, sub in numbered if sub) == sorted(subs)
    assert [n for n, _ in numbered] == [f"INV-2026-{n:06d}" for n in range(1, 41)]
    assert _series(runtime, book) == 40
    assert balances(runtime, book, APRIL) == {
        "Assets:Receivable:Trade": D("600.00"),
        "Liabilities:Deferred-Revenue": D("-600.00"),
    }


def test_a_batch_failing_after_taking_its_numbers_leaves_none_consumed(
    runtime: Runtime, owner_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "USD", APRIL).id
    subs = _subscriptions(runtime, book, 12)
    ordered = _in_batch_order(subs)
    culprit = ordered[6]  # in the second batch of five
    # The invoice.finalized event is written after the batch's numbers, entries and
    # invoices: refusing the culprit's fails the batch there.
    owner_conn.execute(
        "create function ab_test_refuse_event() returns trigger language plpgsql as $$ begin"
        f" if new.data->'object'->>'subscription_id' = '{culprit}' then"
        " raise exception 'event refused for the test'; end if; return new; end $$"
    )
    owner_conn.execute(
        "create trigger ab_test_refuse_event before insert on events"
        " for each row execute function ab_test_refuse_event()"
    )
    try:
        # Without isolation the error reaches the caller, and its rollback gives the
        # series back what the batch took.
        with runtime.connection() as conn:
            with pytest.raises(psycopg.errors.RaiseException):
                billing_runs.bill_subscriptions(conn, book, APRIL, ordered[5:10])
            conn.rollback()
        assert _series(runtime, book) is None
        assert _numbered(runtime, book) == []
        # A run rolls the batch back to its savepoint, bills its subscriptions one by
        # one, and reports the culprit: numbers go on without a gap.
        run = billing_runs.run_billing(runtime.connection, book, APRIL, APRIL, batch_size=5)
        assert (run.invoices_created, run.failures) == (
            11,
            (billing_runs.Failure(culprit, "event refused for the test"),),
        )
        others = [s for s in ordered if s != culprit]
        assert _numbered(runtime, book) == [
            (f"INV-2026-{n:06d}", sub) for n, sub in enumerate(others, 1)
        ]
        assert _series(runtime, book) == 11
    finally:
        owner_conn.execute("drop trigger ab_test_refuse_event on events")
        owner_conn.execute("drop function ab_test_refuse_event()")
    move_clock(runtime, book, APRIL)
    again = billing_runs.run_billing(runtime.connection, book, APRIL, APRIL, batch_size=5)
    assert (again.invoices_created, again.failures) == (1, ())
    assert _numbered(runtime, book)[-1] == ("INV-2026-000012", culprit)
    assert _series(runtime, book) == 12


def test_the_finalized_events_carry_the_invoices_as_read_back(runtime: Runtime) -> None:
    """The run renders its events from the invoices it writes, before it has their
    numbers, instead of reading them back: the same objects as reading them back."""
    book = make_book(runtime, "USD", APRIL).id
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book, "10.00")
        seats = plan_price(uow.conn, book, "9.50", model="per_unit", name="Seats")
        taxed = customer(uow.conn, book, tax_rate=D("0.10"))
        # Two alike (one shape, rendered once for both) but for the customer.
        alike = customer(uow.conn, book, tax_rate=D("0.10"))
        for who in (taxed, customer(uow.conn, book), alike):
            create_subscription(uow.conn, book, SubscriptionSpec(who, [ItemSpec(price)]), APRIL)
        create_subscription(
            uow.conn,
            book,
            SubscriptionSpec(taxed, [ItemSpec(price), ItemSpec(seats, D("3.000"))]),
            APRIL,
        )
        uow.commit()
    run = billing_runs.run_billing(runtime.connection, book, APRIL, APRIL, batch_size=5)
    assert run.invoices_created == 4
    with runtime.connection() as conn:
        events = {
            r[0]: r[1]["object"]
            for r in conn.execute(
                "select object_id, data from events where book_id = %s"
                " and type = 'invoice.finalized'",
                (book,),
            )
        }
        invoices = get_invoices(conn, book, [uuid.UUID(i) for i in events])
    assert sorted(i.total for i in invoices) == [D("10.00"), D("11.00"), D("11.00"), D("42.35")]
    assert {i.number for i in invoices} == {f"INV-2026-{n:06d}" for n in (1, 2, 3, 4)}
    assert {str(i.id): object_json("invoice.finalized", i) for i in invoices} == events


def test_invoice_lines_are_read_in_the_order_of_their_fields() -> None:
    """_lines_of builds InvoiceLine from the row's values by position."""
    assert [c.strip() for c in _LINE_COLUMNS.split(",")] == [
        f.name for f in dataclasses.fields(InvoiceLine)
    ]


MARCH = date(2026, 3, 1)


def test_a_run_applying_credit_and_a_payment_of_the_same_customer_do_not_deadlock(
    runtime: Runtime,
    owner_conn: psycopg.Connection,
    app_connect: Callable[[], psycopg.Connection],  # noqa: F811 (the fixture imported)
) -> None:
    """Payments lock the customer, then post (this session's balance rows). A run that
    applies a customer's credit to its invoices locks that customer before it posts
    the finalization entries too: when it locked the customer after them, a payment
    holding the customer and posting receivables on the same day into the same balance
    slot (backend pid % 16) waited for the run, which waited for the customer: deadlock."""
    book = make_book(runtime, "USD", MARCH).id
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book, "10.00")
        who = customer(uow.conn, book)
        subs = [
            create_subscription(uow.conn, book, SubscriptionSpec(who, [ItemSpec(price)]), MARCH)
            for _ in range(2)
        ]
        uow.commit()
    billing_runs.run_billing(runtime.connection, book, MARCH, MARCH)
    march = [i for i in invoices_of(runtime, book) if i.number]
    assert len(march) == 2
    with unit_of_work(runtime.connection) as uow:  # 100.00: 10.00 to one invoice, 90 credit
        create_payment(
            uow.conn,
            book,
            who,
            D("100.00"),
            "USD",
            "bank_transfer",
            MARCH,
            allocations=[(str(march[1].id), D("10.00"))],
        )
        uow.commit()
    move_clock(runtime, book, APRIL)
    run_conn = app_connect()
    payer = app_connect()
    while payer.info.backend_pid % 16 != run_conn.info.backend_pid % 16:  # one balance slot
        payer = app_connect()
    lock_customer(payer, book, uuid.UUID(who))
    errors: list[BaseException] = []
    billed: list[uuid.UUID] = []

    def run() -> None:
        try:
            billed.extend(billing_runs.bill_subscriptions(run_conn, book, APRIL).invoice_ids)
            run_conn.commit()
        except BaseException as exc:  # the test thread reports it
            errors.append(exc)
            run_conn.rollback()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(
            lambda: lock_waiters(owner_conn, [run_conn.info.backend_pid]) == 1,
            "the run waiting for the customer",
        )
        # The payment (customer locked first, as create_payment does) settles the March
        # invoice left open: receivables posted on April 1 in the run's balance slot.
        create_payment(
            payer,
            book,
            who,
            D("10.00"),
            "USD",
            "bank_transfer",
            APRIL,
            invoice_ref=str(march[0].id),
        )
        payer.commit()
    finally:
        if payer.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            payer.rollback()
        thread.join()
    assert errors == []
    assert len(billed) == len(subs)
    with runtime.connection() as conn:
        april = [get_invoice(conn, book, str(i)) for i in billed]
        paid = get_invoice(conn, book, str(march[0].id))
    assert [(i.status, i.amount_due) for i in april] == [("paid", D("0.00"))] * 2
    assert (paid.status, paid.amount_due) == ("paid", D("0.00"))
    assert balances(runtime, book, APRIL)["Liabilities:Customer-Credit"] == D("-70.00")


def test_a_runs_events_fan_out_to_each_wanting_endpoint_and_each_linked_crm_record(
    runtime: Runtime,
) -> None:
    """The events of a batch (one COPY) are fanned out per statement (0042): one
    webhook delivery per event and enabled endpoint wanting its type, one CRM delivery
    per event of a linked customer, as the per-row triggers made them."""
    book = make_book(runtime, "USD", APRIL).id
    subs = _subscriptions(runtime, book, 6)  # three customers, two subscriptions each
    with unit_of_work(runtime.connection) as uow:
        conn = uow.conn
        for url, events in (
            ("https://a.example.com/hook", ["invoice.finalized"]),
            ("https://b.example.com/hook", ["invoice.*"]),
            ("https://c.example.com/hook", ["payment.succeeded"]),
        ):
            create_endpoint(conn, book, url=url, events=events, allow_private_network=False)
        linked = conn.execute(
            "select customer_id from subscriptions where book_id = %s and id = %s",
            (book, subs[0]),
        ).fetchone()
        assert linked is not None
        conn.execute(
            "insert into crm_links (book_id, provider, record_id, customer_id)"
            " values (%s, 'hubspot', 'hs-1', %s), (%s, 'salesforce', 'sf-1', %s)",
            (book, linked[0], book, linked[0]),
        )
        uow.commit()
    run = billing_runs.run_billing(runtime.connection, book, APRIL, APRIL, batch_size=4)
    assert run.invoices_created == 6
    with runtime.connection() as conn:
        events = dict(
            conn.execute(
                "select id, sequence from events where book_id = %s and type = 'invoice.finalized'",
                (book,),
            ).fetchall()
        )
        deliveries = conn.execute(
            "select d.event_id, d.event_sequence, w.url from webhook_deliveries d"
            " join webhook_endpoints w on w.book_id = d.book_id and w.id = d.endpoint_id"
            " where d.book_id = %s",
            (book,),
        ).fetchall()
        crm = conn.execute(
            "select d.event_id, d.provider, d.record_id, d.customer_id from crm_deliveries d"
            " where d.book_id = %s",
            (book,),
        ).fetchall()
        of_linked = conn.execute(
            "select id from events where book_id = %s and type = 'invoice.finalized'"
            " and data->'object'->>'customer_id' = %s",
            (book, str(linked[0])),
        ).fetchall()
    assert len(events) == 6
    assert sorted(deliveries) == sorted(
        (event, sequence, url)
        for event, sequence in events.items()
        for url in ("https://a.example.com/hook", "https://b.example.com/hook")
    )
    assert len(of_linked) == 2
    assert sorted(crm) == sorted(
        (event, provider, record, linked[0])
        for (event,) in of_linked
        for provider, record in (("hubspot", "hs-1"), ("salesforce", "sf-1"))
    )
