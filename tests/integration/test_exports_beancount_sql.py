"""PostgreSQL writes the Beancount export's transactions; Python's rules are the reference.

`ENTRIES_IN_ORDER` renders each transaction in SQL (its header, its postings'
lines) and falls back to `_transaction` for metadata SQL cannot render as
`json.dumps` would. These tests run both on the same entries — strings with
quotes, backslashes, newlines, control characters and non-ASCII text in memos,
customer names and ids, documents and metadata — and require the same bytes.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
import pytest

from adapters.exports.beancount import (
    ENTRIES_IN_ORDER,
    _Account,
    _quoted,
    _safe_link,
    beancount_account,
    begin_snapshot,
    entry_params,
    export_settings,
    python_entry_text,
    quote,
    safe_link,
)
from adapters.runtime import Runtime
from billing.postgres.customers import CustomerSpec, upsert_customer
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import post_entries, reverse_entry
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture

pytestmark = pytest.mark.slow

AWKWARD = [
    "",
    "plain",
    'say "hi"',
    "back\\slash",
    '\\"',
    '"\\',
    "two\nlines",
    "tab\there\r\n",
    "\x01\x1f\x7f",
    "ünïcödé",
    "日本語",
    "emoji 😀",
    "---",
    "-a-",
    "a b/c.d_e-F9",
    "doc:in_123",
    "ÿ/ß.x",
]


def test_sql_quote_and_safe_link_are_pythons(runtime: Runtime) -> None:
    with runtime.connection() as conn:
        rows = conn.execute(
            f"select x, {_quoted('x')}, {_safe_link('x')} from unnest(%s::text[]) x",
            (AWKWARD,),
        ).fetchall()
        conn.rollback()
    assert [r[0] for r in rows] == AWKWARD
    for text, quoted, link in rows:
        assert quoted == quote(text), text
        assert link == safe_link(text), text


def _post_awkward_book(runtime: Runtime, book: BookFixture) -> None:
    day = date(2026, 3, 2)
    with unit_of_work(runtime.connection) as uow:
        customers = [
            str(upsert_customer(uow.conn, book.id, CustomerSpec(name, "USD"))[0].id)
            for name in ('Quote "Co"', "Back\\slash\nLtd", "Ünïcödé 株式会社")
        ]
        # customer ids that name no customer: written as given, quoted
        customers += ['ext "7"', "ext\\8", "ext ü\n9"]
        metadata: list[dict[str, Any]] = [
            {},
            {"kind": "invoice", "invoice": "in_1", "number": "INV-0001"},
            {"kind": "payment", "payment": 'pay "2"', "note": 'a "quoted"\\ note\nline 2'},
            {"kind": "credit note!", "credit_note": "cn/3", "count": 3, "flag": True},
            {"kind": "", "invoice": "", "nothing": None, "neg": -12, "big": 10**30},
            {"kind": "x", "z": "last", "a": "first", "A": "upper", "_": "u", "a b": "sp"},
            {"control": "\x01\x1f\t", "slash": "/", "quote": '"'},
            {"kind": "reversal", "reason": "typo"},
            # SQL leaves these to Python (non-ASCII, nested, non-integer numbers, DEL)
            {"kind": "invoice", "customer_note": "Ünïcödé"},
            {"kind": "adjustment", "lines": [1, 2], "nested": {"b": 1, "a": 2}},
            {"rate": 1.5, "exp": 1e21},
            {"del": "\x7f"},
            {"kind": "ü"},
        ]
        entries = []
        for n, meta in enumerate(metadata):
            memo = AWKWARD[n % len(AWKWARD)] + f" #{n}"
            customer = customers[n % len(customers)] if n % 3 else None
            document = AWKWARD[(n * 5) % len(AWKWARD)] or None
            entries.append(
                build_entry(
                    day,
                    memo,
                    [
                        Posting("Assets:Receivable:Trade", Money.exact("108.00", "USD"), customer),
                        Posting(
                            "Income:Services", Money.exact("-100.00", "USD"), customer, document
                        ),
                        Posting(
                            "Liabilities:Tax-Payable",
                            Money.exact("-8.00", "USD"),
                            customers[(n + 3) % len(customers)],
                            document if n % 2 else "other/doc",
                        ),
                    ],
                    metadata=meta,
                    idempotency_key=f"awkward:{n}",
                )
            )
        posted = post_entries(uow.conn, book.id, entries)
        uow.commit()
    seal_pending(runtime.connection, book.id)  # sealed and unsealed entries both
    with unit_of_work(runtime.connection) as uow:
        reverse_entry(uow.conn, book.id, str(posted[1].id), memo='Undo "it"\\')
        reverse_entry(uow.conn, book.id, str(posted[7].id))  # its kind is "reversal" too
        uow.commit()


def _rows(conn: psycopg.Connection, book: BookFixture, raw: bool) -> list[tuple[Any, ...]]:
    accounts = conn.execute(
        "select id, name from accounts where book_id = %s", (book.id,)
    ).fetchall()
    by_id = {a: _Account(a, beancount_account(name), [], date.min, None) for a, name in accounts}
    with export_settings(conn):
        return conn.execute(
            ENTRIES_IN_ORDER, entry_params(book.id, by_id, None, date.max, raw=raw)
        ).fetchall()


def test_sql_transactions_are_pythons(runtime: Runtime, book: BookFixture) -> None:
    _post_awkward_book(runtime, book)
    with runtime.connection() as conn:
        begin_snapshot(conn)
        rendered = _rows(conn, book, raw=False)
        fields = _rows(conn, book, raw=True)
        conn.rollback()
    assert len(rendered) == len(fields) == 15
    by_sql = 0
    for sql_row, raw_row in zip(rendered, fields, strict=True):
        assert raw_row[1] is None  # raw: every row carries the fields, no text
        python = python_entry_text(raw_row)
        if sql_row[1] is None:  # left to Python: the same fields
            assert sql_row[2:] == raw_row[2:]
        else:
            by_sql += 1
            assert sql_row[1] == python
    # Both paths ran: the awkward strings through SQL, the unrenderable metadata not.
    assert by_sql == 10, by_sql
    texts = "".join(python_entry_text(r) for r in fields)
    for needle in ('"Quote \\"Co\\""', '"Back\\\\slash\nLtd"', "#reversal", "^in_1", "seq: "):
        assert needle in texts, needle
