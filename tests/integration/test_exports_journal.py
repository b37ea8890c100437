"""The ERP journal feed: cursor over the seal sequence, layouts, manifest, mappings."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.cli import main as cli_main
from adapters.exports import journal_feed
from adapters.exports.errors import UnsupportedCurrency
from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.books import AccountSpec, create_account
from ledger.postgres.posting import post_entries, post_entry, reverse_entry
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client


def sale(day: date, amount: str, currency: str = "USD", memo: str = "sale", **kw: Any) -> Any:
    return build_entry(
        day,
        memo,
        [
            Posting("Assets:Bank:Operating", Money.exact(amount, currency), kw.get("customer")),
            Posting(
                "Income:Services",
                Money.exact("-" + amount, currency),
                kw.get("customer"),
                kw.get("document"),
            ),
        ],
    )


def own_sale(i: int) -> Any:
    return build_entry(
        date(2026, 1, 5),
        f"writer {i}",
        [
            Posting(f"Assets:Bank:W{i}", Money.exact(f"{i + 1}.00", "USD")),
            Posting(f"Income:W{i}", Money.exact(f"-{i + 1}.00", "USD")),
        ],
    )


def post(runtime: Runtime, book_id: uuid.UUID, *entries: Any) -> list[uuid.UUID]:
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book_id, list(entries))
        uow.commit()
    return [p.id for p in posted]


def follow(
    runtime: Runtime, book_id: uuid.UUID, since: int, limit: int = 3
) -> tuple[list[str], int]:
    """Read the feed from `since` until it is empty; the entry ids and the last cursor."""
    seen: list[str] = []
    while True:
        batch = journal_feed.seal_then_build(runtime.connection, book_id, "jsonl", since, limit)
        if batch.count == 0:
            assert batch.next_cursor == since
            return seen, since
        seen += [json.loads(line)["entry_id"] for line in batch.body.decode().splitlines()]
        assert batch.first_seq == since + 1  # gapless: nothing is skipped
        since = batch.next_cursor


@pytest.mark.slow
def test_out_of_order_commits_are_delivered_exactly_once(runtime: Runtime) -> None:
    fixture = make_book(runtime)
    writers = 8
    # Each writer on its own accounts: open transactions on one account would
    # wait on each other's balance-projection rows, not on the feed.
    with unit_of_work(runtime.connection) as uow:
        for i in range(writers):
            create_account(uow.conn, fixture.id, AccountSpec(name=f"Assets:Bank:W{i}"))
            create_account(uow.conn, fixture.id, AccountSpec(name=f"Income:W{i}"))
        uow.commit()
    posted: dict[int, str] = {}
    go = [threading.Event() for _ in range(writers)]
    inserted = [threading.Event() for _ in range(writers)]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with unit_of_work(runtime.connection) as uow:
                entry = post_entry(uow.conn, fixture.id, own_sale(i))
                posted[i] = str(entry.id)
                inserted[i].set()
                assert go[i].wait(timeout=60)  # hold the transaction open until released
                uow.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            inserted[i].set()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for i, t in enumerate(threads):  # insert in order 0..7: recorded_at ascends
        t.start()
        inserted[i].wait(timeout=60)
    delivered: list[str] = []
    cursor = 0
    # Commit in reverse order, reading the feed after each commit.
    for i in reversed(range(writers)):
        go[i].set()
        threads[i].join(timeout=60)
        seen, cursor = follow(runtime, fixture.id, cursor)
        delivered += seen
        assert seen == [posted[i]]  # the entry just committed, and only it
    assert not errors
    assert len(delivered) == len(set(delivered)) == writers
    assert set(delivered) == set(posted.values())
    # The first-recorded entry committed last and was delivered last, not skipped.
    assert delivered[-1] == posted[0]
    # Following again from the start gives the same sequence.
    again, end = follow(runtime, fixture.id, 0, limit=5)
    assert again == delivered and end == cursor


@pytest.mark.slow
def test_concurrent_writers_and_a_follower(runtime: Runtime) -> None:
    """Writers commit while a follower reads: every entry exactly once."""
    fixture = make_book(runtime)
    stop = threading.Event()
    delivered: list[str] = []
    cursor = 0
    failures: list[BaseException] = []

    def follower() -> None:
        nonlocal cursor
        try:
            while not stop.is_set():
                seen, cursor = follow(runtime, fixture.id, cursor, limit=7)
                delivered.extend(seen)
        except BaseException as exc:  # pragma: no cover
            failures.append(exc)

    def writer(w: int) -> None:
        for n in range(15):
            post(runtime, fixture.id, sale(date(2026, 2, 1 + n % 27), f"{w}.{n:02d}"))

    reader = threading.Thread(target=follower)
    reader.start()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert not failures
    seen, _ = follow(runtime, fixture.id, cursor)
    delivered += seen
    with runtime.connection() as conn:
        ids = {
            str(r[0])
            for r in conn.execute(
                "select id from journal_entries where book_id = %s", (fixture.id,)
            )
        }
    assert len(delivered) == len(set(delivered)) == 90
    assert set(delivered) == ids


@pytest.fixture(scope="module")
def fed(runtime: Runtime) -> BookFixture:
    """A book with USD and EUR entries, customers, documents and a reversal."""
    fixture = make_book(runtime)
    ids = post(
        runtime,
        fixture.id,
        sale(date(2026, 1, 5), "100.00", customer="cus_1", document="INV-1"),
        sale(date(2026, 1, 6), "20.50", "EUR", memo='multi\nline, "quoted"'),
        sale(date(2026, 1, 7), "7.25", customer="cus_2", document="INV-2"),
    )
    with unit_of_work(runtime.connection) as uow:
        reverse_entry(uow.conn, fixture.id, str(ids[2]), effective_date=date(2026, 1, 9))
        # SAP refuses a file without its company code (erp_formats.check_mapping).
        journal_feed.save_mapping(uow.conn, fixture.id, "sap", {"company_code": "1000"}, {})
        uow.commit()
    return fixture


def test_batches_are_deterministic_and_the_manifest_adds_up(
    runtime: Runtime, fed: BookFixture
) -> None:
    for fmt in journal_feed.FORMATS:
        if fmt == "xero":
            continue  # EUR entry: Xero refuses it (tested below)
        one = journal_feed.seal_then_build(runtime.connection, fed.id, fmt, 0, 100)
        two = journal_feed.seal_then_build(runtime.connection, fed.id, fmt, 0, 100)
        assert one.body == two.body, fmt
        manifest = one.manifest(fed.id)
        assert manifest["sha256"] == hashlib.sha256(one.body).hexdigest()
        assert (manifest["first_seq"], manifest["last_seq"], manifest["count"]) == (1, 4, 4)
        assert manifest["next_cursor"] == "4"
        assert manifest["lines"] == 8
        assert manifest["totals"] == {
            "EUR": {"debit": "20.50", "credit": "20.50"},
            "USD": {"debit": "114.50", "credit": "114.50"},
        }


def test_a_batch_is_the_cursors_range_far_into_the_feed(runtime: Runtime, fed: BookFixture) -> None:
    """A batch reads (since, since + limit]; cursors and limits past 32,767 (what psycopg
    sends as a smallint) read an empty range, and a limit past the end reads to it."""
    for since, limit, expected in ((40_000, 10_000, 0), (32_767, 1, 0), (2, 10_000, 2)):
        batch = journal_feed.seal_then_build(runtime.connection, fed.id, "jsonl", since, limit)
        assert batch.manifest(fed.id)["count"] == expected, (since, limit)


def rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))


def test_erp_layouts(runtime: Runtime, fed: BookFixture) -> None:
    book_hex = fed.id.hex[:8].upper()
    ns = journal_feed.seal_then_build(runtime.connection, fed.id, "netsuite", 0, 100).body
    assert ns.startswith(
        b"External ID,Date,Subsidiary,Currency,Exchange Rate,Account,Debit,Credit,Memo,Name,"
        b"Line Memo\r\n"
    )
    lines = rows(ns)
    assert lines[0] == {
        "External ID": f"AB-{book_hex}-1",
        "Date": "01/05/2026",
        "Subsidiary": "",
        "Currency": "USD",
        "Exchange Rate": "1",
        "Account": "1000",
        "Debit": "100.00",
        "Credit": "",
        "Memo": "sale",
        "Name": "cus_1",
        "Line Memo": "sale",
    }
    assert lines[1]["Account"] == "4020" and lines[1]["Credit"] == "100.00"
    assert lines[1]["Line Memo"] == "INV-1"
    eur = [r for r in lines if r["Currency"] == "EUR"]
    assert eur[0]["Exchange Rate"] == "" and eur[0]["Memo"] == 'multi line, "quoted"'
    # The reversal is a new journal with its own external id, signs swapped.
    reversal = [r for r in lines if r["External ID"] == f"AB-{book_hex}-4"]
    assert [(r["Account"], r["Debit"], r["Credit"]) for r in reversal] == [
        ("1000", "", "7.25"),
        ("4020", "7.25", ""),
    ]
    assert reversal[0]["Date"] == "01/09/2026"

    qb = rows(journal_feed.seal_then_build(runtime.connection, fed.id, "quickbooks", 0, 1).body)
    assert list(qb[0]) == [
        "Journal No.",
        "Journal Date",
        "Account Name",
        "Debits",
        "Credits",
        "Description",
        "Name",
        "Currency Code",
    ]
    assert [(r["Account Name"], r["Debits"], r["Credits"]) for r in qb] == [
        ("Assets:Bank:Operating", "100.00", ""),
        ("Income:Services", "", "100.00"),
    ]

    sap = rows(journal_feed.seal_then_build(runtime.connection, fed.id, "sap", 0, 1).body)
    assert sap[0]["RECORD_TYPE"] == "H" and sap[0]["PSTNG_DATE"] == "20260105"
    assert sap[0]["COMP_CODE"] == "1000"
    assert sap[0]["DOC_TYPE"] == "SA" and sap[0]["REF_DOC_NO"] == "AB-1"
    assert sap[0]["HEADER_TXT"] == f"AB-{book_hex}-1"
    assert [(r["ITEMNO_ACC"], r["GL_ACCOUNT"], r["AMT_DOCCUR"]) for r in sap[1:]] == [
        ("0000000001", "1000", "100.00"),
        ("0000000002", "4020", "-100.00"),
    ]

    with pytest.raises(UnsupportedCurrency):
        journal_feed.seal_then_build(runtime.connection, fed.id, "xero", 0, 100)
    xero = rows(journal_feed.seal_then_build(runtime.connection, fed.id, "xero", 0, 1).body)
    assert xero == [
        {
            "Narration": f"AB-{book_hex}-1 sale",
            "Date": "05/01/2026",
            "Description": "sale",
            "AccountCode": "1000",
            "TaxRate": "Tax Exempt",
            "Amount": "100.00",
            "TrackingName1": "",
            "TrackingOption1": "",
        },
        {
            "Narration": f"AB-{book_hex}-1 sale",
            "Date": "05/01/2026",
            "Description": "INV-1",
            "AccountCode": "4020",
            "TaxRate": "Tax Exempt",
            "Amount": "-100.00",
            "TrackingName1": "",
            "TrackingOption1": "",
        },
    ]


def test_http_feed_mapping_and_errors(runtime: Runtime, fed: BookFixture) -> None:
    headers = auth(fed.admin_key)
    with open_client(runtime) as client:
        r = client.get(
            "/v1/exports/journal", params={"format": "jsonl", "limit": 2}, headers=headers
        )
        assert r.status_code == 200, r.text
        assert r.headers["next-cursor"] == "2"
        assert r.headers["x-batch-sha256"] == hashlib.sha256(r.content).hexdigest()
        first = [json.loads(line) for line in r.text.splitlines()]
        assert [e["seq"] for e in first] == [1, 2]
        r2 = client.get(
            "/v1/exports/journal",
            params={"format": "jsonl", "since": r.headers["next-cursor"], "limit": 2},
            headers=headers,
        )
        assert [json.loads(line)["seq"] for line in r2.text.splitlines()] == [3, 4]
        assert json.loads(r2.text.splitlines()[1])["reverses"] is not None
        m = client.get(
            "/v1/exports/journal",
            params={"format": "jsonl", "since": "2", "limit": 2, "manifest": "true"},
            headers=headers,
        ).json()
        assert m["sha256"] == hashlib.sha256(r2.content).hexdigest()
        assert (m["first_seq"], m["last_seq"], m["count"]) == (3, 4, 2)
        # Past the end: an empty batch, same cursor.
        end = client.get("/v1/exports/journal", params={"since": "99"}, headers=headers)
        assert end.status_code == 200 and end.content == b""
        assert end.headers["next-cursor"] == "99" and end.headers["x-batch-count"] == "0"
        assert_problem(
            client.get("/v1/exports/journal", params={"format": "oracle"}, headers=headers),
            400,
            "unknown_format",
        )
        assert_problem(
            client.get("/v1/exports/journal", params={"since": "abc"}, headers=headers),
            400,
            "invalid_cursor",
        )
        # Mapping: mapped accounts use the ERP code, the rest fall back to our code.
        put = client.put(
            "/v1/erp-mappings/netsuite",
            json={
                "settings": {"subsidiary": "Acme US", "date_format": "YYYY-MM-DD"},
                "accounts": {"Assets:Bank:Operating": "10100 Operating Account"},
            },
            headers=headers,
        )
        assert put.status_code == 200, put.text
        assert put.json()["accounts"] == {"Assets:Bank:Operating": "10100 Operating Account"}
        ns = client.get(
            "/v1/exports/journal", params={"format": "netsuite", "limit": 1}, headers=headers
        )
        assert [(r["Account"], r["Subsidiary"], r["Date"]) for r in rows(ns.content)] == [
            ("10100 Operating Account", "Acme US", "2026-01-05"),
            ("4020", "Acme US", "2026-01-05"),
        ]
        assert (
            client.get("/v1/erp-mappings/netsuite", headers=headers).json()["settings"][
                "subsidiary"
            ]
            == "Acme US"
        )
        assert_problem(
            client.put(
                "/v1/erp-mappings/netsuite",
                json={"accounts": {"Assets:Nope": "1"}},
                headers=headers,
            ),
            422,
            "invalid_mapping",
        )
        assert_problem(
            client.put("/v1/erp-mappings/oracle", json={}, headers=headers), 400, "unknown_format"
        )
        # The failed PUT changed nothing.
        assert client.get("/v1/erp-mappings/netsuite", headers=headers).json()["accounts"] == {
            "Assets:Bank:Operating": "10100 Operating Account"
        }
        xero = client.get("/v1/exports/journal", params={"format": "xero"}, headers=headers)
        assert_problem(xero, 422, "unsupported_currency")


def test_cli_journal(
    runtime: Runtime,
    fed: BookFixture,
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
    capsys: Any,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    out = tmp_path / "batch.csv"
    args = ["export", "journal", "--format", "quickbooks", "--book", str(fed.id)]
    assert cli_main([*args, "--since", "1", "--limit", "2", "--out", str(out)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["next_cursor"] == "3" and manifest["count"] == 2
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["totals"]["EUR"] == {"debit": "20.50", "credit": "20.50"}
    assert Decimal(manifest["totals"]["USD"]["debit"]) == Decimal("7.25")
    assert cli_main([*args[:3], "oracle", "--book", str(fed.id)]) == 2
    assert "unknown export format" in capsys.readouterr().err


def test_posting_dimensions_reach_the_feed(runtime: Runtime) -> None:
    """Dimensions are read as text and parsed only when a posting has some
    (journal_feed.read_entries): both kinds come out as before."""
    book = make_book(runtime)
    dims = {"project": "Apollo 11", "région": "EU", "nested": {"a": [1, "x"]}}
    entry = build_entry(
        date(2026, 2, 3),
        "tagged",
        [
            Posting("Assets:Bank:Operating", Money.exact("12.00", "USD")),
            Posting("Income:Services", Money.exact("-12.00", "USD"), None, None, dims),  # type: ignore[arg-type]
        ],
    )
    post(runtime, book.id, entry)
    batch = journal_feed.seal_then_build(runtime.connection, book.id, "jsonl", 0, 10)
    (line,) = batch.body.decode().splitlines()
    assert [p["dimensions"] for p in json.loads(line)["lines"]] == [{}, dims]
    assert '"dimensions":{"nested":{"a":[1,"x"]},"project":"Apollo 11","région":"EU"}' in line
    with unit_of_work(runtime.connection) as uow:
        journal_feed.save_mapping(
            uow.conn,
            book.id,
            "xero",
            {"tracking_name": "Project", "tracking_dimension": "project"},
            {},
        )
        uow.commit()
    xero = rows(journal_feed.seal_then_build(runtime.connection, book.id, "xero", 0, 10).body)
    assert [(r["TrackingName1"], r["TrackingOption1"]) for r in xero] == [
        ("", ""),
        ("Project", "Apollo 11"),
    ]
