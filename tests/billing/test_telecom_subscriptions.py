"""A postpaid telecom subscription on real PostgreSQL: a rate plan as a subscription
item, its subscriber's rated CDRs billed in arrears on the subscription's invoice
(relieving the Unbilled that rating accrued), allowances per billing period, the
invoice's usage-detail CSV, and a late CDR billed on the next invoice."""

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
from billing.postgres import telecom as telecom_store
from billing.postgres.invoices import Invoice, void_invoice
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
from tests.unit.test_telecom_rating import plan_body

D = Decimal
JAN15 = date(2026, 1, 15)
FEB15 = date(2026, 2, 15)
MAR15 = date(2026, 3, 15)
SUBSCRIBER = "+447700900001"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def cdr(cid: str, start: str, seconds: str = "", to: str = "+447700900123", **kw: str) -> Any:
    body = {"id": cid, "subscriber": SUBSCRIBER, "event_type": "voice", "start": start}
    body.update({"destination": to, "duration_seconds": seconds} if seconds else {})
    return {**body, **kw}


def entry_postings(conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: Any) -> list[Any]:
    return conn.execute(
        "select a.name, sum(p.amount) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and p.document = %s and p.dimensions->>'via' = 'finalization'"
        " group by a.name order by a.name",
        (book_id, f"invoice:{invoice_id}"),
    ).fetchall()


def shape(invoice: Invoice) -> list[tuple[Any, ...]]:
    return [(x.kind, x.quantity, x.amount, x.service_start, x.service_end) for x in invoice.lines]


def telecom_subscription(runtime: Runtime, client: Any, book: BookFixture) -> dict[str, Any]:
    with unit_of_work(runtime.connection) as uow:
        telecom_store.create_rate_plan(
            uow.conn,
            book.id,
            plan_body(
                allowances=[{"event_type": "voice", "quantity": "300", "zones": ["uk", "london"]}]
            ),
        )
        fee = plan_price(uow.conn, book.id, "10.00", currency="GBP", name="Mobile S fee")
        customer(uow.conn, book.id, "GBP", tax_rate=D("0.20"), external_id="alice")
        uow.commit()
    response = client.post(
        "/v1/subscriptions",
        json={
            "customer": "alice",
            "items": [{"price": fee}, {"rate_plan": "Mobile S"}],
            "subscriber": SUBSCRIBER,
        },
        headers=auth(book.admin_key),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def send_cdrs(client: Any, book: BookFixture, cdrs: list[dict[str, Any]]) -> None:
    response = client.post("/v1/cdrs", json={"cdrs": cdrs}, headers=auth(book.admin_key))
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (len(cdrs), [])


def rate(client: Any, book: BookFixture, through: date) -> dict[str, Any]:
    response = client.post(
        "/v1/cdr-ratings", json={"through": through.isoformat()}, headers=auth(book.admin_key)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def detail(client: Any, book: BookFixture, invoice_id: Any) -> list[list[str]]:
    response = client.get(f"/v1/invoices/{invoice_id}/usage-detail", headers=auth(book.admin_key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return [line.split(",") for line in response.text.strip().split("\n")]


def test_postpaid_subscription_bills_rated_cdrs_in_arrears_against_unbilled(
    runtime: Runtime, client: Any
) -> None:
    book = make_book(runtime, "GBP", JAN15)
    sub = telecom_subscription(runtime, client, book)
    assert sub["subscriber"] == SUBSCRIBER
    assert [i.get("rate_plan") for i in sub["items"]] == [None, "Mobile S"]
    got = client.get(f"/v1/subscriptions/{sub['id']}", headers=auth(book.admin_key)).json()
    assert got["subscriber"] == SUBSCRIBER
    assert bill(runtime, book.id, JAN15).invoices_created == 1  # the fee, in advance

    send_cdrs(
        client,
        book,
        [
            cdr("c1", "2026-01-20T10:00:00+00:00", "240"),  # uk peak, all in the allowance
            # Feb 3 is still in the Jan 15 → Feb 15 billing period: 60 s of allowance left
            # (a calendar-month allowance would have covered it all), 60 s at 0.60.
            cdr("c2", "2026-02-03T10:00:00+00:00", "120"),
            # France, 61 s at 30/6 → 66 s at 1.20/min = 1.32 + 0.10 setup; no allowance.
            cdr("c3", "2026-02-04T12:00:00+00:00", "61", "+33123456789"),
            {
                **cdr("c4", "2026-02-10T09:00:00+00:00"),
                "event_type": "sms",
                "count": "3",
                "destination": "+447700900555",
            },  # 3 × 0.05
            cdr("c5", "2026-02-16T10:00:00+00:00", "60"),  # next period: in its allowance
        ],
    )
    ran = rate(client, book, FEB15)
    assert (ran["rated"], ran["amounts"]) == (4, {"GBP": "2.17"})
    assert balances(runtime, book.id, FEB15)["Assets:Receivable:Unbilled"] == D("2.17")

    upcoming = client.get(
        "/v1/invoices/upcoming", params={"customer": "alice"}, headers=auth(book.admin_key)
    ).json()
    assert (upcoming["subtotal"], upcoming["total"]) == ("12.17", "14.60")  # writes nothing
    move_clock(runtime, book.id, FEB15)
    assert bill(runtime, book.id, FEB15).invoices_created == 1
    _, february = invoices_of(runtime, book.id)
    assert shape(february) == [
        ("subscription", D(1), D("10.00"), FEB15, MAR15),
        ("usage", D(1), D("0.15"), JAN15, FEB15),  # sms, uk
        ("usage", D(1), D("1.42"), JAN15, FEB15),  # voice, france
        ("usage", D(2), D("0.60"), JAN15, FEB15),  # voice, uk: c1 (included) and c2
    ]
    assert "360 s billed (300 s included)" in february.lines[3].description
    # 20 % tax per line: 2.00 + 0.03 + 0.28 + 0.12.
    assert (february.subtotal, february.tax_total, february.total) == (
        D("12.17"),
        D("2.43"),
        D("14.60"),
    )
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, february.id) == [
            ("Assets:Receivable:Trade", D("14.60")),
            ("Assets:Receivable:Unbilled", D("-2.17")),  # rated usage, accrued by rating
            ("Liabilities:Deferred-Revenue", D("-10.00")),
            ("Liabilities:Tax-Payable", D("-2.43")),
        ]
    rows = detail(client, book, february.id)
    assert rows[0] == [
        "id", "start", "event_type", "destination", "zone", "band", "quantity",
        "billed_quantity", "amount",
    ]  # fmt: skip
    assert [(r[0], r[2], r[4], r[5], r[6], r[7], r[8]) for r in rows[1:]] == [
        ("c1", "voice", "uk", "peak", "240", "240", "0.00"),
        ("c2", "voice", "uk", "peak", "120", "120", "0.60"),
        ("c3", "voice", "france", "peak", "61", "66", "1.42"),
        ("c4", "sms", "uk", "peak", "3", "3", "0.15"),
    ]

    # A late CDR of the billed period (Saturday, off-peak, allowance used up: 2 × 0.30)
    # arrives after the February invoice: it goes on March's, February's is untouched.
    send_cdrs(client, book, [cdr("c6", "2026-02-14T20:00:00+00:00", "120")])
    assert rate(client, book, MAR15)["amounts"] == {"GBP": "0.60"}
    move_clock(runtime, book.id, MAR15)
    bill(runtime, book.id, MAR15)
    first, february_again, march = invoices_of(runtime, book.id)
    assert february_again == february
    assert shape(march) == [
        ("subscription", D(1), D("10.00"), MAR15, date(2026, 4, 15)),
        ("usage", D(2), D("0.60"), date(2026, 2, 14), MAR15),  # c6 late, c5 in allowance
    ]
    assert [r[0] for r in detail(client, book, march.id)[1:]] == ["c6", "c5"]
    assert len(detail(client, book, first.id)) == 1  # the header only
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, march.id) == [
            ("Assets:Receivable:Trade", D("12.72")),
            ("Assets:Receivable:Unbilled", D("-0.60")),
            ("Liabilities:Deferred-Revenue", D("-10.00")),
            ("Liabilities:Tax-Payable", D("-2.12")),
        ]
    assert balances(runtime, book.id, MAR15) == {
        "Assets:Receivable:Trade": D("39.32"),  # Unbilled is back to zero: not listed
        "Income:Usage": D("-2.77"),
        "Liabilities:Deferred-Revenue": D("-30.00"),
        "Liabilities:Tax-Payable": D("-6.55"),
    }
    assert bill(runtime, book.id, MAR15).invoices_created == 0
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []


def test_bad_rate_plan_items_are_refused_and_write_nothing(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime, "GBP", JAN15)
    telecom_subscription(runtime, client, book)
    with unit_of_work(runtime.connection) as uow:
        fee = plan_price(uow.conn, book.id, "5.00", currency="GBP")
        customer(uow.conn, book.id, "GBP", external_id="bob")
        uow.commit()
    key = auth(book.admin_key)
    cases = [
        ({"items": [{"price": fee}, {"rate_plan": "Mobile S"}]}, "subscriber: required"),
        ({"items": [{"rate_plan": "Mobile S"}], "subscriber": "+4411"}, "recurring price"),
        ({"items": [{"price": fee}], "subscriber": "+4411"}, "only with a rate_plan"),
        ({"items": [{"price": fee}, {"rate_plan": "Nope"}], "subscriber": "+4411"}, "Nope"),
        # alice's subscriber cannot be billed to bob.
        ({"items": [{"price": fee}, {"rate_plan": "Mobile S"}], "subscriber": SUBSCRIBER},
         "another customer"),
    ]  # fmt: skip
    for body, reason in cases:
        response = client.post("/v1/subscriptions", json={"customer": "bob", **body}, headers=key)
        assert response.status_code in (404, 409, 422), response.text
        assert reason in response.text
    with runtime.connection() as conn:
        count = conn.execute(
            "select count(*) from subscriptions where book_id = %s", (book.id,)
        ).fetchone()
        assert count == (1,)
    missing = client.get(f"/v1/invoices/{uuid.uuid4()}/usage-detail", headers=key)
    assert missing.status_code == 404


def test_a_voided_invoice_puts_its_cdrs_back_for_the_next_invoice(
    runtime: Runtime, client: Any
) -> None:
    book = make_book(runtime, "GBP", JAN15)
    telecom_subscription(runtime, client, book)
    bill(runtime, book.id, JAN15)
    send_cdrs(client, book, [cdr("v1", "2026-02-04T12:00:00+00:00", "61", "+33123456789")])
    rate(client, book, FEB15)
    move_clock(runtime, book.id, FEB15)

    def versions() -> list[Any]:  # the CDR row's physical version
        with runtime.connection() as conn:
            return conn.execute(
                "select ctid, xmin::text from cdrs where book_id = %s", (book.id,)
            ).fetchall()

    rated = versions()
    bill(runtime, book.id, FEB15)
    _, february = invoices_of(runtime, book.id)
    assert february.lines[-1].amount == D("1.42")
    # Invoicing links the CDR in cdr_invoices and leaves the row as it was: no second
    # write of every CDR (it was an update of cdrs.invoice_id, never HOT).
    assert versions() == rated
    assert [r[0] for r in detail(client, book, february.id)[1:]] == ["v1"]
    with unit_of_work(runtime.connection) as uow:
        void_invoice(uow.conn, book.id, str(february.id), FEB15)
        uow.commit()
    # The reversal debits Unbilled again: the CDR is unbilled, and verify agrees.
    assert balances(runtime, book.id, FEB15)["Assets:Receivable:Unbilled"] == D("1.42")
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []
    move_clock(runtime, book.id, MAR15)
    bill(runtime, book.id, MAR15)
    march = invoices_of(runtime, book.id)[-1]
    assert shape(march)[-1] == ("usage", D(1), D("1.42"), date(2026, 2, 4), MAR15)
    assert [r[0] for r in detail(client, book, march.id)[1:]] == ["v1"]
    assert detail(client, book, february.id)[1:] == []  # voided: its CDR was unlinked
    assert versions() == rated
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []
