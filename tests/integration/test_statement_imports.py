"""Statement import through the API and CLI: issue 7 items 1, 2, 8-10 (uploads),
14-17. Every refused upload writes nothing."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.reconciliation import statements as statement_store
from adapters.runtime import Runtime
from tests.conftest import make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.integration.test_reconciliation_cli import run
from tests.integration.test_reconciliation_statements import _account, _counts, upload
from tests.unit.test_bank_statements import (
    FIXTURES,
    MT940,
    _camt053,
    _entry,
    _ofx,
    _swiss_batch,
)

OFX = FIXTURES / "ofxparse"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _stored_lines(conn: psycopg.Connection, statement_id: str) -> list[tuple[str, Decimal]]:
    rows = conn.execute(
        "select l.bank_reference, l.amount from bank_statements s,"
        " unnest(s.line_ids) with ordinality as x(line_id, n)"
        " join bank_statement_lines l on l.id = x.line_id"
        " where s.id = %s and l.book_id = s.book_id order by x.n",
        (uuid.UUID(statement_id),),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


# --- item 1: no line of a file is ever dropped; a stored statement adds up -----------


def test_swiss_grouped_credit_keeps_both_parts_on_first_upload(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "CHF")
    first = upload(client, book, _swiss_batch())
    assert first.status_code == 201, first.text
    doc = first.json()
    assert (doc["line_count"], doc["new_lines"], doc["duplicate_lines"]) == (2, 2, 0)
    assert [x["amount"] for x in doc["lines"]] == ["2187.00", "1296.00"]
    assert _stored_lines(app_conn, doc["id"]) == [
        ("ZV-2023-0115-77/1", Decimal("2187.00")),
        ("ZV-2023-0115-77/2", Decimal("1296.00")),
    ]
    again = upload(client, book, _swiss_batch()).json()
    assert (again["created"], again["new_lines"], again["duplicate_lines"]) == (False, 0, 2)


def test_an_overlapping_statement_lists_the_lines_it_shares(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "EUR")
    ref = "<AcctSvcrRef>{}</AcctSvcrRef>"
    jan15 = _entry("50.00", "CRDT", extra=ref.format("A"))
    jan16 = _entry("30.00", "DBIT", extra=ref.format("B"))
    assert upload(client, book, _camt053(jan15, closing="150.00")).status_code == 201
    # The next day's file repeats A: it is listed, not stored twice, and adds up.
    second = upload(client, book, _camt053(jan15, jan16, closing="120.00")).json()
    assert (second["new_lines"], second["duplicate_lines"]) == (1, 1)
    assert _stored_lines(app_conn, second["id"]) == [
        ("A", Decimal("50.00")),
        ("B", Decimal("-30.00")),
    ]
    # The same reference with another amount cannot be de-duplicated safely.
    reused = _entry("51.00", "CRDT", extra=ref.format("A"))
    before = _counts(app_conn, book.id)
    body = assert_problem(upload(client, book, _camt053(reused, closing="151.00")), 422)
    assert body["code"] == "reference_reused" and "'A'" in body["detail"]
    assert _counts(app_conn, book.id) == before


def test_the_database_refuses_a_statement_whose_lines_do_not_add_up(
    runtime: Runtime, client: Any, owner_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "CHF")
    doc = upload(client, book, _swiss_batch()).json()
    columns = (
        "book_id, id, account_id, format, currency, opening_balance, closing_balance,"
        " line_count, new_line_count, fingerprint, file_sha256, line_ids"
    )
    source = (
        "select book_id, %s, account_id, format, currency, opening_balance, closing_balance,"
        " %s, 0, %s, file_sha256, %s from bank_statements where id = %s"
    )
    ids = [x["id"] for x in doc["lines"]]
    for line_ids, count in ((ids[:1], 1), ([ids[0], ids[0]], 2), (ids, 1)):
        # one part dropped; one part listed twice; a count that hides a line
        with (
            pytest.raises(psycopg.errors.CheckViolation, match="bank statement"),
            owner_conn.transaction(),
        ):
            owner_conn.execute(
                f"insert into bank_statements ({columns}) {source}",
                (uuid.uuid4(), count, uuid.uuid4().hex, line_ids, uuid.UUID(doc["id"])),
            )


# --- item 2: FITIDs are unique per bank account only ---------------------------------


def test_equal_fitids_of_two_bank_accounts_both_import(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime, "EUR")
    first = upload(client, book, _ofx("20230115")).json()
    other = _ofx("20230115").replace(b"<ACCTID>ACC-1", b"<ACCTID>ACC-2")
    second = upload(client, book, other)
    assert second.status_code == 201, second.text
    assert (second.json()["new_lines"], second.json()["duplicate_lines"]) == (1, 0)
    assert [x["bank_reference"] for x in second.json()["lines"]] == ["F1"]
    assert first["lines"][0]["id"] != second.json()["lines"][0]["id"]


# --- items 8, 9, 10: hostile uploads are 4xx and parsed without a connection ---------


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"OFXHEADER:100\n<OFX>" + b"<![CDATA[" * 50_000, 400, "truncated_file"),
        (b"OFXHEADER:100\n" + b"<A>" * 2_000 + b"</A>" * 2_000, 400, "too_deeply_nested"),
        (b"OFXHEADER:100\n<OFX>" + b"<STMTTRN><FITID>x" * 10_000, 400, "too_deeply_nested"),
        (_ofx("20230115").replace(b"<NAME>Acme", b"<NAME>A\x00cme"), 422, "nul_byte"),
    ],
    ids=["unterminated-cdata", "nested-2000", "never-closed", "nul-in-name"],
)
def test_hostile_ofx_is_a_clear_4xx_and_parsed_before_a_connection_is_taken(
    runtime: Runtime,
    client: Any,
    app_conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    status: int,
    code: str,
) -> None:
    book = make_book(runtime)
    held: list[int] = []
    parse = statement_store.parse_upload

    def watched(*args: Any, **kwargs: Any) -> Any:
        stats = runtime.pool.get_stats()
        held.append(stats["pool_size"] - stats["pool_available"])
        return parse(*args, **kwargs)

    monkeypatch.setattr(statement_store, "parse_upload", watched)
    before = _counts(app_conn, book.id)
    body = assert_problem(upload(client, book, data), status, code)
    assert held == [0]  # no pooled connection is out while the file is parsed
    assert _counts(app_conn, book.id) == before
    if code == "nul_byte":
        assert "counterparty_name" in body["detail"]


@pytest.mark.parametrize("field", ["bank_account", "format", "time_zone", "account"])
def test_nul_in_a_form_field_is_422_naming_the_field(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection, field: str
) -> None:
    book = make_book(runtime, "EUR")
    before = _counts(app_conn, book.id)
    fields = {"account": "Assets:Bank:Operating", field: "x\x00y"}
    response = client.post(
        "/v1/bank-statements",
        files={"file": ("s.ofx", _ofx("20230115"), "application/octet-stream")},
        data=fields,
        headers=auth(book.admin_key),
    )
    body = assert_problem(response, 422, "nul_character")  # as every other field's
    assert body["field"] == field
    assert _counts(app_conn, book.id) == before


# --- item 14: time zone, booking-date fallbacks ----------------------------------------


def test_booking_time_is_a_day_in_the_accounts_time_zone(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime, "EUR")
    _account(client, book, "Assets:Bank:Zurich", metadata={"time_zone": "Europe/Zurich"})
    entry = _entry("50.00", "CRDT").replace(
        "<BookgDt><Dt>2023-01-15</Dt></BookgDt>",
        "<BookgDt><DtTm>2023-01-15T23:30:00Z</DtTm></BookgDt>",
    )
    data = _camt053(entry, closing="150.00")
    zurich = upload(client, book, data, account="Assets:Bank:Zurich").json()
    assert zurich["lines"][0]["booking_date"] == "2023-01-16"
    utc = upload(client, book, data).json()  # Operating has no time zone: UTC
    assert utc["lines"][0]["booking_date"] == "2023-01-15"
    bad = upload(client, book, data, time_zone="Mars/Olympus")
    assert_problem(bad, 422, "invalid_time_zone")


# --- items 15, 16: OFX opening balance, ZIP, currencies, cards ---------------------------


def test_ofx_upload_carries_the_derived_opening_balance(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime, "CAD")
    doc = upload(client, book, (OFX / "bank_medium.ofx").read_bytes()).json()
    # 382.34 closing after -6.60, -316.67 and -22.00
    assert (doc["opening_balance"], doc["closing_balance"]) == ("727.61", "382.34")


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_a_zip_of_statements_imports_every_member(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "EUR")
    ref = "<AcctSvcrRef>{}</AcctSvcrRef>"
    day1 = _camt053(_entry("50.00", "CRDT", extra=ref.format("A")), closing="150.00")
    day2 = _camt053(_entry("30.00", "DBIT", extra=ref.format("B")), opening="150.00")
    data = _zip({"jan/01.xml": day1, "jan/02.xml": day2, "__MACOSX/._01.xml": b"junk"})
    response = upload(client, book, data, filename="jan.zip")
    assert response.status_code == 201, response.text
    statements = response.json()["statements"]
    assert [(s["filename"], s["new_lines"]) for s in statements] == [
        ("jan.zip:jan/01.xml", 1),
        ("jan.zip:jan/02.xml", 1),
    ]
    assert _counts(app_conn, book.id)["lines"] == 2


@pytest.mark.parametrize(
    ("members", "code", "words"),
    [
        ({"a.xml": _camt053(_entry("1.00", "CRDT"))[:300]}, "malformed_xml", "a.xml (in the ZIP)"),
        ({f"{n}.ofx": b"x" for n in range(101)}, "bad_archive", "at most 100"),
        ({"bomb.ofx": b"\0" * (65 * 1024 * 1024)}, "bad_archive", "more than"),
        ({"inner.zip": b"PK\x03\x04rest"}, "bad_archive", "itself a ZIP"),
    ],
    ids=["bad-member", "too-many", "bomb", "nested"],
)
def test_a_bad_zip_writes_nothing(
    runtime: Runtime,
    client: Any,
    app_conn: psycopg.Connection,
    members: dict[str, bytes],
    code: str,
    words: str,
) -> None:
    book = make_book(runtime, "EUR")
    good = _camt053(_entry("20.00", "CRDT"))
    data = _zip({"good.xml": good, **members})
    before = _counts(app_conn, book.id)
    body = assert_problem(upload(client, book, data, filename="x.zip"), 400, code)
    assert words in body["detail"]
    assert _counts(app_conn, book.id) == before


def test_a_camt053_in_a_currency_the_account_does_not_allow_is_refused(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime)  # a USD book
    _account(client, book, "Assets:Bank:Dollars", currencies=["USD"])
    _account(client, book, "Assets:Bank:Euro", currencies=["EUR"])
    before = _counts(app_conn, book.id)
    eur = _camt053(_entry("20.00", "CRDT"))
    # Without a currency list a bank account holds the book's currency only.
    for account in ("Assets:Bank:Dollars", "Assets:Bank:Operating"):
        body = assert_problem(upload(client, book, eur, account=account), 422)
        assert body["code"] == "currency_not_allowed" and "USD" in body["detail"]
    ofx = _ofx("20230115")  # the same rule for OFX
    assert_problem(upload(client, book, ofx), 422, "currency_not_allowed")
    assert _counts(app_conn, book.id) == before
    assert upload(client, book, eur, account="Assets:Bank:Euro").status_code == 201


def test_a_card_statement_on_a_liability_account(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime, "AUD")
    _account(client, book, "Liabilities:Card:Visa", currencies=["AUD"])
    response = upload(client, book, (OFX / "anzcc.ofx").read_bytes(), "Liabilities:Card:Visa")
    assert response.status_code == 201, response.text
    doc = response.json()
    # A purchase is money out and raises what is owed: both negative.
    assert [x["amount"] for x in doc["lines"]] == ["-5.50"]
    assert (doc["opening_balance"], doc["closing_balance"]) == ("-117.95", "-123.45")
    # Booking the purchase from its line debits the expense and credits the card.
    (line,) = doc["lines"]
    made = client.post(
        f"/v1/bank-statements/{doc['id']}/lines/{line['id']}/entry",
        json={"counter_account": "Expenses:Payment-Fees"},
        headers=auth(book.admin_key),
    )
    assert made.status_code == 201, made.text
    entry = client.get(
        f"/v1/journal-entries/{made.json()['entry_id']}", headers=auth(book.admin_key)
    ).json()
    assert sorted((p["account"], p["amount"]) for p in entry["postings"]) == [
        ("Expenses:Payment-Fees", "5.50"),
        ("Liabilities:Card:Visa", "-5.50"),
    ]
    assert_problem(upload(client, book, _ofx("20230115"), "Income:Services"), 422)


# --- item 17: MT940 -------------------------------------------------------------------


def test_mt940_upload(runtime: Runtime, client: Any, app_conn: psycopg.Connection) -> None:
    book = make_book(runtime, "EUR")
    data = (MT940 / "wolph-mt940__cmxl_mt940.sta").read_bytes()
    several = assert_problem(upload(client, book, data), 422, "several_bank_accounts")
    assert "10020030/1234567" in several["detail"]
    response = upload(client, book, data, bank_account="10020030/1234567", filename="x.sta")
    assert response.status_code == 201, response.text
    doc = response.json()
    assert (doc["format"], doc["opening_balance"], doc["closing_balance"]) == (
        "mt940",
        "2187.95",
        "4387.95",
    )
    assert [x["amount"] for x in doc["lines"]] == ["-800", "3000"]
    before = _counts(app_conn, book.id)
    # Deutsche Mark is no longer a currency: refused, not a database error.
    dem = upload(client, book, data, bank_account="45050050/76198810")
    assert_problem(dem, 422, "unknown_currency")
    asn = upload(client, book, (MT940 / "wolph-mt940__ASNB_mt940.txt").read_bytes())
    assert_problem(asn, 400, "malformed_mt940")
    assert _counts(app_conn, book.id) == before


@pytest.mark.slow
def test_mt940_and_zip_through_the_cli(runtime: Runtime, database_url: str, tmp_path: Path) -> None:
    book = make_book(runtime, "EUR")
    common = ("--account", "Assets:Bank:Operating", "--book", str(book.id), "--format", "json")
    cmxl = MT940 / "wolph-mt940__cmxl_mt940.sta"
    done = run(database_url, "statements", "import", str(cmxl), "--bank-account",
               "10020030/1234567", *common)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (imported,) = json.loads(done.stdout)["statements"]
    assert (imported["format"], imported["new_lines"]) == ("mt940", 2)
    bad = run(database_url, "statements", "import",
              str(MT940 / "wolph-mt940__ASNB_mt940.txt"), *common)  # fmt: skip
    assert bad.returncode != 0 and "MT940" in bad.stderr
    archive = tmp_path / "days.zip"
    archive.write_bytes(_zip({"a.xml": _camt053(_entry("20.00", "CRDT"))}))
    zipped = run(database_url, "statements", "import", str(archive), *common)
    assert zipped.returncode == 0, zipped.stderr
    assert json.loads(zipped.stdout)["statements"][0]["filename"] == "days.zip:a.xml"
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(_zip({"b.ofx": b"\0" * (65 * 1024 * 1024)}))
    refused = run(database_url, "statements", "import", str(bomb), *common)
    assert refused.returncode != 0 and "ZIP" in refused.stderr


def test_csv_mapping_with_indicator_and_balance_columns_through_the_api(
    runtime: Runtime, client: Any
) -> None:
    book = make_book(runtime, "EUR")
    mapping = {
        "date_column": "Date",
        "amount_column": "Amount",
        "indicator_column": "Mark",
        "debit_indicators": ["S"],
        "credit_indicators": ["H"],
        "balance_column": "Balance",
        "reference_column": "Ref",
        "decimal_separator": ",",
        "fixed_currency": "EUR",
        "delimiter": ";",
    }
    saved = client.post(
        "/v1/csv-mappings", json={"name": "Volksbank", "mapping": mapping},
        headers=auth(book.admin_key),
    )  # fmt: skip
    assert saved.status_code == 201, saved.text
    assert saved.json()["mapping"]["debit_indicators"] == ["S"]
    # newest first, as the bank exports it
    data = (
        b"Date;Amount;Mark;Balance;Ref\n"
        b"2023-01-16;30,00;S;70,00;R2\n"
        b"2023-01-15;100,00;H;100,00;R1\n"
    )
    doc = upload(client, book, data, csv_mapping="Volksbank").json()
    assert (doc["opening_balance"], doc["closing_balance"]) == ("0.00", "70.00")
    assert [(x["bank_reference"], x["amount"]) for x in doc["lines"]] == [
        ("R1", "100.00"),
        ("R2", "-30.00"),
    ]


def test_lines_stored_before_0007_keep_deduplicating(server_url: str) -> None:
    from alembic import command
    from psycopg import sql

    from adapters.database import with_database
    from adapters.migrate import alembic_config, upgrade

    name = f"ab_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    try:
        command.upgrade(alembic_config(url), "0006")
        book_id, account_id, statement_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "insert into books (id, name, base_currency) values (%s, 'old', 'EUR')",
                (book_id,),
            )
            conn.execute(
                "insert into accounts (book_id, id, name, type) values"
                " (%s, %s, 'Assets:Bank:Operating', 'asset')",
                (book_id, account_id),
            )
            conn.execute(
                "insert into bank_statements (book_id, id, account_id, format, bank_account,"
                " currency, line_count, new_line_count, fingerprint, file_sha256)"
                " values (%s, %s, %s, 'ofx', 'de89 3704 0044', 'EUR', 1, 1, 'f', 'h')",
                (book_id, statement_id, account_id),
            )
            conn.execute(
                "insert into bank_statement_lines (book_id, id, statement_id, account_id,"
                " line_no, bank_reference, booking_date, amount, currency)"
                " values (%s, %s, %s, %s, 1, 'F1', '2023-01-15', 1, 'EUR')",
                (book_id, uuid.uuid4(), statement_id, account_id),
            )
        upgrade(url)
        with psycopg.connect(url) as conn:
            row = conn.execute("select bank_account from bank_statement_lines").fetchone()
        assert row == ("DE8937040044",)  # as the importer compacts the statement's account
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
