"""Bank statement upload through the API: every third-party fixture, de-duplication,
bad files refused with nothing written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.bank_statements import parse_statement
from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, new_key, open_client
from tests.unit.test_bank_statements import (
    BANK_CSV,
    CAMT053_PROBLEMS,
    CAMT053_UNREADABLE,
    FIXTURES,
    OFX_OUTCOME,
    _ofx,
)

CAMT = FIXTURES / "genkgo-camt"
OFX = FIXTURES / "ofxparse"

# Every fixture that parses cleanly: (path, bank account to pick when the file has several).
PARSEABLE: list[tuple[Path, str | None]] = [
    *[(CAMT / name, None) for name, problems in sorted(CAMT053_PROBLEMS.items()) if not problems],
    *[(OFX / name, None) for name, code in sorted(OFX_OUTCOME.items()) if code is None],
]
MULTI_ACCOUNT = {"multiple_accounts.ofx", "multiple_accounts2.ofx"}
REJECTED: list[tuple[Path, str]] = [
    *[(CAMT / n, p[0]) for n, p in sorted(CAMT053_PROBLEMS.items()) if p],
    *[(CAMT / n, code) for n, code in sorted(CAMT053_UNREADABLE.items())],
    *[(OFX / n, code) for n, code in sorted(OFX_OUTCOME.items()) if code is not None],
    *[(p, "unsupported_format") for p in sorted(CAMT.glob("camt05[24]*.xml"))],
]

CSV_MAPPING = {
    "date_column": "Buchungstag",
    "date_format": "%d.%m.%Y",
    "value_date_column": "Valuta",
    "debit_column": "Soll",
    "credit_column": "Haben",
    "decimal_separator": ",",
    "thousands_separator": ".",
    "reference_column": "Referenz",
    "description_column": "Verwendungszweck",
    "counterparty_column": "Empfänger",
    "fixed_currency": "EUR",
    "delimiter": ";",
    "skip_rows": 1,
    "account_number": "DE89370400440532013000",
}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _counts(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, int]:
    row = conn.execute(
        "select (select count(*) from bank_statements where book_id = %(b)s),"
        " (select count(*) from bank_statement_lines where book_id = %(b)s),"
        " (select count(*) from journal_entries where book_id = %(b)s),"
        " (select count(*) from postings where book_id = %(b)s),"
        " (select count(*) from idempotency_keys where book_id = %(b)s)",
        {"b": book_id},
    ).fetchone()
    assert row is not None
    return dict(zip(("statements", "lines", "entries", "postings", "keys"), row, strict=True))


def _account(client: Any, book: BookFixture, name: str, **extra: Any) -> None:
    response = client.post(
        "/v1/accounts", json={"name": name, **extra}, headers=auth(book.admin_key)
    )
    assert response.status_code == 201, response.text


def upload(
    client: Any,
    book: BookFixture,
    data: bytes,
    account: str = "Assets:Bank:Operating",
    filename: str = "statement",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> Any:
    return client.post(
        "/v1/bank-statements",
        files={"file": (filename, data, "application/octet-stream")},
        data={"account": account, **fields},
        headers={**auth(book.admin_key), **(headers or {})},
    )


def test_every_parseable_fixture_uploads_and_a_second_upload_creates_nothing(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime)
    assert len(PARSEABLE) == 9
    for index, (path, _) in enumerate(PARSEABLE):
        account = f"Assets:Bank:Fixture{index}"
        expected = parse_statement(path.read_bytes())
        # Each bank account in its own currency (the book's is USD).
        currencies = sorted({s.currency for s in expected})
        _account(client, book, account, currencies=currencies)
        picks: list[dict[str, str]] = [{}]
        if path.name in MULTI_ACCOUNT:
            # Two bank accounts in one file: refused until one is named.
            body = assert_problem(upload(client, book, path.read_bytes(), account), 422)
            assert body["code"] == "several_bank_accounts"
            picks = [{"bank_account": s.account or ""} for s in expected]
            # each bank account of the file to its own ledger account
            _account(client, book, account + "b", currencies=currencies)
        for pick_no, pick in enumerate(picks):
            target = account + ("b" if pick_no else "")
            statements = [s for s in expected if not pick or s.account == pick["bank_account"]]
            first = upload(client, book, path.read_bytes(), target, path.name, **pick)
            assert first.status_code == 201, (path.name, first.text)
            doc = first.json()
            assert doc["created"] is True
            assert doc["filename"] == path.name
            assert len(doc["statements"]) == len(statements)
            for summary, parsed in zip(doc["statements"], statements, strict=True):
                assert summary["line_count"] == len(parsed.lines)
                assert summary["new_lines"] == len(parsed.lines)
                assert summary["currency"] == parsed.currency
                assert summary["closing_balance"] == (
                    None if parsed.closing_balance is None else str(parsed.closing_balance)
                )
                assert summary["opening_balance"] == (
                    None if parsed.opening_balance is None else str(parsed.opening_balance)
                )
            assert [x["amount"] for x in doc["lines"]] == [
                str(x.amount) for x in statements[0].lines
            ]
            assert [x["bank_reference"] for x in doc["lines"]] == [
                x.bank_reference for x in statements[0].lines
            ]
            before = _counts(app_conn, book.id)
            again = upload(client, book, path.read_bytes(), target, path.name, **pick)
            assert again.status_code == 200, again.text
            assert again.json()["id"] == doc["id"]
            assert again.json()["created"] is False
            assert again.json()["new_lines"] == 0
            assert again.json()["duplicate_lines"] == len(statements[0].lines)
            assert _counts(app_conn, book.id) == before
    total_lines = sum(len(s.lines) for p, _ in PARSEABLE for s in parse_statement(p.read_bytes()))
    assert _counts(app_conn, book.id)["lines"] == total_lines


def test_get_and_list_statements(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime, "CAD")
    created = upload(client, book, (OFX / "bank_medium.ofx").read_bytes()).json()
    got = client.get(f"/v1/bank-statements/{created['id']}", headers=auth(book.admin_key))
    assert got.status_code == 200
    body = got.json()
    assert body["account"] == "Assets:Bank:Operating"
    assert (body["currency"], body["closing_balance"], body["closing_date"]) == (
        "CAD",
        "382.34",
        "2009-05-23",
    )
    assert [(x["line_no"], x["amount"], x["status"]) for x in body["lines"]] == [
        (1, "-6.60", "unmatched"),
        (2, "-316.67", "unmatched"),
        (3, "-22.00", "unmatched"),
    ]
    listed = client.get(
        "/v1/bank-statements", params={"account": "Assets:Bank:Operating"},
        headers=auth(book.admin_key),
    ).json()  # fmt: skip
    assert [s["id"] for s in listed["data"]] == [created["id"]]
    missing = client.get(f"/v1/bank-statements/{uuid.uuid4()}", headers=auth(book.admin_key))
    assert_problem(missing, 404, "not_found")


@pytest.mark.parametrize(("path", "code"), REJECTED, ids=lambda v: getattr(v, "name", v))
def test_rejected_fixtures_write_nothing(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection, path: Path, code: str
) -> None:
    book = make_book(runtime)
    before = _counts(app_conn, book.id)
    response = upload(client, book, path.read_bytes(), filename=path.name)
    body = assert_problem(response, 422, code)
    assert body["detail"]
    assert _counts(app_conn, book.id) == before


def test_unbalanced_statement_names_the_difference(runtime: Runtime, client: Any) -> None:
    book = make_book(runtime)
    response = upload(client, book, (CAMT / "camt053.v2.five.decimals.xml").read_bytes())
    body = assert_problem(response, 422, "unbalanced_statement")
    assert "opening balance" in body["detail"] and "closing balance" in body["detail"]


def test_truncated_camt_broken_ofx_date_and_missing_csv_column_write_nothing(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime)
    before = _counts(app_conn, book.id)
    camt = (CAMT / "camt053.v2.multi.statement.xml").read_bytes()
    body = assert_problem(upload(client, book, camt[: len(camt) // 2]), 400, "malformed_xml")
    assert "truncated" in body["detail"]
    body = assert_problem(upload(client, book, _ofx("20230230")), 422, "bad_date")
    assert "DTPOSTED" in body["detail"]
    mapping = {**CSV_MAPPING, "reference_column": "Bankreferenz"}
    response = upload(client, book, BANK_CSV, csv_mapping=json.dumps(mapping))
    body = assert_problem(response, 422, "missing_column")
    assert "'Bankreferenz'" in body["detail"]
    # a CSV without a mapping, and a file of no known format
    assert_problem(upload(client, book, BANK_CSV), 400, "unknown_format")
    assert_problem(upload(client, book, b"%PDF-1.7\n"), 400, "unknown_format")
    # truncated OFX
    ofx = (OFX / "checking.ofx").read_bytes()
    assert_problem(upload(client, book, ofx[: len(ofx) // 2]), 400, "truncated_file")
    assert _counts(app_conn, book.id) == before


def test_request_errors(runtime: Runtime, client: Any, app_conn: psycopg.Connection) -> None:
    book = make_book(runtime)
    before = _counts(app_conn, book.id)
    data = (OFX / "checking.ofx").read_bytes()
    assert_problem(upload(client, book, data, account="Income:Services"), 422, "not_a_bank_account")
    assert_problem(upload(client, book, data, account="Assets:Bank:Nope"), 404, "not_found")
    no_file = client.post(
        "/v1/bank-statements", data={"account": "Assets:Bank:Operating"},
        files={"other": ("x", b"1")}, headers=auth(book.admin_key),
    )  # fmt: skip
    assert_problem(no_file, 400, "file_missing")
    no_account = client.post(
        "/v1/bank-statements", files={"file": ("s.ofx", data)}, headers=auth(book.admin_key)
    )
    assert_problem(no_account, 400, "account_missing")
    _account(client, book, "Assets:Bank:Euro", currencies=["EUR"])
    assert_problem(upload(client, book, data, account="Assets:Bank:Euro"), 422,
                   "currency_not_allowed")  # fmt: skip
    bad_mapping = upload(client, book, BANK_CSV, csv_mapping='{"date_column": "D"}')
    assert_problem(bad_mapping, 422, "bad_mapping")
    unknown_field = upload(client, book, BANK_CSV, csv_mapping='{"date_colum": "D"}')
    assert_problem(unknown_field, 422, "bad_mapping")
    key = new_key(runtime, book.id, Role.AUDITOR)
    forbidden = client.post(
        "/v1/bank-statements", files={"file": ("s.ofx", data)},
        data={"account": "Assets:Bank:Operating"}, headers=auth(key),
    )  # fmt: skip
    assert_problem(forbidden, 403, "forbidden")
    assert _counts(app_conn, book.id) == before


def test_csv_with_saved_mapping_and_overlapping_exports(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "EUR")
    saved = client.post(
        "/v1/csv-mappings", json={"name": "Sparkasse", "mapping": CSV_MAPPING},
        headers=auth(book.admin_key),
    )  # fmt: skip
    assert saved.status_code == 201, saved.text
    mapping_id = saved.json()["id"]
    listed = client.get("/v1/csv-mappings", headers=auth(book.admin_key)).json()["data"]
    assert [m["name"] for m in listed] == ["Sparkasse"]
    duplicate_name = client.post(
        "/v1/csv-mappings", json={"name": "Sparkasse", "mapping": CSV_MAPPING},
        headers=auth(book.admin_key),
    )  # fmt: skip
    assert_problem(duplicate_name, 409, "mapping_exists")

    first = upload(client, book, BANK_CSV, csv_mapping=mapping_id, format="csv")
    assert first.status_code == 201, first.text
    assert [(x["amount"], x["counterparty_name"]) for x in first.json()["lines"]] == [
        ("1250.00", "Acme GmbH"),
        ("-49.90", "Hosting AG"),
        ("-49.90", "Hosting AG"),
    ]
    # The next export overlaps: same three rows plus one new; by saved name this time.
    longer = BANK_CSV + b"17.01.2023;17.01.2023;;300,00;Globex;Invoice 2023-002;REF-2\n"
    second = upload(client, book, longer, csv_mapping="Sparkasse")
    assert second.status_code == 201, second.text
    assert (second.json()["new_lines"], second.json()["duplicate_lines"]) == (1, 3)
    assert [(x["line_no"], x["bank_reference"]) for x in second.json()["lines"]] == [(4, "REF-2")]
    assert _counts(app_conn, book.id)["lines"] == 4
    assert _counts(app_conn, book.id)["statements"] == 2


def test_upload_replays_with_an_idempotency_key(
    runtime: Runtime, client: Any, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime)
    data = (OFX / "checking.ofx").read_bytes()
    key = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}
    first = upload(client, book, data, headers=key)
    assert first.status_code == 201
    replay = upload(client, book, data, headers=key)
    assert replay.status_code == 201
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == first.json()
    other = upload(client, book, (OFX / "suncorp.ofx").read_bytes(), headers=key)
    assert_problem(other, 409, "idempotency_key_reused")
    assert _counts(app_conn, book.id)["statements"] == 1


def test_statement_rows_are_append_only(
    runtime: Runtime,
    client: Any,
    app_conn: psycopg.Connection,
    owner_conn: psycopg.Connection,
) -> None:
    book = make_book(runtime)
    upload(client, book, (OFX / "checking.ofx").read_bytes())
    for statement in (
        "update bank_statement_lines set amount = 0 where book_id = %s",
        "delete from bank_statement_lines where book_id = %s",
        "update bank_statements set closing_balance = 0 where book_id = %s",
    ):
        # The application's role holds no such privilege, and even the owner meets the trigger.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_conn.execute(statement, (book.id,))
        with pytest.raises(psycopg.errors.CheckViolation, match="append-only"):
            owner_conn.execute(statement, (book.id,))
