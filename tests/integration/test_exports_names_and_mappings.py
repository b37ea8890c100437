"""Exports name customers and date in the book's time; ERP layouts without their
required mapping warn in the manifest or refuse (issue 7 item 21)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import date
from typing import Any

import pytest
from beancount import loader

from adapters.exports import journal_feed
from adapters.exports.beancount import ExportRange, begin_snapshot, export_beancount
from adapters.exports.errors import MissingMapping
from adapters.runtime import Runtime
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.posting import post_entries  # names an invoice: billing's to write
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client

CUSTOMER = "Zürich Cloud AG"


def taxed_sale(day: date, customer: str) -> Any:
    """A 108.00 invoice: 100.00 revenue and 8.00 tax, receivable from the customer."""
    return build_entry(
        day,
        "invoice INV-1",
        [
            Posting("Assets:Receivable:Trade", Money.exact("108.00", "USD"), customer),
            Posting("Income:Services", Money.exact("-100.00", "USD"), customer, "invoice:1"),
            Posting("Liabilities:Tax-Payable", Money.exact("-8.00", "USD"), customer),
        ],
    )


@pytest.fixture(scope="module")
def named(runtime: Runtime) -> BookFixture:
    """A book on a simulated clock far from the machine's date, one customer, one sale."""
    fixture = make_book(runtime, "USD", date(2020, 3, 10))
    with unit_of_work(runtime.connection) as uow:
        customer, _ = upsert_customer(uow.conn, fixture.id, CustomerSpec(CUSTOMER, "USD"))
        post_entries(uow.conn, fixture.id, [taxed_sale(date(2020, 3, 5), str(customer.id))])
        uow.commit()
    return fixture


def beancount_text(runtime: Runtime, book_id: uuid.UUID) -> str:
    with runtime.connection() as conn:
        begin_snapshot(conn)
        text = "".join(export_beancount(conn, book_id, ExportRange()))
        conn.rollback()
    return text


def test_beancount_payee_is_the_customer_name_and_the_file_loads(
    runtime: Runtime, named: BookFixture
) -> None:
    text = beancount_text(runtime, named.id)
    entries, errors, _ = loader.load_string(text)
    assert errors == [], [str(e.message) for e in errors[:5]]
    payees = [getattr(e, "payee", None) for e in entries if hasattr(e, "postings")]
    assert payees == [CUSTOMER]


def test_beancount_opens_accounts_in_the_book_s_time_not_the_machine_s(
    runtime: Runtime, named: BookFixture
) -> None:
    """The book's clock says 2020-03-10; accounts were created today by the machine's
    clock. Unused accounts open on the book's first entry date, used ones at first use."""
    text = beancount_text(runtime, named.id)
    opens = {name: day for day, name in re.findall(r"^(\S+) open (\S+)", text, re.M)}
    assert opens["Income:Services"] == "2020-03-05"
    assert opens["Assets:Bank:Operating"] == "2020-03-05"  # never posted to
    assert set(opens.values()) == {"2020-03-05"}


def rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))


def test_erp_name_columns_carry_the_customer_name(runtime: Runtime, named: BookFixture) -> None:
    ns = journal_feed.seal_then_build(runtime.connection, named.id, "netsuite", 0)
    assert {r["Name"] for r in rows(ns.body)} == {CUSTOMER}
    qb = journal_feed.seal_then_build(runtime.connection, named.id, "quickbooks", 0)
    assert {r["Name"] for r in rows(qb.body)} == {CUSTOMER}
    jsonl = journal_feed.seal_then_build(runtime.connection, named.id, "jsonl", 0)
    assert f'"customer_name":"{CUSTOMER}"'.encode() in jsonl.body


def test_netsuite_without_subsidiary_and_quickbooks_without_names_warn_in_the_manifest(
    runtime: Runtime, named: BookFixture
) -> None:
    ns = journal_feed.seal_then_build(runtime.connection, named.id, "netsuite", 0)
    assert [w["code"] for w in ns.manifest(named.id)["warnings"]] == ["missing_subsidiary"]
    qb = journal_feed.seal_then_build(runtime.connection, named.id, "quickbooks", 0)
    (warning,) = qb.manifest(named.id)["warnings"]
    assert warning["code"] == "unmapped_accounts"
    assert warning["accounts"] == [
        "Assets:Receivable:Trade",
        "Income:Services",
        "Liabilities:Tax-Payable",
    ]


def test_sap_without_company_code_and_xero_tax_lines_without_tax_type_are_refused(
    runtime: Runtime, named: BookFixture
) -> None:
    with pytest.raises(MissingMapping, match="company_code"):
        journal_feed.seal_then_build(runtime.connection, named.id, "sap", 0)
    with pytest.raises(MissingMapping, match="tax_line_rate"):
        journal_feed.seal_then_build(runtime.connection, named.id, "xero", 0)
    headers = auth(named.admin_key)
    with open_client(runtime) as client:
        sap = client.get("/v1/exports/journal", params={"format": "sap"}, headers=headers)
        assert_problem(sap, 422, "missing_mapping")
        put = client.put(
            "/v1/erp-mappings/xero",
            json={"settings": {"tax_line_rate": "BAS Excluded"}, "accounts": {}},
            headers=headers,
        )
        assert put.status_code == 200, put.text
        xero = client.get("/v1/exports/journal", params={"format": "xero"}, headers=headers)
        assert xero.status_code == 200, xero.text
    rates = {r["AccountCode"]: r["TaxRate"] for r in rows(xero.content)}
    assert rates == {"1100": "Tax Exempt", "4020": "Tax Exempt", "2100": "BAS Excluded"}


def test_mapped_layouts_have_no_warnings(runtime: Runtime) -> None:
    fixture = make_book(runtime)
    with unit_of_work(runtime.connection) as uow:
        post_entries(uow.conn, fixture.id, [taxed_sale(date(2026, 1, 5), "cus_x")])
        journal_feed.save_mapping(uow.conn, fixture.id, "netsuite", {"subsidiary": "Acme"}, {})
        journal_feed.save_mapping(
            uow.conn,
            fixture.id,
            "quickbooks",
            {},
            {
                "Assets:Receivable:Trade": "Accounts Receivable (A/R)",
                "Income:Services": "Services",
                "Liabilities:Tax-Payable": "Sales Tax Payable",
            },
        )
        uow.commit()
    for fmt in ("netsuite", "quickbooks"):
        batch = journal_feed.seal_then_build(runtime.connection, fixture.id, fmt, 0)
        assert batch.manifest(fixture.id)["warnings"] == [], fmt
    # A customer id that is no customer of the book stays as posted.
    ns = journal_feed.seal_then_build(runtime.connection, fixture.id, "netsuite", 0)
    assert {r["Name"] for r in rows(ns.body)} == {"cus_x"}
