"""Value-added services and vouchers on real PostgreSQL: an add-on sold from a
prepaid wallet (refused 402 when the available balance is short, nothing written)
or billed postpaid on the next invoice, and vouchers that top a wallet up once,
even when redeemed concurrently — with exact debits and credits."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.cli import main
from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.errors import DocumentState
from billing.postgres import add_ons
from billing.postgres import wallets as wallet_store
from billing.postgres.catalog import PriceSpec, create_price, create_product
from ledger.postgres.posting import get_entry
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import new_customer
from tests.billing.test_subscriptions import (
    bill,
    invoices_of,
    move_clock,
    subscribe,
)
from tests.billing.test_telecom_subscriptions import entry_postings
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth, open_client

D = Decimal
DAY = date(2026, 3, 1)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def roaming_pack(conn: psycopg.Connection, book_id: uuid.UUID, currency: str = "GBP") -> str:
    product = create_product(conn, book_id, "Roaming pack", revenue_account="Income:Usage")
    price = create_price(
        conn, book_id, PriceSpec(str(product.id), currency, "per_unit", unit_amount=D("5.00"))
    )
    return str(price.id)


def lines(conn: psycopg.Connection, book: BookFixture, entry: str) -> set[tuple[str, Decimal]]:
    return {(p.account, p.amount) for p in get_entry(conn, book.id, entry).postings}


def gbp_wallet(runtime: Runtime, book: BookFixture, top_up: str) -> wallet_store.Wallet:
    with unit_of_work(runtime.connection) as uow:
        who = new_customer(uow.conn, book.id, tax_rate="0", currency="GBP")
        wallet = wallet_store.create_wallet(uow.conn, book.id, str(who.id), "GBP")
        wallet, _ = wallet_store.top_up(uow.conn, book.id, str(wallet.id), D(top_up), DAY)
        uow.commit()
    return wallet


def test_an_add_on_sold_from_the_wallet_and_refused_402_when_short(
    runtime: Runtime, client: Any
) -> None:
    book = make_book(runtime, "GBP", DAY)
    with unit_of_work(runtime.connection) as uow:
        price = roaming_pack(uow.conn, book.id)
        uow.commit()
    wallet = gbp_wallet(runtime, book, "12.00")
    key = auth(book.admin_key)
    sold = client.post(f"/v1/wallets/{wallet.id}/add-ons", json={"price": price}, headers=key)
    assert sold.status_code == 201, sold.text
    body = sold.json()
    assert (body["amount"], body["wallet"]["balance"]) == ("5.00", "7.00")
    wallet_account = wallet.account
    with runtime.connection() as conn:
        assert lines(conn, book, body["entry"]) == {
            (wallet_account, D("5.00")),
            ("Income:Usage", D("-5.00")),
        }
    # A 3.00 hold leaves 4.00 available: two packs (10.00) or even one are refused.
    held = client.post(
        f"/v1/wallets/{wallet.id}/reservations",
        json={"amount": "3.00", "ttl_seconds": 600},
        headers=key,
    )
    assert held.status_code == 201
    for quantity in ("2", "1"):
        short = client.post(
            f"/v1/wallets/{wallet.id}/add-ons",
            json={"price": price, "quantity": quantity},
            headers=key,
        )
        assert short.status_code == 402, short.text
    bad = client.post(
        f"/v1/wallets/{wallet.id}/add-ons", json={"price": price, "quantity": "-1"}, headers=key
    )
    assert bad.status_code == 422
    with runtime.connection() as conn:
        assert wallet_store.get_wallet(conn, book.id, str(wallet.id)).balance == D("7.00")
        count = conn.execute(
            "select count(*) from add_on_sales where book_id = %s", (book.id,)
        ).fetchone()
        assert count == (1,)
        balance = conn.execute(
            "select sum(p.amount) from postings p join accounts a on a.id = p.account_id"
            " where p.book_id = %s and a.name = %s",
            (book.id, wallet_account),
        ).fetchone()
        assert balance == (D("-7.00"),)
        assert verify_everything(conn, book.id) == []


def test_a_postpaid_add_on_is_billed_on_the_next_invoice(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime, "USD", date(2026, 4, 1))
    sub_id, _ = subscribe(runtime, book)
    with unit_of_work(runtime.connection) as uow:
        price = roaming_pack(uow.conn, book.id, "USD")
        uow.commit()
    bill(runtime, book.id, date(2026, 4, 1))
    move_clock(runtime, book.id, date(2026, 4, 10))
    added = client.post(
        f"/v1/subscriptions/{sub_id}/add-ons",
        json={"price": price, "quantity": "2"},
        headers=auth(book.admin_key),
    )
    assert added.status_code == 201, added.text
    assert added.json()["amount"] == "10.00"
    move_clock(runtime, book.id, date(2026, 5, 1))
    bill(runtime, book.id, date(2026, 5, 1))
    may = invoices_of(runtime, book.id)[-1]
    assert [(x.kind, x.amount, x.service_start, x.service_end) for x in may.lines] == [
        ("subscription", D("90.00"), date(2026, 5, 1), date(2026, 6, 1)),
        ("one_off", D("10.00"), date(2026, 4, 10), date(2026, 5, 1)),
    ]
    with runtime.connection() as conn:
        posted = dict(entry_postings(conn, book.id, may.id))
    assert posted["Income:Usage"] == D("-10.00")
    assert posted["Liabilities:Deferred-Revenue"] == D("-90.00")
    assert posted["Assets:Receivable:Trade"] == may.total


def test_vouchers_are_sold_for_cash_and_top_a_wallet_up_once(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime, "GBP", DAY)
    wallet = gbp_wallet(runtime, book, "1.00")
    key = auth(book.admin_key)
    issued = client.post(
        "/v1/vouchers", json={"currency": "GBP", "amount": "10.00", "count": 3}, headers=key
    )
    assert issued.status_code == 201, issued.text
    batch = issued.json()
    assert len(set(batch["codes"])) == 3
    with runtime.connection() as conn:
        assert lines(conn, book, batch["entry"]) == {
            ("Assets:Bank:Operating", D("30.00")),
            ("Liabilities:Prepaid-Wallet:Vouchers:GBP", D("-30.00")),
        }
        stored = conn.execute(
            "select count(*) from vouchers where book_id = %s and code_hash = any(%s)",
            (book.id, batch["codes"]),
        ).fetchone()
        assert stored == (0,)  # only hashes are kept
    code = batch["codes"][0]
    redeemed = client.post(
        f"/v1/wallets/{wallet.id}/voucher-redemptions", json={"code": code}, headers=key
    )
    assert redeemed.status_code == 201, redeemed.text
    assert redeemed.json()["wallet"]["balance"] == "11.00"
    again = client.post(
        f"/v1/wallets/{wallet.id}/voucher-redemptions", json={"code": code}, headers=key
    )
    assert again.status_code == 409
    unknown = client.post(
        f"/v1/wallets/{wallet.id}/voucher-redemptions", json={"code": "NOPE"}, headers=key
    )
    assert unknown.status_code == 404
    for bad in ({"currency": "GBP", "amount": "0", "count": 1}, {"currency": "GBP",
                "amount": "5", "count": 1001}):  # fmt: skip
        assert client.post("/v1/vouchers", json=bad, headers=key).status_code == 422

    # Eight redemptions of one code at once: exactly one tops the wallet up.
    second = batch["codes"][1]
    results: list[str] = []
    barrier = threading.Barrier(8)

    def redeem() -> None:
        barrier.wait()
        try:
            with unit_of_work(runtime.connection) as uow:
                add_ons.redeem_voucher(uow.conn, book.id, str(wallet.id), second, DAY)
                uow.commit()
            results.append("ok")
        except DocumentState:
            results.append("taken")

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["taken"] * 7
    with runtime.connection() as conn:
        assert wallet_store.get_wallet(conn, book.id, str(wallet.id)).balance == D("21.00")
        voucher_liability = conn.execute(
            "select sum(p.amount) from postings p join accounts a on a.id = p.account_id"
            " where p.book_id = %s and a.name = 'Liabilities:Prepaid-Wallet:Vouchers:GBP'",
            (book.id,),
        ).fetchone()
        assert voucher_liability == (D("-10.00"),)  # one code left unredeemed
        assert verify_everything(conn, book.id) == []


def test_cli_issues_vouchers_and_refuses_a_bad_amount(
    runtime: Runtime,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    book = make_book(runtime, "GBP", DAY)
    monkeypatch.setenv("DATABASE_URL", database_url)
    args = ["vouchers", "issue", "--currency", "GBP", "--count", "2", "--book", str(book.id)]
    assert main([*args, "--amount", "5.00", "--format", "json"]) == 0
    codes = json.loads(capsys.readouterr().out)["codes"]
    assert len(codes) == 2
    assert main([*args, "--amount", "five"]) != 0
    with runtime.connection() as conn:
        count = conn.execute(
            "select count(*), sum(amount) from vouchers where book_id = %s", (book.id,)
        ).fetchone()
        assert count == (2, D("10.00"))
