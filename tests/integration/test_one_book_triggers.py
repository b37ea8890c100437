"""The posting triggers' one-book path (revision 0051): how many queries a post costs them,
and that the checks it folded together still refuse in the order they did.

The count is of statements, not time: each query a trigger runs costs ~50 µs of backend
CPU to start however small its work, so a single-entry post runs two in each trigger (a
third in the postings trigger when an account of the entry has a minimum balance)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from psycopg import errors as pg
from psycopg import sql

from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import AccountDirectory, post_entries
from tests.conftest import APP_ROLE, THROUGH_PGBOUNCER, BookFixture

DAY = date(2026, 3, 10)


def entry(debit: str, credit: str, amount: str, key: str) -> JournalEntry:
    return build_entry(
        DAY,
        "one book",
        [
            Posting(debit, Money.exact(amount, "USD")),
            Posting(credit, Money.exact(f"-{amount}", "USD")),
        ],
        idempotency_key=key,
    )


@pytest.fixture
def explained(database_url: str) -> Iterator[tuple[psycopg.Connection, list[str]]]:
    """An application-role session whose statements, nested ones too, auto_explain
    reports as notices: the list collects each one's query text."""
    if THROUGH_PGBOUNCER:
        pytest.skip("session settings (LOAD, SET ROLE) need a session of our own")
    texts: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        if "Query Text:" in message:
            texts.append(message.split("Query Text:", 1)[1].strip())

    with psycopg.connect(database_url) as conn:
        conn.add_notice_handler(keep)
        try:
            conn.execute("load 'auto_explain'")
        except psycopg.errors.UndefinedFile:
            pytest.skip("auto_explain is not installed in this PostgreSQL build")
        for name, value in (
            ("log_min_duration", "0"),
            ("log_nested_statements", "on"),
            ("log_level", "notice"),
        ):
            conn.execute(f"set auto_explain.{name} = '{value}'")
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(APP_ROLE)))
        conn.commit()
        yield conn, texts


def trigger_queries(texts: list[str]) -> list[str]:
    """The nested statements of the posting triggers: not the posting statement
    itself, not foreign-key checks."""
    return [t for t in texts if "insert into journal_entries" not in t and "FOR KEY SHARE" not in t]


def test_a_one_book_entry_costs_the_triggers_four_queries(
    book: BookFixture, explained: tuple[psycopg.Connection, list[str]]
) -> None:
    conn, texts = explained
    directory = AccountDirectory()
    # The accounts' ids are looked up once per directory: not in the counted posts.
    post_entries(
        conn,
        book.id,
        [
            entry("Assets:Bank:Operating", "Income:Services", "5.00", "v"),
            entry("Assets:Bank:Operating", "Liabilities:Prepaid-Wallet", "5.00", "w"),
        ],
        directory,
    )
    conn.commit()
    texts.clear()
    post_entries(
        conn, book.id, [entry("Assets:Bank:Operating", "Income:Services", "7.00", "x")], directory
    )
    conn.commit()
    plain = trigger_queries(texts)
    # Entries: facts with the book's dates; the queue row with the period and
    # empty-entry facts. Postings: facts with the per-entry check; the account check
    # with the daily balances. (Before revision 0051: eleven.)
    assert len(plain) == 4, plain
    assert not any("guarded_balances" in t for t in plain)
    # Nothing refused: the account check is two aggregates, not a window, a sort and
    # a limit (revision 0053); which account and why is asked only on refusal.
    assert not any("WindowAgg" in t for t in plain), plain

    # An account with a minimum balance (the chart's wallet): its statement runs too.
    texts.clear()
    post_entries(
        conn,
        book.id,
        [entry("Assets:Bank:Operating", "Liabilities:Prepaid-Wallet", "3.00", "y")],
        directory,
    )
    conn.commit()
    guarded = trigger_queries(texts)
    assert len(guarded) == 5, guarded
    assert sum("guarded_balances" in t for t in guarded) == 1


def test_a_one_book_batch_still_refuses_a_debit_below_a_minimum(
    book: BookFixture, app_conn: psycopg.Connection
) -> None:
    """The guarded statement runs when any account of the statement has a minimum,
    not only the first one looked at."""
    with pytest.raises(pg.CheckViolation) as exc_info:
        post_entries(
            app_conn,
            book.id,
            [
                entry("Assets:Bank:Operating", "Income:Services", "1.00", "a"),
                entry("Liabilities:Prepaid-Wallet", "Assets:Bank:Operating", "2.00", "b"),
            ],
        )
    assert exc_info.value.diag.constraint_name == "postings_min_balance"


def test_an_entry_without_postings_in_a_closed_period_is_refused_for_the_period(
    book: BookFixture, app_conn: psycopg.Connection, owner_conn: psycopg.Connection
) -> None:
    """Both facts come from one statement now; the closed period is still reported
    first, as the checks ran in that order."""
    owner_conn.execute(
        "insert into periods (book_id, period, status) values (%s, '2026-03', 'closed')",
        (book.id,),
    )
    entry_id = uuid.uuid4()
    with pytest.raises(pg.CheckViolation) as exc_info:
        app_conn.execute(
            "insert into journal_entries (book_id, id, effective_date, idempotency_key,"
            " request_hash) values (%s, %s, %s, 'k', 'h')",
            (book.id, entry_id, DAY),
        )
    diag = exc_info.value.diag
    assert diag.constraint_name == "journal_entries_open_period"
    assert diag.message_primary == (
        f"entry {entry_id} is dated {DAY}, inside closed period 2026-03;"
        " post it in the first open period"
    )
