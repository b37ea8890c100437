"""The journal feed's layouts written in PostgreSQL (feed_sql) give the bytes the Python
layouts (erp_formats, through journal_feed.build_in_python) give, on an awkward book.

build_batch writes jsonl, netsuite, quickbooks and sap in SQL; build_in_python is the
reference (and Xero's layout). Every batch is compared whole: body, counts, totals and
warnings, page by page, at several page sizes, mappings and session time zones.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.exports import feed_sql, journal_feed
from adapters.exports.errors import MissingMapping
from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.errors import LedgerError
from ledger.money import Money
from ledger.postgres import posting
from ledger.postgres.books import AccountSpec, create_account
from ledger.postgres.posting import post_entries, reverse_entry
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book

AWKWARD = [
    'say "hi", then\nbye\r\n',
    "tab\there  spaced ",
    "naïve café — 日本語 😀",
    "ctl \x01\x1e\x1f\x7f \u2028\u2029\u3000\xa0\x85 \\ back\\slash \\. \\N \t",
    "=SUM(A1);a,b",
    " ",
    "",
    "x" * 70 + "é" * 10,
]
# free JSON in dimensions and metadata: floats as json.loads reads them back, big ints
DIMENSIONS: list[dict[str, Any]] = [
    {},
    {"région": "EU", "project": 'Apollo "11", phase\n2'},
    {"n": 1.5, "tiny": 0.00001, "big": 10**30, "e": 1.5e16, "f": 1e15, "pi": 3.141592653589793},
    {"nested": {"z": [1, "x", None, True, False, -2.50], "a": {}}, "": [], "Z": "\u2028"},
    {"neg": -0.0, "k": 123456789012345678.5, "e9": 1e-9},
]


def _account(conn: psycopg.Connection, book: uuid.UUID, name: str, code: str | None) -> None:
    create_account(conn, book, AccountSpec(name=name, code=code))


@pytest.fixture(scope="module")
def awkward(runtime: Runtime) -> BookFixture:
    fixture = make_book(runtime)
    book = fixture.id
    customers = [uuid.uuid4() for _ in AWKWARD]
    with unit_of_work(runtime.connection) as uow:
        _account(uow.conn, book, "Income:Consulting", 'I,"4000"')
        _account(uow.conn, book, "Income:Licences", "")
        _account(uow.conn, book, "Assets:Bank:Tokyo", "1200\n1")
        for customer, name in zip(customers, AWKWARD, strict=True):
            uow.conn.execute(
                "insert into customers (book_id, id, name, currency) values (%s, %s, %s, 'USD')",
                (book, customer, name),
            )
        uow.commit()
    incomes = ["Income:Services", "Income:Consulting", "Income:Licences"]
    amounts = {
        "USD": ["100.00", "0.01", "123456789012345.67", "7.25"],
        "EUR": ["20.50", "99999999999.99"],
        "JPY": ["1", "1500000", "987654321098"],
        "KWD": ["0.001", "12.345", "1000000.100"],
    }
    entries = []
    for i in range(60):
        currency = list(amounts)[i % 4]
        amount = amounts[currency][i % len(amounts[currency])]
        text = AWKWARD[i % len(AWKWARD)]
        known = str(customers[i % len(customers)])
        customer = [None, known, text or None, "cus_" + str(i), known.upper()][i % 5]
        document = [None, text or None, "INV-" + str(i), None][i % 4]
        dims = DIMENSIONS[i % len(DIMENSIONS)]
        postings = [
            Posting("Assets:Bank:Operating", Money.exact(amount, currency), customer, document),
            Posting(
                incomes[i % 3],
                Money.exact("-" + amount, currency),
                customer if i % 2 else None,
                document if i % 3 else text or None,
                dims,  # type: ignore[arg-type]
            ),
        ]
        if i % 7 == 0:  # a third line: the bank account with a code that needs quoting
            postings[0] = Posting("Assets:Bank:Tokyo", Money.exact(amount, currency), customer)
            postings.append(Posting("Assets:Bank:Operating", Money.exact("0", currency)))
        metadata = DIMENSIONS[(i + 2) % len(DIMENSIONS)] if i % 2 else None
        entries.append(
            build_entry(
                date(2026 - i % 3, 1 + i % 12, 1 + i % 28),
                [text, "plain", 'memo, "quoted"\nline', "long " * 12, ""][i % 5]
                + (" ü" if i % 6 else ""),
                postings,
                metadata=metadata,
            )
        )
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book, entries)
        uow.commit()
    for k, entry in enumerate(posted[::9]):
        with unit_of_work(runtime.connection) as uow:
            reverse_entry(uow.conn, book, str(entry.id), memo=AWKWARD[k % len(AWKWARD)] or None)
            uow.commit()
    return fixture


MAPPINGS: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("jsonl", {}, {}),
    ("netsuite", {}, {}),
    ("netsuite", {"subsidiary": 'Parent, "Co"', "date_format": "DD/MM/YYYY"}, {}),
    ("netsuite", {"date_format": "YYYY-MM-DD"}, {"Income:Consulting": "4000 Consulting, Ltd"}),
    ("quickbooks", {}, {}),
    ("quickbooks", {"date_format": "YYYY-MM-DD"}, {"Income:Services": 'Sales "Q"\nIncome'}),
    ("sap", {"company_code": "1000"}, {}),
    ("sap", {"company_code": 'C,"1"', "doc_type": "ZÄ"}, {"Income:Licences": "700100"}),
]


def batches(
    conn: psycopg.Connection, book: uuid.UUID, fmt: str, limit: int
) -> list[tuple[journal_feed.Batch, journal_feed.Batch]]:
    """Follow the feed: each page as build_batch (SQL) and as build_in_python gives it."""
    base = conn.execute("select base_currency from books where id = %s", (book,)).fetchone()
    mapping = journal_feed.load_mapping(conn, book, fmt)
    out = []
    since = 0
    while True:
        new = journal_feed.build_batch(conn, book, fmt, since, limit)
        old = journal_feed.build_in_python(conn, book, fmt, since, limit, base[0], mapping)
        out.append((new, old))
        if new.count == 0:
            return out
        since = new.next_cursor


@pytest.mark.parametrize(("fmt", "settings", "codes"), MAPPINGS)
def test_sql_layouts_write_the_python_bytes(
    runtime: Runtime,
    awkward: BookFixture,
    fmt: str,
    settings: dict[str, str],
    codes: dict[str, str],
) -> None:
    journal_feed.seal_then_build(runtime.connection, awkward.id, "jsonl", 0, 1)
    with runtime.connection() as conn:
        if fmt != "jsonl":
            journal_feed.save_mapping(conn, awkward.id, fmt, settings, codes)
        for zone, limit in [("UTC", 1000), ("Asia/Kolkata", 7), ("America/St_Johns", 1)]:
            conn.execute("select set_config('TimeZone', %s, true)", (zone,))
            pages = batches(conn, awkward.id, fmt, limit)
            assert sum(new.count for new, _ in pages) == 67  # 60 entries and 7 reversals
            for new, old in pages:
                assert new.body == old.body, (fmt, zone, new.since)
                assert new == old
                assert type(new.lines) is int  # the manifest is JSON (Decimal(4) == 4)
        conn.rollback()


def test_jsonl_rows_of_a_few_entries_join_to_the_python_bytes(
    runtime: Runtime, awkward: BookFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JSON Lines page comes as COPY rows of feed_sql.CHUNK entries each: with rows of
    2 and 3 entries, pages of 1,000, 7 and 2 entries cross row ends everywhere."""
    journal_feed.seal_then_build(runtime.connection, awkward.id, "jsonl", 0, 1)
    with runtime.connection() as conn:
        for chunk in (2, 3):
            monkeypatch.setattr(feed_sql, "CHUNK", chunk)
            for limit in (1000, 7, 2):
                pages = batches(conn, awkward.id, "jsonl", limit)
                assert sum(new.count for new, _ in pages) == 67
                for new, old in pages:
                    assert new == old, (chunk, limit, new.since)
                    # hashed as the rows came: the body's hash
                    assert new.digest == hashlib.sha256(old.body).hexdigest() == old.sha256
        conn.rollback()


def test_copy_values_unframes_rows_split_across_blocks_of_any_size() -> None:
    """PostgreSQL sends a COPY row a message, but the reader holds for any split of the
    stream: the values and the hash of all but the first are the same."""
    values = [b'[["2","1","2","3"],[]]', b"", b"a\nb\n", bytes(range(256)) * 3]
    stream = feed_sql._BINARY_COPY + bytes(8)
    for value in values:
        stream += struct.pack("!hi", 1, len(value)) + value
    stream += struct.pack("!h", -1)
    digest = hashlib.sha256(b"".join(values[1:])).hexdigest()
    for size in (1, 2, 5, 19, 20, 25, 64, len(stream)):
        blocks = [stream[i : i + size] for i in range(0, len(stream), size)]
        got, got_digest = feed_sql._copy_values(blocks)
        assert [bytes(v) for v in got] == values and got_digest == digest, size
    for broken in (stream[:-1], stream[:-2], b"PGCOPY\n" + stream[7:].replace(b"\xff", b"0", 1)):
        with pytest.raises(RuntimeError, match="binary form"):
            feed_sql._copy_values([broken])


def test_the_book_is_as_awkward_as_it_says(runtime: Runtime, awkward: BookFixture) -> None:
    """The comparison above is worth something only if the book has these cases."""
    journal_feed.seal_then_build(runtime.connection, awkward.id, "jsonl", 0, 1)
    with runtime.connection() as conn:
        (batch,) = [new for new, _ in batches(conn, awkward.id, "jsonl", 1000) if new.count]
        conn.rollback()
    body = batch.body.decode()
    lines = [json.loads(line) for line in body.split("\n")[:-1]]  # not splitlines: \u2028
    postings = [p for e in lines for p in e["lines"]]
    assert sum(1 for e in lines if e["reverses"]) == 7
    assert {"USD", "EUR", "JPY", "KWD"} == set(batch.totals)
    assert batch.totals["KWD"][0] > 0 and str(batch.totals["JPY"][0]).isdigit()
    assert any(p["customer_name"] and "\n" in p["customer_name"] for p in postings)
    assert any(p["customer_name"] is None and p["customer"] for p in postings)
    assert any(p["dimensions"] == {} for p in postings)
    assert (
        '"e":15000000000000000' in body
        and '"e9":1e-09' in body
        and '"tiny":1e-05' in body
        and '"f":1000000000000000.0' in body
    )
    assert any("\u2028" in (p["document"] or "") for p in postings)
    assert any("\x1e" in e["memo"] and "\\." in e["memo"] for e in lines)
    assert any(e["metadata"] for e in lines) and any(not e["metadata"] for e in lines)


JSON_VALUES: list[Any] = [
    {"b": 1, "a": [1.0, 2.5, -0.0, 1e-7, 1e22, 5e-324, 1.7976931348623157e308]},
    {"é": "x", "e": "y", "\U0001f600": "z", "Z": None, "10": True, "9": False},
    ['\x01\x1f"\\/\u2028\x7f', 12345678901234567890123, -1, 0.1, 100.0, 0.30000000000000004],
    [],
    {},
    "str",
    [[[{"k": [0.5, 1e16, 123456789.125]}]]],
]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_ab_pyjson_is_json_dumps_of_json_loads(runtime: Runtime, value: Any) -> None:
    with runtime.connection() as conn:
        text, stored = conn.execute(
            "select ab_pyjson(%s::jsonb), %s::jsonb::text", (json.dumps(value),) * 2
        ).fetchone() or ("", "")
    expected = json.dumps(
        json.loads(stored), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert text == expected


def test_ab_fold_and_ab_csv_are_str_split_and_csv_writer(runtime: Runtime) -> None:
    import csv
    import io

    spaces = "".join(
        chr(c) for c in range(1, sys.maxunicode + 1) if chr(c).isspace() or c in (0x200B, 0xFEFF)
    )
    samples = [*AWKWARD, spaces, f"a{spaces}b", "a,b", 'q"', "\r", "\n", None]
    with runtime.connection() as conn:
        for value in samples:
            folded, cell = conn.execute(
                "select ab_fold(%s), ab_csv(%s) || ',z'", (value, value)
            ).fetchone() or ("", "")
            out = io.StringIO()
            csv.writer(out, lineterminator="\r\n").writerow([value, "z"])
            assert folded == " ".join((value or "").split())
            assert cell + "\r\n" == out.getvalue()


def test_every_format_is_written_in_sql() -> None:
    assert set(feed_sql.SQL_FORMATS) == set(journal_feed.FORMATS)


def _outcome(build: Callable[..., journal_feed.Batch], *args: Any) -> Any:
    """The batch, or the refusal as the API reports it (its type, message and fields)."""
    try:
        return build(*args)
    except LedgerError as error:
        return (type(error), error.message, error.fields)


# Xero: tracking by customer (the default dimension) and by every kind of dimension value
# the awkward book holds (strings, ints, floats, objects and arrays, none).
XERO: list[dict[str, str]] = [
    {},
    {"tracking_name": 'Client, "C"', "date_format": "YYYY-MM-DD", "tax_rate": "GST, 10%"},
    *(
        {"tracking_name": "Dim", "tracking_dimension": name}
        for name in [
            *("région", "project", "n", "tiny", "big", "e", "f", "pi", "neg", "k"),
            *("e9", "nested", "", "Z", "missing"),
        ]
    ),
]


@pytest.mark.parametrize("settings", XERO)
def test_sql_xero_writes_the_python_bytes_or_refuses_alike(
    runtime: Runtime, awkward: BookFixture, settings: dict[str, str]
) -> None:
    """Every page of 1 and of 7 entries: the same bytes, or the same refusal (the awkward
    book's entries in EUR, JPY and KWD are not in its base currency)."""
    journal_feed.seal_then_build(runtime.connection, awkward.id, "jsonl", 0, 1)
    book = awkward.id
    with runtime.connection() as conn:
        journal_feed.save_mapping(conn, book, "xero", settings, {"Income:Licences": "200"})
        base = conn.execute("select base_currency from books where id = %s", (book,)).fetchone()
        assert base is not None
        mapping = journal_feed.load_mapping(conn, book, "xero")
        written = refused = 0
        for zone, limit in [("UTC", 1), ("Asia/Kolkata", 7)]:
            conn.execute("select set_config('TimeZone', %s, true)", (zone,))
            for since in range(0, 68, limit):
                page = (conn, book, "xero", since, limit)
                new = _outcome(journal_feed.build_batch, *page)
                old = _outcome(journal_feed.build_in_python, *page, base[0], mapping)
                assert new == old, (settings, since, limit)
                written += isinstance(new, journal_feed.Batch) and new.count > 0
                refused += not isinstance(new, journal_feed.Batch)
        conn.rollback()
    assert written > 10 and refused > 10


def test_sql_xero_tax_lines_take_the_tax_line_rate_or_are_refused(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        _account(uow.conn, book.id, "Liabilities:Tax:GST", "2200")
        post_entries(
            uow.conn,
            book.id,
            [
                build_entry(
                    date(2026, 3, 1),
                    "sale, taxed",
                    [
                        Posting("Assets:Bank:Operating", Money.exact("11.00", "USD")),
                        Posting("Income:Services", Money.exact("-10.00", "USD")),
                        Posting("Liabilities:Tax:GST", Money.exact("-1.00", "USD")),
                    ],
                )
            ],
        )
        uow.commit()
    journal_feed.seal_then_build(runtime.connection, book.id, "jsonl", 0, 1)
    with runtime.connection() as conn:
        base = conn.execute("select base_currency from books where id = %s", (book.id,)).fetchone()
        assert base is not None
        for settings in [{}, {"tax_line_rate": "No VAT"}]:
            journal_feed.save_mapping(conn, book.id, "xero", settings, {})
            mapping = journal_feed.load_mapping(conn, book.id, "xero")
            page = (conn, book.id, "xero", 0, 10)
            new = _outcome(journal_feed.build_batch, *page)
            old = _outcome(journal_feed.build_in_python, *page, base[0], mapping)
            assert new == old
            if settings:
                assert b",2200,No VAT,-1.00,," in new.body
            else:
                assert new[0] is MissingMapping
        conn.rollback()


def test_pages_whose_ids_interleave_count_only_their_own_lines(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches sealed one after the other whose entry ids alternate (as two posters'
    ids can): each page's key range holds the other batch's entries too, and its lines and
    totals are its own (the JSON Lines totals skip that check only when the range holds
    no other entry)."""
    fixture = make_book(runtime)
    ids = posting.new_entry_ids(24)
    calls = iter([ids[0::2], ids[1::2]])
    monkeypatch.setattr(posting, "new_entry_ids", lambda count: next(calls))
    for batch in range(2):
        entries = [
            build_entry(
                date(2026, 1, 1 + i),
                f"batch {batch} entry {i}",
                [
                    Posting("Assets:Bank:Operating", Money.exact(f"{batch + 1}{i}.25", "USD")),
                    Posting("Income:Services", Money.exact(f"-{batch + 1}{i}.25", "USD")),
                ],
            )
            for i in range(12)
        ]
        with unit_of_work(runtime.connection) as uow:
            post_entries(uow.conn, fixture.id, entries)
            uow.commit()
    journal_feed.seal_then_build(runtime.connection, fixture.id, "jsonl", 0, 1)
    with runtime.connection() as conn:
        for fmt in ("jsonl", "netsuite"):
            for limit in (12, 5, 24):
                pages = batches(conn, fixture.id, fmt, limit)
                assert sum(new.count for new, _ in pages) == 24
                for new, old in pages:
                    assert new == old, (fmt, limit, new.since)
        first = journal_feed.build_batch(conn, fixture.id, "jsonl", 0, 12)
        total = sum(Decimal(f"1{i}.25") for i in range(12))  # the first batch's
        assert first.lines == 24 and first.totals == {"USD": (total, total)}
        conn.rollback()
