"""Usage billed in arrears by the billing run: the golden graduated and volume
invoices with their exact postings, zero usage, the minimum commitment, groups,
late usage on the next invoice, and the upcoming invoice (nothing written)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.postgres.catalog import PriceSpec, create_price, create_product
from billing.postgres.invoices import Invoice
from billing.postgres.subscriptions import ItemSpec, SubscriptionSpec, create_subscription
from billing.postgres.usage import create_meter, ingest
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_subscriptions import (
    balances,
    bill,
    customer,
    invoices_of,
    move_clock,
    plan_price,
)
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth, open_client

D = Decimal
TIERS = [
    {"up_to": 1000, "unit_amount": "0.10"},
    {"up_to": 10000, "unit_amount": "0.05"},
    {"up_to": None, "unit_amount": "0.01"},
]
JAN = date(2026, 1, 1)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def usage_price(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    model: str = "graduated",
    metric: str = "api_calls",
    **kw: Any,
) -> str:
    product = create_product(conn, book_id, f"API calls ({model})")
    spec = PriceSpec(
        product=str(product.id),
        currency="USD",
        charge_model=model,
        tiers=TIERS if model in ("graduated", "volume") else None,
        interval="month",
        metric=metric,
        aggregation="sum",
        **kw,
    )
    return str(create_price(conn, book_id, spec).id)


def subscribe(
    runtime: Runtime, book: BookFixture, prices: list[str], external_id: str, start: date = JAN
) -> str:
    with unit_of_work(runtime.connection) as uow:
        who = customer(uow.conn, book.id, tax_rate=D("0.10"), external_id=external_id)
        create_subscription(
            uow.conn,
            book.id,
            SubscriptionSpec(who, [ItemSpec(p) for p in prices]),
            start,
        )
        uow.commit()
    return who


def send(runtime: Runtime, book: BookFixture, events: list[dict[str, Any]]) -> None:
    with unit_of_work(runtime.connection) as uow:
        result = ingest(uow.conn, book.id, events)
        uow.commit()
    assert (result.accepted, result.rejected) == (len(events), [])


def event(
    n: str, who: str, quantity: str, day: str, metric: str = "api_calls", **props: Any
) -> dict[str, Any]:
    return {
        "id": n,
        "customer": who,
        "metric": metric,
        "quantity": quantity,
        "timestamp": f"{day}T12:00:00Z",
        "properties": props,
    }


def usage_lines(invoice: Invoice) -> list[tuple[str, Decimal, Decimal, date | None, date | None]]:
    return [
        (line.revenue_account, line.quantity, line.amount, line.service_start, line.service_end)
        for line in invoice.lines
    ]


def test_graduated_600_and_volume_150_for_15000_units_billed_by_the_run(
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        graduated = usage_price(uow.conn, book.id, "graduated")
        volume = usage_price(uow.conn, book.id, "volume", metric="api_calls_v")
        uow.commit()
    subscribe(runtime, book, [graduated], "grad")
    subscribe(runtime, book, [volume], "vol")
    assert bill(runtime, book.id, JAN).invoices_created == 0  # nothing in advance
    move_clock(runtime, book.id, date(2026, 2, 1))
    send(
        runtime,
        book,
        [
            event("g1", "grad", "9000", "2026-01-05"),
            event("g2", "grad", "6000", "2026-01-31"),
            event("g3", "grad", "5", "2026-02-01"),  # February: next invoice
            event("v1", "vol", "15000", "2026-01-20", metric="api_calls_v"),
        ],
    )
    run = bill(runtime, book.id, date(2026, 2, 1))
    assert (run.invoices_created, run.failures) == (2, ())
    invoices = sorted(invoices_of(runtime, book.id), key=lambda i: -i.total)
    assert [(i.issue_date, i.subtotal, i.tax_total, i.total) for i in invoices] == [
        (date(2026, 2, 1), D("600.00"), D("60.00"), D("660.00")),
        (date(2026, 2, 1), D("150.00"), D("15.00"), D("165.00")),
    ]
    assert usage_lines(invoices[0]) == [
        ("Income:Usage", D(15000), D("600.00"), JAN, date(2026, 2, 1))
    ]
    assert (
        "1–1000 @ 0.10; 1001–10000 @ 0.05; 10001–15000 @ 0.01" in invoices[0].lines[0].description
    )
    assert "all 15000 @ 0.01" in invoices[1].lines[0].description
    assert balances(runtime, book.id, date(2026, 2, 1)) == {
        "Assets:Receivable:Trade": D("825.00"),
        "Income:Usage": D("-750.00"),
        "Liabilities:Tax-Payable": D("-75.00"),
    }
    # The run is safe to repeat.
    assert bill(runtime, book.id, date(2026, 2, 1)).invoices_created == 0
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []


def test_late_usage_is_billed_on_the_next_invoice_as_the_difference(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id)
        base = plan_price(uow.conn, book.id, "20.00")
        uow.commit()
    subscribe(runtime, book, [base, price], "late")
    bill(runtime, book.id, JAN)
    move_clock(runtime, book.id, date(2026, 2, 1))
    send(runtime, book, [event("a", "late", "15000", "2026-01-10")])
    bill(runtime, book.id, date(2026, 2, 1))
    february = invoices_of(runtime, book.id)[1]
    assert february.subtotal == D("620.00")  # 20.00 in advance + 600.00 of January's usage
    # 1,000 more January units arrive after January was billed, and 100 in February.
    move_clock(runtime, book.id, date(2026, 2, 5))
    send(
        runtime,
        book,
        [event("b", "late", "1000", "2026-01-31"), event("c", "late", "100", "2026-02-03")],
    )
    move_clock(runtime, book.id, date(2026, 3, 1))
    bill(runtime, book.id, date(2026, 3, 1))
    invoices = invoices_of(runtime, book.id)
    assert invoices[1] == february  # the billed invoice is never touched
    march = invoices[2]
    assert [(x.kind, x.amount, x.service_start, x.service_end) for x in march.lines] == [
        ("subscription", D("20.00"), date(2026, 3, 1), date(2026, 4, 1)),
        ("usage", D("10.00"), date(2026, 2, 1), date(2026, 3, 1)),  # February: 100 @ 0.10
        ("usage", D("10.00"), JAN, date(2026, 2, 1)),  # January again: 16,000 → 610.00
    ]
    assert "late usage, 1000 more units" in march.lines[2].description
    # April: nothing late any more.
    move_clock(runtime, book.id, date(2026, 4, 1))
    bill(runtime, book.id, date(2026, 4, 1))
    april = invoices_of(runtime, book.id)[3]
    assert [x.kind for x in april.lines] == ["subscription"]
    assert balances(runtime, book.id, date(2026, 4, 1))["Income:Usage"] == D("-620.00")


def test_no_usage_bills_nothing_but_a_minimum_commitment_bills_its_shortfall(
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        plain = usage_price(uow.conn, book.id, "package", unit_amount=D("10.00"), package_size=100)
        committed = usage_price(
            uow.conn,
            book.id,
            "per_unit",
            metric="minutes",
            unit_amount=D("0.50"),
            minimum_amount=D("25.00"),
            free_units=D(10),
        )
        uow.commit()
    subscribe(runtime, book, [plain], "quiet")
    subscribe(runtime, book, [committed], "committed")
    move_clock(runtime, book.id, date(2026, 2, 1))
    send(runtime, book, [event("m1", "committed", "30", "2026-01-15", metric="minutes")])
    bill(runtime, book.id, date(2026, 2, 1))
    [invoice] = invoices_of(runtime, book.id)  # the quiet customer gets none
    assert [(x.quantity, x.unit_amount, x.amount) for x in invoice.lines] == [
        (D(20), D("0.50"), D("10.00")),  # 30 minutes less 10 free
        (D(1), D("15.00"), D("15.00")),  # the shortfall to the 25.00 minimum
    ]
    assert "minimum commitment" in invoice.lines[1].description
    assert balances(runtime, book.id, date(2026, 2, 1)) == {
        "Assets:Receivable:Trade": D("27.50"),
        "Income:Usage": D("-25.00"),
        "Liabilities:Tax-Payable": D("-2.50"),
    }


def test_a_meter_with_group_by_bills_one_line_per_group(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        create_meter(uow.conn, book.id, "gb", "sum", None, {"env": "prod"}, ["region"])
        price = usage_price(uow.conn, book.id, "per_unit", metric="gb", unit_amount=D("0.25"))
        uow.commit()
    subscribe(runtime, book, [price], "grouped")
    move_clock(runtime, book.id, date(2026, 2, 1))
    send(
        runtime,
        book,
        [
            event("1", "grouped", "10", "2026-01-03", metric="gb", region="us", env="prod"),
            event("2", "grouped", "4", "2026-01-04", metric="gb", region="eu", env="prod"),
            event("3", "grouped", "6", "2026-01-05", metric="gb", region="eu", env="prod"),
            event("4", "grouped", "99", "2026-01-05", metric="gb", region="eu", env="test"),
        ],
    )
    bill(runtime, book.id, date(2026, 2, 1))
    [invoice] = invoices_of(runtime, book.id)
    assert [(x.quantity, x.amount) for x in invoice.lines] == [
        (D(10), D("2.50")),
        (D(10), D("2.50")),
    ]
    assert [
        "region=eu" in invoice.lines[0].description,
        "region=us" in invoice.lines[1].description,
    ] == [True, True]


def test_upcoming_invoice_shows_usage_so_far_and_writes_nothing(
    runtime: Runtime, client: Any, owner_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        price = usage_price(uow.conn, book.id)
        base = plan_price(uow.conn, book.id, "20.00")
        uow.commit()
    subscribe(runtime, book, [base, price], "up")
    bill(runtime, book.id, JAN)
    move_clock(runtime, book.id, date(2026, 1, 20))
    send(runtime, book, [event("a", "up", "1500", "2026-01-10")])

    def rows() -> tuple[int, ...]:
        row = owner_conn.execute(
            "select (select count(*) from invoices where book_id = %(b)s),"
            " (select count(*) from journal_entries where book_id = %(b)s),"
            " (select count(*) from usage_billings where book_id = %(b)s)",
            {"b": book.id},
        ).fetchone()
        assert row is not None
        return tuple(row)

    before = rows()
    response = client.get(
        "/v1/invoices/upcoming", params={"customer": "up"}, headers=auth(book.admin_key)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["issue_date"], body["subtotal"], body["tax_total"], body["total"]) == (
        "2026-02-01",
        "145.00",  # 20.00 for February + 1,000 @ 0.10 + 500 @ 0.05 of January so far
        "14.50",
        "159.50",
    )
    assert [(x["kind"], x["amount"], x["revenue_account"]) for x in body["lines"]] == [
        ("subscription", "20.00", "Income:Subscriptions"),
        ("usage", "125.00", "Income:Usage"),
    ]
    assert rows() == before
    unknown = client.get(
        "/v1/invoices/upcoming", params={"customer": "nobody"}, headers=auth(book.admin_key)
    )
    assert unknown.status_code == 404


def test_a_usage_price_carries_free_units_and_minimum_only_with_a_metric(
    runtime: Runtime, client: Any
) -> None:
    book = make_book(runtime, "USD", JAN)
    key = book.admin_key
    product = client.post("/v1/products", json={"name": "API"}, headers=auth(key)).json()
    base = {
        "product": product["id"],
        "currency": "USD",
        "charge_model": "per_unit",
        "unit_amount": "0.01",
        "interval": "month",
    }
    ok = client.post(
        "/v1/prices",
        json={
            **base,
            "metric": "calls",
            "aggregation": "sum",
            "free_units": "100",
            "minimum_amount": "5.00",
        },
        headers=auth(key),
    )
    assert ok.status_code == 201, ok.text
    assert (ok.json()["free_units"], ok.json()["minimum_amount"]) == ("100", "5.00")
    for bad in (
        {**base, "free_units": "100"},  # not a usage price
        {**base, "metric": "calls", "aggregation": "sum", "minimum_amount": "-1"},
        {**base, "metric": "calls", "aggregation": "sum", "free_units": "x"},
    ):
        response = client.post("/v1/prices", json=bad, headers=auth(key))
        assert response.status_code == 422, (bad, response.text)


def test_adding_a_usage_item_mid_period_prorates_nothing_and_bills_usage_from_then(
    runtime: Runtime,
) -> None:
    from billing.postgres.subscriptions import change_subscription

    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        base = plan_price(uow.conn, book.id, "31.00")
        price = usage_price(uow.conn, book.id, "per_unit", unit_amount=D("1.00"))
        uow.commit()
    subscription = subscribe(runtime, book, [base], "changer")
    bill(runtime, book.id, JAN)
    move_clock(runtime, book.id, date(2026, 1, 16))
    with unit_of_work(runtime.connection) as uow, uow.conn.cursor() as cur:
        sub_id = cur.execute(
            "select id from subscriptions where book_id = %s and customer_id = %s",
            (book.id, subscription),
        ).fetchone()
        assert sub_id is not None
        change_subscription(
            uow.conn,
            book.id,
            str(sub_id[0]),
            [ItemSpec(base), ItemSpec(price)],
            date(2026, 1, 16),
            "invoice_now",
            date(2026, 1, 16),
        )
        uow.commit()
    assert len(invoices_of(runtime, book.id)) == 1  # no proration invoice for a usage item
    send(runtime, book, [event("u1", "changer", "3", "2026-01-16")])
    move_clock(runtime, book.id, date(2026, 2, 1))
    bill(runtime, book.id, date(2026, 2, 1))
    february = invoices_of(runtime, book.id)[-1]
    assert [(x.kind, x.amount) for x in february.lines] == [
        ("subscription", D("31.00")),
        ("usage", D("3.00")),
    ]
